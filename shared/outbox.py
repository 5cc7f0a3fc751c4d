"""Transactional outbox: events written in the transaction that decided them, published after.

A service that must publish an effect of a database transaction writes the event into its
``outbox`` table inside that transaction; :class:`OutboxRelay` publishes committed rows in id
order and deletes them once Kafka acknowledged them. At least once: a crash between send and
delete re-sends, and consumers deduplicate by event id. Nothing that may roll back is published.
A row Kafka refuses for what it is (too large, invalid) is dead-lettered and deleted: it can
never be published, and the rows after it must not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import tracing
from shared.config import Settings
from shared.dlq import letter_for, send_letter, unpublishable
from shared.events import Topic
from shared.periodic import Periodic
from shared.retry import describe

log = logging.getLogger(__name__)
#: the outbox backlog is counted up to this many rows (a scrape stays a bounded scan)
BACKLOG_CAP = 1_000_000


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("topic", String(250), nullable=False),
        Column("key", String(250), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # the W3C traceparent of the span that wrote the row (NULL while traces are off)
        Column("traceparent", String(64), nullable=True),
    )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    key: str
    payload: bytes
    traceparent: str | None = None


class OutboxRepository:
    """All SQL of one outbox table. Never commits."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def add(self, session: AsyncSession, rows: list[tuple[str, str, bytes]]) -> None:
        if rows:
            # the context of the transaction deciding them: the relay sends it on
            tp = tracing.current_traceparent()
            await session.execute(
                insert(self.table),
                [{"topic": t, "key": k, "payload": p, "traceparent": tp} for t, k, p in rows],
            )

    async def claim(self, session: AsyncSession, limit: int) -> list[OutboxRow]:
        """Lock the oldest unpublished rows (other relays skip them)."""
        t = self.table
        rows = await session.execute(
            select(t.c.id, t.c.topic, t.c.key, t.c.payload, t.c.traceparent)
            .order_by(t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [OutboxRow(r.id, r.topic, r.key, r.payload, r.traceparent) for r in rows]

    async def backlog(self, session: AsyncSession, cap: int) -> int:
        """Rows not yet published, counted up to ``cap`` (a bounded scan, for metrics)."""
        first = select(self.table.c.id).limit(cap).subquery()
        return int(await session.scalar(select(func.count()).select_from(first)) or 0)

    async def delete(self, session: AsyncSession, ids: list[int]) -> None:
        if ids:
            await session.execute(delete(self.table).where(self.table.c.id.in_(ids)))


class OutboxRelay:
    """Publishes committed outbox rows, oldest first; :meth:`poke` after a commit wakes it.

    A row that Kafka refuses for what it is (:func:`~shared.dlq.unpublishable`: too large,
    invalid) is dead-lettered to ``dead_letter_topic`` as consumer ``name`` (partition −1,
    offset = the row's id) before it is deleted; any other failure is retried with a capped
    exponential backoff and nothing is deleted (the rows are sent again: at least once).
    Its loop is a :class:`~shared.periodic.Periodic` (:attr:`periodic`): every ``idle_s``,
    at once when poked, and once more when stopping."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        outbox: OutboxRepository,
        idle_s: float = 1.0,
        *,
        name: str = "outbox",
        dead_letter_topic: str = Topic.DEAD_LETTERS,
        retry_cap_s: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.producer = producer
        self.outbox = outbox
        self.name = name
        self.dead_letter_topic = dead_letter_topic
        self.periodic = Periodic(
            name,
            self.drain,
            interval_s=idle_s,
            final=True,
            retry_first_s=0.1,
            retry_cap_s=retry_cap_s,
        )
        self.published = 0
        self.dead_lettered = 0
        #: dead letters written, per kind of failure (metrics)
        self.letters: Counter[str] = Counter()
        #: rows not yet published when last measured (:meth:`measure_backlog`; metrics)
        self.backlog: int | None = None

    async def measure_backlog(self) -> None:
        """Count the rows waiting (up to :data:`BACKLOG_CAP`) into :attr:`backlog`."""
        async with self.sessions() as session:
            self.backlog = await self.outbox.backlog(session, BACKLOG_CAP)

    def poke(self) -> None:
        """A commit wrote rows: publish them now. Never blocks."""
        self.periodic.poke()

    def stop(self) -> None:
        self.periodic.stop()

    async def run(self) -> None:
        """Publish until :meth:`stop`, then publish what is left; failures are retried with
        backoff, never dropped (a row that can never be published is dead-lettered, see the
        class). What a last drain could not publish stays in the outbox for the next start."""
        await self.periodic.run()

    async def drain(self) -> int:
        """Publish until the outbox is empty; returns how many rows were taken."""
        total = 0
        while n := await self.drain_once():
            total += n
        return total

    async def drain_once(self, limit: int = 1000) -> int:
        async with self.sessions() as session, session.begin():
            rows = await self.outbox.claim(session, limit)
            if not rows:
                return 0
            refused = await self._publish(rows)
            for row, exc in refused:
                await self._dead_letter(row, exc)
            await self.outbox.delete(session, [r.id for r in rows])
        self.published += len(rows) - len(refused)
        return len(rows)

    async def _publish(self, rows: list[OutboxRow]) -> list[tuple[OutboxRow, BaseException]]:
        """Send ``rows`` and wait until Kafka acknowledged each. Returns the rows Kafka refuses
        for what they are, in id order; raises the first other failure (then nothing of this
        claim is deleted)."""
        sent: list[tuple[OutboxRow, asyncio.Future[object]]] = []
        refused: list[tuple[OutboxRow, BaseException]] = []
        failure: BaseException | None = None
        for r in rows:
            try:
                headers = tracing.kafka_headers(r.traceparent) if r.traceparent else None
                ack = await self.producer.send(
                    r.topic, r.payload, key=r.key.encode(), headers=headers
                )
                sent.append((r, ack))
            except Exception as exc:  # the producer refuses a record too large at once
                if not unpublishable(exc):
                    failure = exc
                    break
                refused.append((r, exc))
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        for (r, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                if unpublishable(result):
                    refused.append((r, result))
                elif failure is None:
                    failure = result
        if failure is not None:
            raise failure
        return sorted(refused, key=lambda x: x[0].id)

    async def _dead_letter(self, row: OutboxRow, exc: BaseException) -> None:
        log.warning(
            "%s: dead-lettering outbox row %d for %s (%d bytes): %s",
            self.name,
            row.id,
            row.topic,
            len(row.payload),
            describe(exc, 300),
        )
        key = row.key.encode()
        letter = letter_for(
            consumer=self.name,
            source_topic=row.topic,
            partition=-1,
            offset=row.id,
            key=key,
            value=row.payload,
            failure=exc,
            now=datetime.now(UTC),
        )
        await send_letter(self.producer, self.dead_letter_topic, letter, key)
        self.dead_lettered += 1
        self.letters[letter.error or "unknown"] += 1


def service_relay(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    outbox: OutboxRepository,
    service: str,
) -> OutboxRelay:
    """A service's relay as configured: its letters go to the deployment's dead-letter topic
    as consumer ``<service>-outbox``, its retries pause at most ``consumer_retry_max_s``."""
    return OutboxRelay(
        sessions,
        producer,
        outbox,
        name=f"{service}-outbox",
        dead_letter_topic=settings.topic(Topic.DEAD_LETTERS),
        retry_cap_s=settings.consumer_retry_max_s,
    )
