"""The redirect's clicks to Kafka, a batch per turn of the event loop.

A redirect must not answer before its click is durable (docs/principals.md). Sending each
click on its own (``send_and_wait`` under a timeout of its own) cost a redirect more than its
HTTP did: per click a metadata wait, a pure-Python murmur2, an accumulator append, a future, a
timer. :class:`ClickBatcher` takes the clicks that arrive in one turn of the loop, and all
those that arrive while the previous group waits for Kafka's answer (more under load), and
hands them to the producer as one
``BatchBuilder`` per partition, under one deadline; each redirect waits on a future of its own,
settled ``True`` once Kafka acknowledged its whole group, ``False`` on a failure or at the
deadline (the caller then spools the click, as before).

The partition of a key is the producer's default partitioner's (murmur2 of the key, as Java's
client computes it): clicks keyed by visitor stay on the partition of that visitor's orders
(the attribution join).
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, Final, Protocol

from shared import tracing

#: a record's Kafka headers (a list: aiokafka's record builder takes nothing else)
Headers = list[tuple[str, bytes]]
#: the headers of a click while traces are off: one shared list, never changed (the builder
#: only reads it), so nothing is allocated per click
NO_HEADERS: Final[Headers] = []

_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF
#: groups handed to the producer and not yet answered, at most: one in the broker's hands,
#: one waiting in the producer, sent the moment the first is answered
IN_FLIGHT: Final = 2


@functools.lru_cache(maxsize=256)
def _words(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (the same value as ``aiokafka.partitioner.murmur2``, at a
    third of its cost: the words are unpacked at once, not byte by byte)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    for k in _words(length >> 2).unpack_from(data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        rest = data[length - tail :]
        if tail == 3:
            h ^= rest[2] << 16
        if tail >= 2:
            h ^= rest[1] << 8
        h = ((h ^ rest[0]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: list[int]) -> int:
    """The partition the producer's default partitioner picks for ``key`` among
    ``partitions`` (sorted)."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


class Batch(Protocol):
    def append(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        timestamp: int | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Any: ...

    def close(self) -> None: ...


class BatchProducer(Protocol):
    """What :class:`ClickBatcher` needs of an ``AIOKafkaProducer``."""

    async def partitions_for(self, topic: str) -> set[int]: ...

    def create_batch(self) -> Any: ...  # a Batch

    async def send_batch(
        self, batch: Any, topic: str, *, partition: int
    ) -> asyncio.Future[Any]: ...


class _Group:
    """Clicks acknowledged together: the ones that arrived while the previous group was being
    queued in the producer."""

    __slots__ = ("records", "settled", "timer", "unacked", "waiters")

    def __init__(self) -> None:
        #: key, value and headers (the trace context: empty when traces are off)
        self.records: list[tuple[bytes, bytes, Headers]] = []
        self.waiters: list[asyncio.Future[bool]] = []
        self.unacked = 0
        self.settled = False
        self.timer: asyncio.TimerHandle | None = None


class ClickBatcher:
    """Sends records to one topic in batches; :meth:`send` answers whether Kafka acknowledged
    a record within ``timeout_s`` of its group's first record. Never raises, never waits past
    the deadline (a broker that hangs costs each click at most ``timeout_s``)."""

    def __init__(
        self,
        producer: BatchProducer,
        topic: str,
        timeout_s: float,
        metrics: Counter[str] | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s
        #: ``click_batches``: batches handed to the producer (clicks / batches: their size)
        self.metrics: Counter[str] = Counter() if metrics is None else metrics
        self._open: _Group | None = None
        self._queue: deque[_Group] = deque()
        self._flushing = False
        #: groups handed to the producer, oldest first, with their acknowledgements (those
        #: answered are dropped when the next group is handed over)
        self._outstanding: deque[tuple[_Group, list[asyncio.Future[Any]]]] = deque()
        self._flusher: asyncio.Task[None] | None = None  # referenced: the loop keeps weak ones

    async def send(self, key: bytes, value: bytes) -> bool:
        """True once Kafka acknowledged the record; False when it did not within the
        deadline or refused it. Cancelling the caller abandons its wait only."""
        loop = asyncio.get_running_loop()
        group = self._open
        if group is None or group.settled:  # settled: past its deadline before it was queued
            group = self._open = _Group()
            group.timer = loop.call_at(loop.time() + self.timeout_s, self._settle, group, False)
            self._queue.append(group)
            if not self._flushing:
                self._flushing = True
                self._flusher = loop.create_task(self._flush())
        group.records.append((key, value, tracing.kafka_headers() or NO_HEADERS))
        waiter: asyncio.Future[bool] = loop.create_future()
        group.waiters.append(waiter)
        return await waiter

    async def _flush(self) -> None:
        """Queue the groups in the producer, oldest first, until none is left."""
        outstanding = self._outstanding
        try:
            while self._queue:
                group = self._queue.popleft()
                if group is self._open:
                    self._open = None  # from now on, clicks go to the next group
                if group.settled:  # past its deadline already: its clicks were spooled
                    continue
                try:
                    acks = await self._queue_batches(group.records)
                except Exception:  # no metadata, a closed producer, a refused batch
                    self._settle(group, False)
                    continue
                group.unacked = len(acks)
                for ack in acks:
                    ack.add_done_callback(functools.partial(self._acked, group))
                # at most IN_FLIGHT groups unanswered: the next one grows meanwhile (fewer,
                # fuller produce requests: the broker's work is per request), for at most the
                # deadline of the oldest
                outstanding.append((group, acks))
                while outstanding and outstanding[0][0].settled:
                    outstanding.popleft()
                if len(outstanding) >= IN_FLIGHT:
                    oldest, oldest_acks = outstanding.popleft()
                    timer = oldest.timer
                    left = timer.when() - asyncio.get_running_loop().time() if timer else 0.0
                    if left > 0 and not oldest.settled:
                        await asyncio.wait(oldest_acks, timeout=left)
        finally:
            self._flushing = False

    async def _queue_batches(
        self, records: list[tuple[bytes, bytes, Headers]]
    ) -> list[asyncio.Future[Any]]:
        partitions = sorted(await self.producer.partitions_for(self.topic))
        batches: dict[int, Batch] = {}
        acks: list[asyncio.Future[Any]] = []
        for key, value, headers in records:
            partition = partition_of(key, partitions)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                acks.append(await self._submit(batch, partition))
                batch = batches[partition] = self.producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        for partition, batch in batches.items():
            acks.append(await self._submit(batch, partition))
        return acks

    async def _submit(self, batch: Batch, partition: int) -> asyncio.Future[Any]:
        # closed: complete, so the producer sends it without lingering (the group was the
        # linger: every click that came in one turn of the loop, or while the last was queued)
        batch.close()
        self.metrics["click_batches"] += 1
        return await self.producer.send_batch(batch, self.topic, partition=partition)

    def _acked(self, group: _Group, ack: asyncio.Future[Any]) -> None:
        if ack.cancelled() or ack.exception() is not None:
            self._settle(group, False)
            return
        group.unacked -= 1
        if group.unacked == 0:
            self._settle(group, True)

    @staticmethod
    def _settle(group: _Group, acknowledged: bool) -> None:
        if group.settled:
            return
        group.settled = True
        if group.timer is not None:
            group.timer.cancel()
        for waiter in group.waiters:
            if not waiter.done():
                waiter.set_result(acknowledged)
        group.records, group.waiters = [], []
