"""Storefront events and Kafka's acknowledgement, in process: an event id counts as seen only
once Kafka acknowledged it, a post answers 503 with Retry-After rather than hang, and nothing
answered 202 was left unacknowledged. The producer here is scripted: the test decides when,
and whether, Kafka answers."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka.errors import KafkaConnectionError

from services.tracker.directory import Claim, Directory, EventIds
from services.tracker.errors import Unavailable
from services.tracker.links import Link, LinkSigner
from services.tracker.service import TrackerService
from services.tracker.spool import ClickSpool
from shared.clock import FixedClock
from shared.config import Settings

STORE = "s1"
NOW = datetime.now(UTC)


class ScriptedProducer:
    """A producer whose acknowledgements the test gives, withholds or refuses."""

    def __init__(self, *, ack_at_once: bool = False) -> None:
        self.ack_at_once = ack_at_once
        self.refuse = False
        self.sent: list[bytes] = []
        self.acks: list[asyncio.Future[None]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        if self.refuse:
            raise KafkaConnectionError("broker down")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ack_at_once:
            ack.set_result(None)
        self.sent.append(value)
        self.acks.append(ack)
        return ack

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await (await self.send(topic, value, key))

    def ack(self, n: int, error: Exception | None = None) -> None:
        if error is None:
            self.acks[n].set_result(None)
        else:
            self.acks[n].set_exception(error)


def tracker(
    producer: ScriptedProducer | None, *, caught_up: bool = True, **overrides: Any
) -> TrackerService:
    config = Settings(**({"event_ack_timeout_ms": 300} | overrides))
    return TrackerService(
        config,
        LinkSigner.from_config(config.link_keys),
        producer=cast(Any, producer),
        clock=FixedClock(NOW),
        directory=Directory(caught_up=caught_up),
        spool=cast(ClickSpool, None),
    )


def placed(event_id: str = "e-1") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "order_placed",
        "occurred_at": (NOW - timedelta(minutes=1)).isoformat(),
        "order_id": f"o-{event_id}",
        "visitor_id": "v-1",
        "currency": "USD",
        "items": [{"product_id": "p1", "quantity": 1, "unit_price": "20.00"}],
    }


async def post(service: TrackerService, *events: dict[str, Any]) -> list[str]:
    """What ``POST /v1/events`` does after the signature: the statuses it answers 202 with
    (or :class:`Unavailable`, its 503)."""
    valid, results = service.validate_events(STORE, list(events))
    results = await service.publish_events(STORE, valid, results)
    return [r.status for r in results]


class TestSeenOnlyOnceAcknowledged:
    async def test_an_id_is_in_flight_until_kafka_acknowledges_it_then_seen(self) -> None:
        producer = ScriptedProducer()
        service = tracker(producer)
        posting = asyncio.ensure_future(post(service, placed()))
        await asyncio.sleep(0.01)
        assert service.directory.event_ids.claim(STORE, "e-1") is Claim.IN_FLIGHT
        assert not service.directory.event_ids.is_seen(STORE, "e-1")
        producer.ack(0)
        assert await posting == ["accepted"]
        assert service.directory.event_ids.is_seen(STORE, "e-1")
        assert await post(service, placed()) == ["duplicate"]
        assert len(producer.sent) == 1

    async def test_a_retry_of_an_event_whose_send_failed_is_sent_not_a_duplicate(self) -> None:
        producer = ScriptedProducer()
        service = tracker(producer)
        posting = asyncio.ensure_future(post(service, placed()))
        await asyncio.sleep(0.01)
        producer.ack(0, KafkaConnectionError("lost"))
        with pytest.raises(Unavailable):
            await posting
        producer.ack_at_once = True
        assert await post(service, placed()) == ["accepted"]
        assert len(producer.sent) == 2

    async def test_an_event_the_producer_refused_is_sent_on_retry(self) -> None:
        producer = ScriptedProducer(ack_at_once=True)
        producer.refuse = True
        service = tracker(producer)
        with pytest.raises(Unavailable):
            await post(service, placed("e-1"), placed("e-2"))
        producer.refuse = False
        assert await post(service, placed("e-1"), placed("e-2")) == ["accepted", "accepted"]

    async def test_a_retry_while_the_first_send_is_still_queued_waits_and_sends_nothing_twice(
        self,
    ) -> None:
        """The first post gives up at its deadline (503) but its send stays queued: a retry
        meanwhile waits for that send; acknowledged later, the retry after is a duplicate."""
        producer = ScriptedProducer()
        service = tracker(producer)
        with pytest.raises(Unavailable):
            await post(service, placed())
        with pytest.raises(Unavailable):
            await post(service, placed())  # still in flight: waits, says nothing yet
        producer.ack(0)  # Kafka is back and takes the queued send
        assert await post(service, placed()) == ["duplicate"]
        assert len(producer.sent) == 1

    async def test_part_of_a_batch_acknowledged_is_a_duplicate_on_the_retry(self) -> None:
        producer = ScriptedProducer()
        service = tracker(producer)
        posting = asyncio.ensure_future(post(service, placed("e-1"), placed("e-2")))
        await asyncio.sleep(0.01)
        producer.ack(0)
        producer.ack(1, KafkaConnectionError("lost"))
        with pytest.raises(Unavailable):
            await posting
        producer.ack_at_once = True
        assert await post(service, placed("e-1"), placed("e-2")) == ["duplicate", "accepted"]
        assert len(producer.sent) == 3


class TestConcurrentPostsOfOneId:
    async def test_the_second_waits_for_the_first_and_the_event_is_sent_once(self) -> None:
        producer = ScriptedProducer()
        service = tracker(producer)
        first = asyncio.ensure_future(post(service, placed()))
        second = asyncio.ensure_future(post(service, placed()))
        await asyncio.sleep(0.01)
        producer.ack(0)
        assert sorted([*await first, *await second]) == ["accepted", "duplicate"]
        assert len(producer.sent) == 1

    async def test_when_the_first_fails_both_answer_503_and_the_retry_sends(self) -> None:
        producer = ScriptedProducer()
        service = tracker(producer)
        first = asyncio.ensure_future(post(service, placed()))
        second = asyncio.ensure_future(post(service, placed()))
        await asyncio.sleep(0.01)
        producer.ack(0, KafkaConnectionError("lost"))
        for posting in (first, second):
            with pytest.raises(Unavailable):
                await posting
        producer.ack_at_once = True
        assert await post(service, placed()) == ["accepted"]
        assert len(producer.sent) == 2

    async def test_an_id_twice_in_one_batch_is_sent_once(self) -> None:
        producer = ScriptedProducer(ack_at_once=True)
        assert await post(tracker(producer), placed(), placed()) == ["accepted", "duplicate"]
        assert len(producer.sent) == 1


class TestUnavailable:
    async def test_a_post_answers_503_within_the_ack_timeout_when_kafka_never_answers(
        self,
    ) -> None:
        service = tracker(ScriptedProducer(), event_ack_timeout_ms=400)
        start = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            await post(service, placed())
        assert 0.35 < time.monotonic() - start < 1.0
        assert (raised.value.status_code, raised.value.details["reason"]) == (
            503,
            "not_acknowledged",
        )
        assert raised.value.details["retry_after_s"] > 0

    async def test_without_a_producer_a_post_answers_503_at_once(self) -> None:
        with pytest.raises(Unavailable, match="unavailable") as raised:
            await post(tracker(None), placed())
        assert raised.value.details["reason"] == "kafka_unreachable"

    async def test_before_the_feed_caught_up_a_post_answers_503(self) -> None:
        """The event ids on the topics are not all read yet: a duplicate could not be told."""
        with pytest.raises(Unavailable) as raised:
            await post(tracker(ScriptedProducer(ack_at_once=True), caught_up=False), placed())
        assert raised.value.details["reason"] == "catching_up"

    @pytest.mark.allow_logged_errors  # the redirect's click is lost, and says so
    async def test_a_server_click_that_cannot_be_made_durable_is_503_not_202(
        self, tmp_path: Path
    ) -> None:
        service = tracker(None, click_ack_timeout_ms=10)
        service.spool = ClickSpool(tmp_path, max_bytes=10)  # too small for any click
        signer = service.signer
        link = signer.verify(signer.sign(Link("a1", STORE, "p1")))
        click = service.make_click(link, "k.x.y", "v-1", None, "Mozilla/5.0", NOW)
        with pytest.raises(Unavailable) as raised:
            await service.record_click(click, required=True)
        assert raised.value.details["reason"] == "spool_full"
        await service.record_click(click)  # a buyer's redirect goes on (the loss is counted)
        assert service.metrics["clicks_refused_spool_full"] == 1
        assert service.metrics["clicks_lost_spool_full"] == 1


class TestEventIdMemory:
    async def test_ids_past_the_horizon_are_forgotten(self) -> None:
        ids = EventIds(horizon_s=3600, max_ids=100, bucket_s=60)
        ids.seen(STORE, "old", at=1_000.0)
        ids.seen(STORE, "new", at=4_000.0)
        ids.expire(now=4_700.0)
        assert (ids.is_seen(STORE, "old"), ids.is_seen(STORE, "new")) == (False, True)
        assert len(ids) == 1

    async def test_the_memory_is_bounded_by_forgetting_the_oldest_bucket_early(self) -> None:
        ids = EventIds(horizon_s=86_400, max_ids=1_000, bucket_s=60)
        for n in range(5_000):
            ids.seen(STORE, f"e-{n}", at=float(n))  # 60 ids a bucket
        assert len(ids) <= 1_000
        assert ids.is_seen(STORE, "e-4999")
        assert not ids.is_seen(STORE, "e-0")
        assert ids.forgotten == 5_000 - len(ids)

    async def test_ids_of_two_stores_do_not_meet(self) -> None:
        ids = EventIds(horizon_s=3600, max_ids=100)
        ids.seen("s1", "e-1", at=0.0)
        assert not ids.is_seen("s2", "e-1")
        assert not ids.is_seen("s", "1e-1")
