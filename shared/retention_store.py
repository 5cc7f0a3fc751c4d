"""The retention job's shell (docs/retention.md): reads a schema's day partitions from the
catalog, carries out :func:`shared.retention.plan` (create ahead, drop whole days), and
deletes in bounded chunks what is not partitioned (the default partitions' old rows, the
idempotency records, finished webhook deliveries).

One replica at a time per schema: each pass holds a transaction-level advisory lock, taken
without waiting (another replica's pass under way: this one skips). Every statement waits at
most ``LOCK_TIMEOUT`` for its locks, so a partition drop (which locks the table briefly) never
queues the consumers' batches behind it for long; it is simply tried next time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import Clock
from shared.periodic import Periodic
from shared.retention import (
    IDEMPOTENCY,
    Partition,
    PartitionedTable,
    RetentionSettings,
    keep_days,
    parse_bound,
    plan,
    tables_of,
)

log = logging.getLogger(__name__)

LOCK_TIMEOUT = "5s"


class JobSettings(RetentionSettings, Protocol):
    """The settings the job reads beyond the rules' (shared.config.Settings has them)."""

    @property
    def retention_webhooks_days(self) -> int: ...

    @property
    def retention_partitions_ahead_days(self) -> int: ...


@dataclass
class Report:
    """What one pass did (``skipped``: another replica held the schema's lock)."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        deleted = ", ".join(f"{k} {v}" for k, v in self.deleted.items() if v) or "none"
        return (
            f"created {len(self.created)} partitions, dropped {len(self.dropped)} "
            f"({', '.join(self.dropped) or 'none'}), rows deleted: {deleted}"
            + (f", skipped (another replica): {', '.join(self.skipped)}" if self.skipped else "")
        )


async def partitions(session: AsyncSession, table: PartitionedTable) -> list[Partition]:
    """The partitions of ``table`` as the catalog has them (the session's time zone UTC)."""
    await session.execute(text("SET LOCAL TIME ZONE 'UTC'"))
    rows = await session.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:t AS regclass)"
        ),
        {"t": table.qualified},
    )
    return [Partition(name, *parse_bound(bound)) for name, bound in rows.all()]


def _literal(table: PartitionedTable, day: date) -> str:
    return f"'{day.isoformat()}'" if table.kind == "date" else f"'{day.isoformat()} 00:00:00+00'"


class RetentionJob:
    """The job for the tables of ``schemas`` (a service's own), every ``interval_s``
    (:attr:`periodic`, from start). Idempotent: a pass after a pass does nothing more."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        schemas: tuple[str, ...],
        settings: JobSettings,
        clock: Clock,
        interval_s: float,
        chunk: int = 10_000,
    ) -> None:
        self.sessions = sessions
        self.schemas = schemas
        self.settings = settings
        self.clock = clock
        self.chunk = chunk
        self.periodic = Periodic("retention", self.run_once, interval_s=interval_s)

    async def run_once(self) -> Report:
        """One pass over every schema; returns what it did."""
        report = Report()
        now = self.clock.now()
        for schema in self.schemas:
            async with self.sessions() as session, session.begin():
                if not await self._lock(session, schema):
                    report.skipped.append(schema)
                    continue
                for table in tables_of([schema]):
                    await self._partitions(session, table, now.date(), report)
            for table in tables_of([schema]):
                cutoff = now.date() - timedelta(days=keep_days(table, self.settings))
                column = table.column
                bound = cutoff if table.kind == "date" else _midnight(cutoff)
                where = f"{column} < :before"
                report.deleted[f"{table.default_name}"] = await self._chunks(
                    schema, table.default_name, where, {"before": bound}
                )
            idempotent = now - timedelta(days=self.settings.retention_idempotency_days)
            for s, name, column in IDEMPOTENCY:
                if s == schema:
                    report.deleted[name] = await self._chunks(
                        s, name, f"{column} < :before", {"before": idempotent}
                    )
            if schema == "commission":
                report.deleted["webhook_deliveries"] = await self._webhooks(
                    now - timedelta(days=self.settings.retention_webhooks_days)
                )
        if report.created or report.dropped or any(report.deleted.values()):
            log.info("retention: %s", report.line())
        return report

    async def _lock(self, session: AsyncSession, schema: str) -> bool:
        await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        return bool(
            await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"),
                {"k": f"alliance-retention:{schema}"},
            )
        )

    async def _partitions(
        self, session: AsyncSession, table: PartitionedTable, today: date, report: Report
    ) -> None:
        p = plan(
            await partitions(session, table),
            today,
            keep_days(table, self.settings),
            self.settings.retention_partitions_ahead_days,
        )
        for day in p.create:
            name = table.partition_name(day)
            await session.execute(
                text(
                    f"CREATE TABLE {table.schema}.{name} PARTITION OF {table.qualified} "
                    f"FOR VALUES FROM ({_literal(table, day)}) "
                    f"TO ({_literal(table, day + timedelta(days=1))})"
                )
            )
            report.created.append(f"{table.schema}.{name}")
        for name in p.drop:
            # whole: no row-by-row delete, no dead tuples left, the space back at once
            await session.execute(text(f"DROP TABLE {table.schema}.{name}"))
            report.dropped.append(f"{table.schema}.{name}")

    async def _chunks(self, schema: str, name: str, where: str, params: dict[str, object]) -> int:
        """Delete the rows of ``schema.name`` matching ``where``, ``chunk`` per transaction."""
        total = 0
        while not self.periodic.stopping:
            async with self.sessions() as session, session.begin():
                await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                result = await session.execute(
                    text(
                        # ctid = ANY(ARRAY(...)): a TID scan of the chunk, not a join that
                        # reads the whole table for each chunk
                        f"DELETE FROM {schema}.{name} WHERE ctid = ANY(ARRAY("
                        f"SELECT ctid FROM {schema}.{name} WHERE {where} LIMIT :n))"
                    ),
                    {**params, "n": self.chunk},
                )
            n = int(getattr(result, "rowcount", 0) or 0)
            total += n
            if n < self.chunk:
                break
        return total

    async def _webhooks(self, before: datetime) -> int:
        """Delete finished deliveries (delivered or given up) created before ``before``, and
        their attempts, ``chunk`` per transaction; pending ones are never touched."""
        total = 0
        while not self.periodic.stopping:
            async with self.sessions() as session, session.begin():
                await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                result = await session.execute(
                    text(
                        """
                        WITH gone AS (
                            SELECT id FROM commission.webhook_deliveries
                            WHERE status <> 'pending' AND created_at < :before
                            ORDER BY id LIMIT :n
                        ), attempts AS (
                            DELETE FROM commission.webhook_attempts
                            WHERE delivery_id IN (SELECT id FROM gone)
                        )
                        DELETE FROM commission.webhook_deliveries
                        WHERE id IN (SELECT id FROM gone)
                        """
                    ),
                    {"before": before, "n": self.chunk},
                )
            n = int(getattr(result, "rowcount", 0) or 0)
            total += n
            if n < self.chunk:
                break
        return total


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)
