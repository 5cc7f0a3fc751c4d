"""The redirect's click producer (:mod:`services.tracker.clickproducer`): keys land on the
partitions the producer's default partitioner picks, the clicks of one turn of the loop go
out as one batch per partition, and each redirect learns whether Kafka acknowledged its click
within the deadline (never waiting past it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tracker.clickproducer import IN_FLIGHT, ClickBatcher, murmur2, partition_of


class TestPartitionsAsTheProducerPicksThem:
    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=80))
    def test_murmur2_is_kafkas(self, key: bytes) -> None:
        assert murmur2(key) == aiokafka_murmur2(key)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=64), st.integers(min_value=1, max_value=256))
    def test_a_key_lands_where_the_default_partitioner_puts_it(self, key: bytes, n: int) -> None:
        partitions = list(range(n))
        assert partition_of(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


class Batch:
    def __init__(self, capacity: int) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.capacity = capacity
        self.closed = False

    def append(
        self,
        *,
        key: bytes,
        value: bytes,
        timestamp: int | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> object:
        if self.closed or len(self.records) == self.capacity:
            return None
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        self.closed = True


class Producer:
    """Batches kept with their partition; the test acknowledges, fails or withholds them."""

    def __init__(self, partitions: int = 3, capacity: int = 100) -> None:
        self.partitions = partitions
        self.capacity = capacity
        self.sent: list[tuple[int, Batch, asyncio.Future[None]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> Batch:
        return Batch(self.capacity)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        assert batch.closed  # complete: sent without lingering
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((partition, batch, ack))
        return ack

    def ack_all(self, error: Exception | None = None) -> None:
        for _, _, ack in self.sent:
            if not ack.done():
                ack.set_result(None) if error is None else ack.set_exception(error)


async def settled(*waits: asyncio.Future[bool]) -> list[bool]:
    return list(await asyncio.gather(*waits))


async def groups_in_flight(batcher: ClickBatcher) -> list[asyncio.Future[bool]]:
    """IN_FLIGHT clicks, each in a turn of its own (a group each), handed to the producer."""
    clicks: list[asyncio.Future[bool]] = []
    for n in range(IN_FLIGHT):
        clicks.append(asyncio.ensure_future(batcher.send(b"a", b"%d" % n)))
        await asyncio.sleep(0.01)
    return clicks


def keys(n: int) -> list[bytes]:
    return [f"visitor-{i}".encode() for i in range(n)]


class TestOneBatchPerPartitionPerTurn:
    async def test_the_clicks_of_one_turn_go_as_one_batch_per_partition(self) -> None:
        producer = Producer(partitions=3)
        batcher = ClickBatcher(producer, "clicks", timeout_s=5)
        waits = [asyncio.ensure_future(batcher.send(k, b"click " + k)) for k in keys(30)]
        await asyncio.sleep(0.01)
        assert len(producer.sent) == 3  # one batch for each partition, not one per click
        for partition, batch, _ in producer.sent:
            assert batch.records
            assert all(partition_of(k, [0, 1, 2]) == partition for k, _ in batch.records)
        assert sum(len(b.records) for _, b, _ in producer.sent) == 30
        producer.ack_all()
        assert await settled(*waits) == [True] * 30

    async def test_a_full_batch_is_sent_and_a_new_one_takes_the_rest(self) -> None:
        producer = Producer(partitions=1, capacity=4)
        batcher = ClickBatcher(producer, "clicks", timeout_s=5)
        waits = [asyncio.ensure_future(batcher.send(k, k)) for k in keys(10)]
        await asyncio.sleep(0.01)
        assert [len(b.records) for _, b, _ in producer.sent] == [4, 4, 2]
        producer.ack_all()
        assert await settled(*waits) == [True] * 10


class TestAcknowledgedOrNotWithinTheDeadline:
    async def test_no_click_is_acknowledged_before_every_batch_of_its_group_is(self) -> None:
        producer = Producer(partitions=2)
        batcher = ClickBatcher(producer, "clicks", timeout_s=5)
        waits = [asyncio.ensure_future(batcher.send(k, k)) for k in keys(20)]
        await asyncio.sleep(0.01)
        producer.sent[0][2].set_result(None)
        await asyncio.sleep(0.01)
        assert not any(w.done() for w in waits)
        producer.ack_all()
        assert await settled(*waits) == [True] * 20

    async def test_a_refused_batch_fails_its_group(self) -> None:
        producer = Producer()
        batcher = ClickBatcher(producer, "clicks", timeout_s=5)
        waits = [asyncio.ensure_future(batcher.send(k, k)) for k in keys(5)]
        await asyncio.sleep(0.01)
        producer.ack_all(KafkaConnectionError("lost"))
        assert await settled(*waits) == [False] * 5

    async def test_an_unanswered_click_is_given_up_at_the_deadline(self) -> None:
        producer = Producer()
        batcher = ClickBatcher(producer, "clicks", timeout_s=0.1)
        start = time.monotonic()
        assert await batcher.send(b"v", b"click") is False
        assert 0.09 < time.monotonic() - start < 0.5
        producer.ack_all()  # Kafka answers late: nothing changes, nothing is raised

    async def test_a_producer_that_cannot_queue_fails_the_group_at_once(self) -> None:
        class NoMetadata(Producer):
            async def partitions_for(self, topic: str) -> set[int]:
                raise KafkaConnectionError("no broker")

        batcher = ClickBatcher(NoMetadata(), "clicks", timeout_s=5)
        start = time.monotonic()
        assert await batcher.send(b"v", b"click") is False
        assert time.monotonic() - start < 0.5

    async def test_while_the_producer_hangs_every_click_is_given_up_at_its_deadline(
        self,
    ) -> None:
        """A broker gone quiet: the producer never answers, not even for metadata. Each
        click still gets its answer at the deadline (not one of them waits for ever)."""

        class Hanging(Producer):
            async def partitions_for(self, topic: str) -> set[int]:
                await asyncio.sleep(3600)
                return {0}

        batcher = ClickBatcher(Hanging(), "clicks", timeout_s=0.05)
        for _ in range(4):
            start = time.monotonic()
            assert await asyncio.wait_for(batcher.send(b"v", b"click"), 2) is False
            assert time.monotonic() - start < 0.5

    async def test_a_redirect_that_gives_up_leaves_the_others_their_answer(self) -> None:
        producer = Producer()
        batcher = ClickBatcher(producer, "clicks", timeout_s=5)
        waits = [asyncio.ensure_future(batcher.send(k, k)) for k in keys(3)]
        await asyncio.sleep(0.01)
        waits[0].cancel()  # the buyer went away
        producer.ack_all()
        assert await settled(*waits[1:]) == [True, True]
        with pytest.raises(asyncio.CancelledError):
            await waits[0]

    async def test_clicks_that_come_while_groups_wait_for_kafka_go_in_the_next_batch(
        self,
    ) -> None:
        """At most IN_FLIGHT groups unanswered: the clicks meanwhile make one fuller batch,
        sent once Kafka answered the oldest (the broker's work is per request)."""
        producer = Producer(partitions=1)
        batcher = ClickBatcher(producer, "clicks", timeout_s=5)
        early = await groups_in_flight(batcher)
        later = [asyncio.ensure_future(batcher.send(k, k)) for k in keys(5)]
        await asyncio.sleep(0.01)
        assert len(producer.sent) == IN_FLIGHT
        producer.ack_all()
        assert await settled(*early) == [True] * IN_FLIGHT
        await asyncio.sleep(0.01)
        assert [len(b.records) for _, b, _ in producer.sent] == [1] * IN_FLIGHT + [5]
        producer.ack_all()
        assert await settled(*later) == [True] * 5

    async def test_groups_kafka_never_answers_hold_the_next_one_back_no_longer_than_a_deadline(
        self,
    ) -> None:
        producer = Producer(partitions=1)
        batcher = ClickBatcher(producer, "clicks", timeout_s=0.2)
        early = await groups_in_flight(batcher)
        await asyncio.sleep(0.08)
        held = asyncio.ensure_future(batcher.send(b"b", b"held"))
        assert await early[0] is False  # its deadline
        await asyncio.sleep(0.02)
        assert len(producer.sent) == IN_FLIGHT + 1  # the held group went out then
        producer.sent[-1][2].set_result(None)
        assert await held is True
