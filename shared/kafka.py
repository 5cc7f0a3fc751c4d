"""Kafka plumbing: the producer every service uses and the consumer pipeline.

The pipeline is explicit: decode → validate → batch (by size and time) → one database
transaction per batch holding the effects *and* the consumer's offsets → commit → tell Kafka.
A message that can never be processed goes to the dead-letter topic with its reason; a
failure of the database or the broker is retried with backoff and never dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import Settings
from shared.events import DeadLetter, Topic, encode
from shared.offsets import OffsetRepository

log = logging.getLogger(__name__)

T = TypeVar("T")


def make_producer(
    bootstrap: str, *, linger_ms: int = 5, client_id: str = "alliance"
) -> AIOKafkaProducer:
    """A producer whose acknowledged sends are durable: ``acks=all`` and idempotent."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        client_id=client_id,
        request_timeout_ms=10_000,
    )


class PoisonMessage(Exception):
    """Raised by a decoder: this message can never be processed."""


@dataclass(frozen=True, slots=True)
class Received(Generic[T]):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: T
    timestamp_ms: int
    raw: bytes = b""  # the message as read (``value`` is it decoded and validated)


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """One poll's records, decoded: the good ones and the dead letters with their reason."""

    generation: int  # the consumer's assignment count when the poll began
    records: list[ConsumerRecord[bytes, bytes]]
    good: list[Received[T]]
    dead: list[tuple[ConsumerRecord[bytes, bytes], str]]


async def _cancel(future: asyncio.Future[Any] | None) -> None:
    """Cancel ``future`` (a fetch ahead) and wait until it has stopped."""
    if future is None:
        return
    future.cancel()
    await asyncio.wait({future})  # does not raise what the future raised
    if not future.cancelled() and future.exception() is not None:
        log.debug("a fetch ahead failed: %r", future.exception())


class TooManyDeadLetters(RuntimeError):
    """A batch was mostly undecodable: stop rather than dead-letter a whole stream."""


Decoder = Callable[[str, bytes], T]
BatchHandler = Callable[[AsyncSession, list[Received[T]]], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):
    def __init__(self, pipeline: ConsumerPipeline[object]) -> None:
        self.pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # aiokafka rebalances in a background task: let the batch in hand commit first, so
        # that the stored offsets read on assignment (here or by the partition's next owner)
        # include it.
        async with self.pipeline._batch_lock:
            pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.pipeline._batch_lock:
            self.pipeline._generation += 1  # records fetched before this are stale
            await self.pipeline._seek_to_stored(assigned)


