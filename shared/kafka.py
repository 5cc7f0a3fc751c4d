"""Kafka plumbing: the producer every service uses and the consumer pipeline.

The pipeline is explicit: decode → validate → batch (by size and time) → one database
transaction per batch holding the effects *and* the consumer's offsets → commit → tell Kafka.
A message that can never be processed goes to the dead-letter topic with its reason; a
failure of the database or the broker is retried with backoff and never dead-lettered (see
:class:`ConsumerPipeline` and :mod:`shared.dlq`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import logs, tracing
from shared.config import KafkaConnection, Settings
from shared.dlq import MAX_REASON_CHARS, DlqLimit, DlqLimitState, letter_for, send_letter
from shared.events import Topic
from shared.metrics import batch_histogram
from shared.offsets import OffsetRepository
from shared.periodic import wait_or
from shared.retry import Backoff, Transient, describe, error_kind, is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")


class TracedProducer(AIOKafkaProducer):
    """A producer whose records carry the sender's trace context in their headers
    (``traceparent``: :func:`shared.tracing.kafka_headers`) when traces are on and the
    caller gave no headers of its own. Off, a send costs one flag check more."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        if headers is None and tracing.ENABLED:
            headers = tracing.kafka_headers()
        return await super().send(topic, value, key, partition, timestamp_ms, headers)


def make_producer(
    kafka: KafkaConnection, *, linger_ms: int = 5, client_id: str = "alliance"
) -> AIOKafkaProducer:
    """A producer whose acknowledged sends are durable: ``acks=all`` and idempotent, and
    whose records carry the trace context (:class:`TracedProducer`)."""
    return TracedProducer(
        **kafka.client_options(),
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
class Unit(Generic[T]):
    """One record of a batch: decoded (``received``), or dead with its ``error`` (the kind of
    failure) and ``reason`` (kind and message)."""

    record: ConsumerRecord[bytes, bytes]
    received: Received[T] | None
    error: str = ""
    reason: str = ""

    @property
    def tp(self) -> tuple[str, int]:
        return (self.record.topic, self.record.partition)

    @property
    def offset(self) -> int:
        return self.record.offset

    @property
    def dead(self) -> bool:
        return self.received is None

    def failed(self, exc: BaseException) -> Unit[T]:
        """This record, dead because handling it alone raised ``exc``."""
        return Unit(self.record, None, error_kind(exc), describe(exc, MAX_REASON_CHARS))


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """One poll's records in fetch order, decoded or dead with their reason."""

    generation: int  # the consumer's assignment count when the poll began
    units: list[Unit[T]]


async def _cancel(future: asyncio.Future[Any] | None) -> None:
    """Cancel ``future`` (a fetch ahead) and wait until it has stopped."""
    if future is None:
        return
    future.cancel()
    await asyncio.wait({future})  # does not raise what the future raised
    if not future.cancelled() and future.exception() is not None:
        log.debug("a fetch ahead failed: %r", future.exception())


#: reads a message of the named topic: its event, or raises (the message is dead)
Decoder = Callable[[str, bytes], T]
#: reads a message of one topic: its event; None skips it (the batch handler receives it with
#: value None and ignores it: its offset is committed with the batch); raising makes it dead
#: (a :class:`PoisonMessage`, a validation error …: kept as the dead letter's ``error``)
TopicDecoder = Callable[[bytes], T]
BatchHandler = Callable[[AsyncSession, list[Received[T]]], Awaitable[None]]


def route_decoder(routes: Mapping[str, TopicDecoder[T]]) -> Decoder[T]:
    """A :data:`Decoder` that reads each message with the function of its topic (by the
    topic's full name); a message of a topic not in ``routes`` is a :class:`PoisonMessage`."""
    table = dict(routes)

    def decode(topic: str, raw: bytes) -> T:
        read = table.get(topic)
        if read is None:
            raise PoisonMessage(f"unexpected topic {topic}")
        return read(raw)

    return decode


def decode_record(decode: Decoder[T], rec: ConsumerRecord[bytes, bytes]) -> Unit[T]:
    """``rec`` decoded, or dead with the kind and text of what the decoder raised (any
    exception: the record can never be processed). An empty message is dead too."""
    try:
        if rec.value is None:
            raise PoisonMessage("empty message")
        value = decode(rec.topic, rec.value)
    except Exception as exc:
        return Unit(rec, None, error_kind(exc), describe(exc, MAX_REASON_CHARS))
    received = Received(
        rec.topic, rec.partition, rec.offset, rec.key, value, rec.timestamp, rec.value
    )
    return Unit(rec, received)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, pipeline: ConsumerPipeline[object]) -> None:
        self.pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # aiokafka rebalances in a background task: let the batch in hand commit first, so
        # that the stored offsets read on assignment (here or by the partition's next owner)
        # include it. A batch fetched before and not started yet is stale from now on: its
        # partitions may be another worker's by the time it would run.
        async with self.pipeline._batch_lock:
            self.pipeline._generation += 1

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.pipeline._batch_lock:
            self.pipeline._generation += 1  # records fetched before this are stale
            await self.pipeline._position(assigned)


