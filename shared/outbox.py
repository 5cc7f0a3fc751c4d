"""Transactional outbox: events written in the transaction that decided them, published after.

A service that must publish an effect of a database transaction writes the event into its
``outbox`` table inside that transaction; :class:`OutboxRelay` publishes committed rows in id
order and deletes them once Kafka acknowledged them. At least once: a crash between send and
delete re-sends, and consumers deduplicate by event id. Nothing that may roll back is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

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

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("topic", String(250), nullable=False),
        Column("key", String(250), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    key: str
    payload: bytes


class OutboxRepository:
    """All SQL of one outbox table. Never commits."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def add(self, session: AsyncSession, rows: list[tuple[str, str, bytes]]) -> None:
        if rows:
            await session.execute(
                insert(self.table), [{"topic": t, "key": k, "payload": p} for t, k, p in rows]
            )

    async def claim(self, session: AsyncSession, limit: int) -> list[OutboxRow]:
        """Lock the oldest unpublished rows (other relays skip them)."""
        t = self.table
        rows = await session.execute(
            select(t.c.id, t.c.topic, t.c.key, t.c.payload)
            .order_by(t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [OutboxRow(r.id, r.topic, r.key, r.payload) for r in rows]

    async def delete(self, session: AsyncSession, ids: list[int]) -> None:
        if ids:
            await session.execute(delete(self.table).where(self.table.c.id.in_(ids)))


class OutboxRelay:
    """Publishes committed outbox rows, oldest first; :meth:`poke` after a commit wakes it."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        outbox: OutboxRepository,
        idle_s: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.producer = producer
        self.outbox = outbox
        self.idle_s = idle_s
        self.wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0

    def poke(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()

    async def drain_once(self, limit: int = 1000) -> int:
        async with self.sessions() as session, session.begin():
            rows = await self.outbox.claim(session, limit)
            if not rows:
                return 0
            futures = [
                await self.producer.send(r.topic, r.payload, key=r.key.encode()) for r in rows
            ]
            await asyncio.gather(*futures)
            await self.outbox.delete(session, [r.id for r in rows])
        self.published += len(rows)
        return len(rows)

    async def run(self) -> None:
        """Publish until :meth:`stop`; failures are retried with backoff, never dropped."""
        backoff = 0.0
        while not self._stopping.is_set():
            # Clear before draining: a poke that arrives while a drain is under way (a commit
            # after its claim) must wake the next round, not be wiped by a late clear.
            self.wake.clear()
            try:
                while await self.drain_once():
                    pass
                backoff = 0.0
            except Exception:
                backoff = min(max(backoff * 2, 0.1), 30.0)
                log.warning("outbox relay failed; retrying in %.1fs", backoff, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=backoff or self.idle_s)
        try:
            while await self.drain_once():
                pass
        except Exception:
            # what is left stays in the outbox and is published by the next start
            log.warning("outbox relay could not publish everything before stopping", exc_info=True)