class ConsumerPipeline(Generic[T]):
    """Consumes ``topics`` in group ``group_id`` and hands decoded batches to ``handle``.

    Contract: ``handle`` runs inside a transaction that this pipeline owns and commits
    together with the offsets; it must only flush. A batch is handled at least once and its
    effects are committed exactly once. ``after_commit`` (if any) runs after each commit.
    """

    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        sessions: async_sessionmaker[AsyncSession],
        offsets: OffsetRepository,
        decode: Decoder[T],
        handle: BatchHandler[T],
        producer: AIOKafkaProducer,
        dead_letter_topic: str,
        batch_size: int = 1000,
        batch_ms: int = 200,
        max_dead_ratio: float = 0.5,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.topics = list(topics)
        self.sessions = sessions
        self.offsets = offsets
        self.decode = decode
        self.handle = handle
        self.producer = producer
        self.dead_letter_topic = dead_letter_topic
        self.batch_size = batch_size
        self.batch_ms = batch_ms
        self.max_dead_ratio = max_dead_ratio
        self.after_commit = after_commit
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=batch_size,
            fetch_max_wait_ms=batch_ms,
        )
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._generation = 0  # assignments so far
        self._consumed: dict[tuple[str, int], int] = {}  # next offset to handle, per partition
        self.processed = 0
        self.dead_lettered = 0
        self.batches = 0

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=_Listener(self))  # type: ignore[arg-type]

    async def _seek_to_stored(self, assigned: set[TopicPartition]) -> None:
        async with self.sessions() as session:
            stored = await self.offsets.load(
                session, self.name, [(tp.topic, tp.partition) for tp in assigned]
            )
        # Explicit positions: seek_to_beginning() is lazy, and a fetch already under way from
        # the group's committed offset would be processed, then rewound and processed again.
        fresh = [tp for tp in assigned if (tp.topic, tp.partition) not in stored]
        first = await self.consumer.beginning_offsets(fresh) if fresh else {}
        self._consumed = {}
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition), first.get(tp, 0))
            self.consumer.seek(tp, offset)
            self._consumed[(tp.topic, tp.partition)] = offset

    def progress(self, topic: str) -> dict[int, tuple[int, int | None]]:
        """For each partition of ``topic`` this consumer holds: (next offset to handle, last
        known end offset), counting the batch being handled as handled. The end offset is None
        until a fetch has reported it."""
        return {
            p: (offset, self.consumer.highwater(TopicPartition(t, p)))
            for (t, p), offset in self._consumed.items()
            if t == topic
        }

    def stop(self) -> None:
        """Ask :meth:`run` to finish its current batch, commit it and return."""
        self._stopping.set()

    async def run(self) -> None:
        """The consume loop; returns after :meth:`stop` with everything handled committed.

        The next batch is fetched and decoded while the current one is in the database (one
        batch ahead, never more): decoding is the service's CPU work, the transaction mostly
        waits for PostgreSQL."""
        backoff = 0.1
        ahead: asyncio.Future[Fetched[T]] | None = None
        try:
            while not self._stopping.is_set():
                fetched = await (ahead or asyncio.ensure_future(self._fetch()))
                ahead = None
                if not fetched.records:
                    continue
                ahead = asyncio.ensure_future(self._fetch())
                try:
                    async with self._batch_lock:
                        if fetched.generation != self._generation:
                            # A reassignment came between fetch and now: these records may be
                            # stale or no longer ours, and the consumer's positions are past
                            # them. Go back to the stored offsets and fetch again.
                            await _cancel(ahead)
                            ahead = None
                            await self._seek_to_stored(self.consumer.assignment())
                            continue
                        committed = await self._process(fetched)
                    backoff = 0.1
                    await self._commit_to_kafka(committed)
                except TooManyDeadLetters:
                    raise
                except Exception:
                    # Transient (database, broker): go back to the stored offsets and retry
                    # after a pause. The partitions are paused so that nothing else is fetched
                    # meanwhile.
                    log.exception("%s: batch failed, retrying in %.1fs", self.name, backoff)
                    await _cancel(ahead)
                    ahead = None
                    async with self._batch_lock:
                        await self._seek_to_stored(self.consumer.assignment())
                    await self._pause_for(backoff)
                    backoff = min(backoff * 2, 30.0)
        finally:
            await _cancel(ahead)
            await self.consumer.stop()

    async def _fetch(self) -> Fetched[T]:
        """The next records, decoded (yielding now and then, so that a transaction waiting
        for the database is not held up by decoding)."""
        generation = self._generation
        records = await self._poll()
        good: list[Received[T]] = []
        dead: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        for n, rec in enumerate(records):
            if n % 250 == 249:
                await asyncio.sleep(0)
            try:
                if rec.value is None:
                    raise PoisonMessage("empty message")
                good.append(
                    Received(
                        rec.topic,
                        rec.partition,
                        rec.offset,
                        rec.key,
                        self.decode(rec.topic, rec.value),
                        rec.timestamp,
                        rec.value,
                    )
                )
            except (PoisonMessage, ValidationError, ValueError) as exc:
                dead.append((rec, f"{type(exc).__name__}: {exc}"[:2000]))
        return Fetched(generation, records, good, dead)

    async def _poll(self) -> list[ConsumerRecord[bytes, bytes]]:
        poll = asyncio.ensure_future(
            self.consumer.getmany(timeout_ms=self.batch_ms, max_records=self.batch_size)
        )
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not poll.done():
                # Also when this poll is cancelled (a fetch ahead dropped): a getmany left
                # running would take records later, past a seek, and nobody would handle them.
                poll.cancel()
                await asyncio.wait({poll})
        if poll not in done or poll.cancelled():
            return []
        batches = poll.result()
        return [rec for recs in batches.values() for rec in recs]

    async def _pause_for(self, seconds: float) -> None:
        assigned = list(self.consumer.assignment())
        self.consumer.pause(*assigned)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        finally:
            self.consumer.resume(*[tp for tp in assigned if tp in self.consumer.assignment()])

    async def _process(self, fetched: Fetched[T]) -> dict[tuple[str, int], int]:
        """Handle one batch and store its offsets in one transaction; returns the offsets."""
        records, good, dead = fetched.records, fetched.good, fetched.dead
        if dead and len(records) >= 20 and len(dead) / len(records) > self.max_dead_ratio:
            raise TooManyDeadLetters(f"{self.name}: {len(dead)} of {len(records)} undecodable")
        for rec, reason in dead:
            await self._dead_letter(rec, reason)
        next_offsets: dict[tuple[str, int], int] = {}
        for rec in records:
            key = (rec.topic, rec.partition)
            next_offsets[key] = max(next_offsets.get(key, 0), rec.offset + 1)
        before = dict(self._consumed)
        for key, offset in next_offsets.items():
            if key in self._consumed:
                self._consumed[key] = max(self._consumed[key], offset)
        try:
            async with self.sessions() as session, session.begin():
                if good:
                    await self.handle(session, good)
                await self.offsets.save(session, self.name, next_offsets)
        except BaseException:
            self._consumed = before  # the batch will be handled again
            raise
        self.processed += len(good)
        self.dead_lettered += len(dead)
        self.batches += 1
        if self.after_commit is not None:
            self.after_commit()
        return next_offsets

    async def _commit_to_kafka(self, next_offsets: dict[tuple[str, int], int]) -> None:
        """Kafka's committed offsets are informational (lag monitoring); Postgres is the truth.
        Outside the batch lock: a commit may wait for a rebalance that waits for that lock."""
        assigned = self.consumer.assignment()
        with contextlib.suppress(Exception):
            await self.consumer.commit(
                {
                    TopicPartition(t, p): o
                    for (t, p), o in next_offsets.items()
                    if TopicPartition(t, p) in assigned
                }
            )

    async def _dead_letter(self, rec: ConsumerRecord[bytes, bytes], reason: str) -> None:
        log.warning(
            "%s: dead-lettering %s[%d]@%d: %s",
            self.name,
            rec.topic,
            rec.partition,
            rec.offset,
            reason,
        )
        letter = DeadLetter(
            source_topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            consumer=self.name,
            reason=reason,
            key=rec.key.decode("utf-8", "replace") if rec.key else None,
            value=(rec.value or b"").decode("utf-8", "replace"),
            failed_at=datetime.now(UTC),
        )
        await self.producer.send_and_wait(self.dead_letter_topic, encode(letter), key=rec.key)