class ConsumerPipeline(Generic[T]):
    """Consumes ``topics`` in group ``group_id`` and hands decoded batches to ``handle``.

    Contract: ``handle`` runs inside a transaction that this pipeline owns and commits
    together with the offsets; it must only flush. A batch is handled at least once and its
    effects are committed exactly once. ``after_commit`` (if any) runs after each commit.

    Failures: a transient one (:func:`~shared.retry.is_transient`: the database or the broker
    away) makes the pipeline go back to the last committed offsets and retry after a capped
    exponential backoff, for as long as it takes; it needs neither to get going again. Any
    other failure of a batch is the data's: the batch is retried by halves, each half its own
    transaction with its offsets, until the records that fail alone are found; each is
    dead-lettered once (see :mod:`shared.dlq`) and every other record is applied, in order.
    Past the :class:`~shared.dlq.DlqLimit` of a partition, the pipeline stops that partition
    (:meth:`halted`) instead of dead-lettering more; the others go on.
    """

    def __init__(
        self,
        *,
        name: str,
        kafka: KafkaConnection,
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
        dlq_limit: DlqLimit | None = None,
        retry_cap_s: float = 5.0,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.kafka = kafka
        self.group_id = group_id
        self.topics = list(topics)
        self.sessions = sessions
        self.offsets = offsets
        self.decode = decode
        self.handle = handle
        self.producer = producer
        self.dead_letter_topic = dead_letter_topic
        self.batch_size = batch_size
        self.batch_ms = batch_ms
        self.limits = DlqLimitState(dlq_limit or DlqLimit())
        self.retry_cap_s = retry_cap_s
        self.after_commit = after_commit
        self.consumer = self._new_consumer()
        self._open = False  # the consumer is started and not yet stopped
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._generation = 0  # assignments so far
        #: next offset to read per partition as committed with the effects (the truth)
        self._committed: dict[tuple[str, int], int] = {}
        #: the same, counting the records being handled as handled (:meth:`progress`)
        self._consumed: dict[tuple[str, int], int] = {}
        #: the assignment could not be positioned (database or broker away): held paused
        self._unpositioned = False
        #: records dead-lettered whose offsets are not committed yet: not lettered again
        self._lettered: set[tuple[str, int, int]] = set()
        #: partitions stopped by the dead-letter limit: (offset stopped at, why)
        self._halted: dict[tuple[str, int], tuple[int, str]] = {}
        self.processed = 0
        self.dead_lettered = 0
        self.batches = 0
        self.retries = 0  # batches retried after a transient failure
        #: dead letters written, per kind of failure (metrics)
        self.letters: Counter[str] = Counter()
        self.batch_seconds = batch_histogram()  # committed batches' transactions (metrics)

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self.kafka.client_options(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.batch_size,
            fetch_max_wait_ms=self.batch_ms,
        )

    async def start(self) -> None:
        """Connect and subscribe (a consumer stopped by a failed :meth:`run` is replaced)."""
        if self._open:
            return
        if self.consumer._closed:
            self.consumer = self._new_consumer()
        try:
            await self.consumer.start()
        except BaseException:
            # half started (the broker away): close it, the next start makes a new one
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            raise
        self._open = True
        self._generation += 1
        self._committed, self._consumed, self._unpositioned = {}, {}, False
        self.consumer.subscribe(self.topics, listener=_Listener(self))  # type: ignore[arg-type]

    async def _position(self, assigned: set[TopicPartition]) -> None:
        """Seek ``assigned`` to the stored offsets. When the database or the broker cannot
        say where, the partitions are paused and :meth:`run` tries again after a pause (an
        exception here would be swallowed by aiokafka and leave the group's Kafka offsets,
        which may lag the database's, in charge)."""
        try:
            await self._seek_to_stored(assigned)
        except Exception as exc:
            log.warning("%s: cannot position partitions yet (%s)", self.name, describe(exc))
            self._unpositioned = True
            with contextlib.suppress(Exception):
                self.consumer.pause(*assigned)
            return
        self._unpositioned = False
        halted = [tp for tp in assigned if (tp.topic, tp.partition) in self._halted]
        self.consumer.resume(*[tp for tp in assigned if tp not in halted])
        if halted:
            self.consumer.pause(*halted)

    async def _seek_to_stored(self, assigned: set[TopicPartition]) -> None:
        async with self.sessions() as session:
            stored = await self.offsets.load(
                session, self.name, [(tp.topic, tp.partition) for tp in assigned]
            )
        # Explicit positions: seek_to_beginning() is lazy, and a fetch already under way from
        # the group's committed offset would be processed, then rewound and processed again.
        fresh = [tp for tp in assigned if (tp.topic, tp.partition) not in stored]
        first = await self.consumer.beginning_offsets(fresh) if fresh else {}
        self._committed = {}
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition), first.get(tp, 0))
            self.consumer.seek(tp, offset)
            self._committed[(tp.topic, tp.partition)] = offset
        self._consumed = dict(self._committed)
        self._lettered = {
            c for c in self._lettered if c[2] >= self._committed.get((c[0], c[1]), c[2] + 1)
        }

    def _rewind(self) -> None:
        """Go back to the last committed offsets (known here: no database, no broker)."""
        for tp in self.consumer.assignment():
            offset = self._committed.get((tp.topic, tp.partition))
            if offset is None:
                self._unpositioned = True
                continue
            self.consumer.seek(tp, offset)
        self._consumed = dict(self._committed)

    def progress(self, topic: str) -> dict[int, tuple[int, int | None]]:
        """For each partition of ``topic`` this consumer holds: (next offset to handle, last
        known end offset), counting the records being handled as handled. The end offset is
        None until a fetch has reported it."""
        return {p: at for (t, p), at in self.positions().items() if t == topic}

    def positions(self) -> dict[tuple[str, int], tuple[int, int | None]]:
        """:meth:`progress` of every topic, per (topic, partition) (metrics: lag)."""
        assigned = self.consumer.assignment()
        return {
            (t, p): (offset, self.consumer.highwater(TopicPartition(t, p)))
            for (t, p), offset in self._consumed.items()
            if TopicPartition(t, p) in assigned
        }

    def halted(self) -> str | None:
        """Why partitions are stopped by the dead-letter limit (None: none is). Safe to show:
        names, offsets and counts only."""
        if not self._halted:
            return None
        return f"consumer {self.name} stopped " + "; ".join(
            f"{t}[{p}] at offset {offset}: {why}"
            for (t, p), (offset, why) in sorted(self._halted.items())
        )

    @property
    def halted_partitions(self) -> int:
        return len(self._halted)

    def stop(self) -> None:
        """Ask :meth:`run` to finish its current batch, commit it and return."""
        self._stopping.set()

    async def run(self) -> None:
        """The consume loop; returns after :meth:`stop` with everything handled committed.
        Survives the database and the broker going away (it waits for them); when it raises
        all the same, calling it again starts afresh from the stored offsets.

        The next batch is fetched and decoded while the current one is in the database (one
        batch ahead, never more): decoding is the service's CPU work, the transaction mostly
        waits for PostgreSQL."""
        await self.start()
        backoff = Backoff(0.1, self.retry_cap_s)
        ahead: asyncio.Future[Fetched[T]] | None = None
        try:
            while not self._stopping.is_set():
                if self._unpositioned:
                    async with self._batch_lock:
                        self._generation += 1
                        await self._position(self.consumer.assignment())
                    if self._unpositioned:
                        await self._wait(backoff.next())
                        continue
                fetched = await (ahead or asyncio.ensure_future(self._fetch()))
                ahead = None
                if not fetched.units:
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
                            self._rewind()
                            continue
                        await self._apply(fetched.units)
                    backoff.reset()
                    await self._commit_to_kafka()
                except Exception as exc:
                    # Go back to the last committed offsets (in memory: the database may be
                    # away) and retry after a pause. The partitions are paused meanwhile.
                    delay = backoff.next()
                    self.retries += 1
                    if is_transient(exc):
                        log.warning(
                            "%s: batch failed (%s); retrying in %.1fs",
                            self.name,
                            describe(exc, 300),
                            delay,
                        )
                    else:  # not a record's fault (those are isolated): a bug, or the offsets
                        log.exception("%s: batch failed; retrying in %.1fs", self.name, delay)
                    await _cancel(ahead)
                    ahead = None
                    async with self._batch_lock:
                        self._rewind()
                    await self._pause_for(delay)
        finally:
            await _cancel(ahead)
            self._open = False
            await self.consumer.stop()

    async def _fetch(self) -> Fetched[T]:
        """The next records, decoded (yielding now and then, so that a transaction waiting
        for the database is not held up by decoding)."""
        generation = self._generation
        records = await self._poll()
        units: list[Unit[T]] = []
        for n, rec in enumerate(records):
            if n % 250 == 249:
                await asyncio.sleep(0)
            units.append(decode_record(self.decode, rec))
        return Fetched(generation, units)

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
        failure = poll.exception()
        if failure is not None:  # the broker's trouble: the next poll tries again
            log.warning("%s: poll failed (%s)", self.name, describe(failure, 300))
            await self._wait(0.5)
            return []
        batches = poll.result()
        return [rec for recs in batches.values() for rec in recs]

    async def _wait(self, seconds: float) -> None:
        """Wait ``seconds`` or until :meth:`stop`."""
        await wait_or(self._stopping, seconds)

    async def _pause_for(self, seconds: float) -> None:
        assigned = list(self.consumer.assignment())
        self.consumer.pause(*assigned)
        try:
            await self._wait(seconds)
        finally:
            if not self._unpositioned:
                self.consumer.resume(
                    *[
                        tp
                        for tp in assigned
                        if tp in self.consumer.assignment()
                        and (tp.topic, tp.partition) not in self._halted
                    ]
                )

    def _stopped_at(self, unit: Unit[T]) -> bool:
        halt = self._halted.get(unit.tp)
        return halt is not None and unit.offset >= halt[0]

    async def _apply(self, units: list[Unit[T]]) -> None:
        """Apply ``units`` (in fetch order; each partition's in offset order): all in one
        transaction when that works, else by halves down to the records that fail alone,
        which are dead-lettered. Raises only transient failures (and what is not a record's
        fault: a batch of dead letters whose offsets cannot be stored)."""
        trial = self.limits.copy()
        kept: list[Unit[T]] = []
        for u in units:
            if self._stopped_at(u):
                continue
            lettered = (u.tp[0], u.tp[1], u.offset) in self._lettered
            if u.dead and not lettered and (refusal := trial.refusal(u.tp)) is not None:
                self._halt(u, refusal)
                continue
            trial.record(u.tp, u.dead)
            kept.append(u)
        if not kept:
            return
        try:
            await self._commit(kept, trial)
        except Exception as exc:
            if is_transient(exc) or all(u.dead for u in kept):
                raise
            if self._reassigned(kept):
                # the group took partitions away meanwhile: not the records' fault; handled
                # again by whoever holds them now, from the stored offsets
                raise Transient("partitions were reassigned during the batch") from exc
            if len(kept) == 1:
                # it fails alone; but dead-letter it only while the database answers: a
                # failure that says nothing of the database being away may still be that
                await self._database_answers()
                await self._apply([kept[0].failed(exc)])
                return
            half = len(kept) // 2
            await self._apply(kept[:half])
            await self._apply(kept[half:])

    def _reassigned(self, units: list[Unit[T]]) -> bool:
        assigned = self.consumer.assignment()
        return any(TopicPartition(*u.tp) not in assigned for u in units)

    async def _database_answers(self) -> None:
        try:
            async with self.sessions() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:
            raise Transient(f"the database does not answer: {describe(exc, 300)}") from exc

    async def _commit(self, units: list[Unit[T]], trial: DlqLimitState) -> None:
        """Dead-letter the dead units (once), then handle the others and store the offsets
        past all of them in one transaction."""
        for u in units:
            if u.dead and (u.tp[0], u.tp[1], u.offset) not in self._lettered:
                await self._dead_letter(u)
        next_offsets: dict[tuple[str, int], int] = {}
        for u in units:
            next_offsets[u.tp] = max(next_offsets.get(u.tp, 0), u.offset + 1)
        good = [u.received for u in units if u.received is not None]
        before = self._consumed
        self._consumed = {tp: max(offset, next_offsets.get(tp, 0)) for tp, offset in before.items()}
        started = time.perf_counter()
        try:
            span = (  # off: not even the list of headers
                tracing.batch_span(self.name, self.name, [u.record.headers for u in units])
                if tracing.ENABLED
                else tracing.NO_SPAN
            )
            with span, logs.bound(consumer=self.name):
                async with self.sessions() as session, session.begin():
                    if good:
                        await self.handle(session, good)
                    await self.offsets.save(session, self.name, next_offsets)
        except BaseException:
            self._consumed = before  # these records will be handled again
            raise
        self.batch_seconds.observe(time.perf_counter() - started)
        for tp, offset in next_offsets.items():
            if tp in self._committed:
                self._committed[tp] = max(self._committed[tp], offset)
        self._lettered = {
            c for c in self._lettered if c[2] >= next_offsets.get((c[0], c[1]), c[2] + 1)
        }
        self.limits = trial
        self.processed += len(good)
        self.dead_lettered += len(units) - len(good)
        self.batches += 1
        if self.after_commit is not None:
            self.after_commit()

    def _halt(self, unit: Unit[T], why: str) -> None:
        """Stop ``unit``'s partition before it: the dead-letter limit is reached."""
        if unit.tp in self._halted:
            return
        self._halted[unit.tp] = (unit.offset, why)
        topic, partition = unit.tp
        log.error(
            "%s: STOPPED %s[%d] at offset %d: %s. Nothing more of this partition is "
            "processed until the service restarts; see `alliance dlq list --consumer %s`.",
            self.name,
            topic,
            partition,
            unit.offset,
            why,
            self.name,
        )
        with contextlib.suppress(Exception):
            self.consumer.pause(TopicPartition(topic, partition))

    async def _commit_to_kafka(self) -> None:
        """Kafka's committed offsets are informational (lag monitoring); Postgres is the truth.
        Outside the batch lock: a commit may wait for a rebalance that waits for that lock;
        bounded in time: it would wait as long as the broker is away."""
        assigned = self.consumer.assignment()
        offsets = {
            TopicPartition(t, p): o
            for (t, p), o in self._committed.items()
            if TopicPartition(t, p) in assigned
        }
        if offsets:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.consumer.commit(offsets)

    async def _dead_letter(self, unit: Unit[T]) -> None:
        rec = unit.record
        log.warning(
            "%s: dead-lettering %s[%d]@%d: %s",
            self.name,
            rec.topic,
            rec.partition,
            rec.offset,
            unit.reason[:500],
        )
        letter = letter_for(
            consumer=self.name,
            source_topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
            value=rec.value or b"",
            failure=(unit.error, unit.reason),
            now=datetime.now(UTC),
        )
        await send_letter(self.producer, self.dead_letter_topic, letter, rec.key)
        self._lettered.add((rec.topic, rec.partition, rec.offset))
        self.letters[unit.error] += 1