async def partitions_of(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of ``topics``; aiokafka's public ``topics()`` discards the partition map."""
    cluster = await consumer._client.fetch_all_metadata()
    return [
        TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())
    ]


async def end_offsets_of(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topics`` (outside any group: tools, benches)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(await partitions_of(consumer, topics)))
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every value currently on ``topic`` (all partitions, from the beginning). Outside any
    consumer group: for tools (rebuild) and tests, not for services."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, [topic])
        if not tps:
            return []
        consumer.assign(tps)
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, first[tp])
        out: list[bytes] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                out += [r.value for r in records if r.value is not None]
        return out
    finally:
        await consumer.stop()


def dead_letter_topic(prefix: str) -> str:
    return f"{prefix}{Topic.DEAD_LETTERS}"


def service_pipeline(
    settings: Settings,
    *,
    name: str,
    topics: Sequence[Topic],
    sessions: async_sessionmaker[AsyncSession],
    offsets: OffsetRepository,
    decode: Decoder[T],
    handle: BatchHandler[T],
    producer: AIOKafkaProducer,
    after_commit: Callable[[], None] | None = None,
) -> ConsumerPipeline[T]:
    """A service's pipeline as configured: its group ``<prefix>alliance-<name>``, the
    deployment's topic prefix, batch sizes and dead-letter policy."""
    return ConsumerPipeline(
        name=name,
        bootstrap=settings.kafka_bootstrap,
        topics=[settings.topic(t) for t in topics],
        group_id=f"{settings.topic_prefix}alliance-{name}",
        sessions=sessions,
        offsets=offsets,
        decode=decode,
        handle=handle,
        producer=producer,
        dead_letter_topic=dead_letter_topic(settings.topic_prefix),
        batch_size=settings.consumer_batch_size,
        batch_ms=settings.consumer_batch_ms,
        max_dead_ratio=settings.dlq_max_ratio,
        after_commit=after_commit,
    )