async def partitions_of(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of ``topics``; aiokafka's public ``topics()`` discards the partition map."""
    cluster = await consumer._client.fetch_all_metadata()
    return [
        TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())
    ]


async def end_offsets_of(
    kafka: KafkaConnection, topics: Sequence[str]
) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topics`` (outside any group: tools, benches)."""
    consumer = AIOKafkaConsumer(**kafka.client_options())
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(await partitions_of(consumer, topics)))
    finally:
        await consumer.stop()


async def committed_offsets_of(kafka: KafkaConnection, group_id: str) -> dict[TopicPartition, int]:
    """The offsets group ``group_id`` committed to Kafka, per partition it committed (tools: a
    consumer's lag from outside)."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}


async def read_topic(kafka: KafkaConnection, topic: str) -> list[bytes]:
    """Every value currently on ``topic`` (all partitions, from the beginning). Outside any
    consumer group: for tools (rebuild) and tests, not for services."""
    return [value async for value in stream_topic(kafka, topic)]


async def stream_topic(
    kafka: KafkaConnection, topic: str, chunk: int = 10_000
) -> AsyncIterator[bytes]:
    """:func:`read_topic` as a stream: the values currently on ``topic``, at most ``chunk``
    fetched at a time, so that a reader which keeps only what it needs reads a topic of any
    size in bounded memory."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, [topic])
        if not tps:
            return
        consumer.assign(tps)
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, first[tp])
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            fetched = await consumer.getmany(timeout_ms=500, max_records=chunk)
            for records in fetched.values():
                for r in records:
                    if r.value is not None:
                        yield r.value
    finally:
        await consumer.stop()


def dead_letter_topic(prefix: str) -> str:
    return f"{prefix}{Topic.DEAD_LETTERS}"


def consumer_group(prefix: str, name: str) -> str:
    """The Kafka group of a service's consumer ``name``: its committed offsets there are the
    consumer's progress as seen from outside (lag monitoring; the database has the truth)."""
    return f"{prefix}alliance-{name}"


@dataclass(frozen=True)
class Consumes(Generic[T]):
    """What a service's consumer is, declared once in its ``consumer.py``: its ``name`` (the
    group ``<prefix>alliance-<name>``), the topics it reads and how each one's messages are
    read (``routes``: :data:`TopicDecoder`, which may return None to skip a message), and the
    ``offsets`` table its progress is stored in, with its effects."""

    name: str
    routes: Mapping[Topic, TopicDecoder[T]]
    offsets: Table


def service_pipeline(
    settings: Settings,
    consumes: Consumes[T],
    *,
    sessions: async_sessionmaker[AsyncSession],
    handle: BatchHandler[T],
    producer: AIOKafkaProducer,
    after_commit: Callable[[], None] | None = None,
) -> ConsumerPipeline[T]:
    """The one way a service builds its consumer: ``consumes`` as configured for this
    deployment (its topic prefix, batch sizes, dead-letter limit and retry backoff;
    :func:`route_decoder` makes the decoder from the routes, the prefix added to each topic),
    each batch handled by ``handle`` in one transaction with its offsets."""
    name, routes = consumes.name, consumes.routes
    decode = route_decoder({settings.topic(t): read for t, read in routes.items()})
    return ConsumerPipeline(
        name=name,
        kafka=settings.kafka,
        topics=[settings.topic(t) for t in routes],
        group_id=consumer_group(settings.topic_prefix, name),
        sessions=sessions,
        offsets=OffsetRepository(consumes.offsets),
        decode=decode,
        handle=handle,
        producer=producer,
        dead_letter_topic=dead_letter_topic(settings.topic_prefix),
        batch_size=settings.consumer_batch_size,
        batch_ms=settings.consumer_batch_ms,
        dlq_limit=DlqLimit(
            settings.dlq_max_ratio, settings.dlq_max_consecutive or None, settings.dlq_window
        ),
        retry_cap_s=settings.consumer_retry_max_s,
        after_commit=after_commit,
    )
