"""bench/retention: days of click traffic at a steady rate, expired by dropping day partitions,
beside the same work done by DELETE + VACUUM (docs/retention.md).

On a fresh migrated database, for each simulated day (days compressed: the clock is moved a
day at a time, the day's clicks written at once by COPY):
- the retention job (:class:`shared.retention_store.RetentionJob`, as the services run it) makes
  the days ahead and drops the day partitions of ``attribution.clicks`` past the retention;
- the same clicks go to a plain table with the same columns and indexes, whose expired day is
  removed by ``DELETE`` then ``VACUUM`` (what a table without partitions must do).
Printed per day: the partitioned table's size beside the plain one's, and the time each took
to expire one day. The retention here is compressed (``--keep``, default 14 days) so that
the size levels off within the run; the job and the SQL are the production ones.

Run: ``make bench-retention`` (or ``.venv/bin/python -m bench.retention.run --days 60``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from bench.attribution.run import fresh_database
from deploy.stack import orchestrate
from shared.clock import FixedClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.retention_store import RetentionJob

DROP_TARGET_MS = 1000.0
COLUMNS = (
    "click_id",
    "store_id",
    "visitor_id",
    "affiliate_id",
    "occurred_at",
    "received_at",
    "suspicious",
    "link_code",
    "product_id",
    "sub_id",
)
PLAIN = "attribution.bench_plain_clicks"


@dataclass(frozen=True)
class BenchRetention:
    """The job's settings with a compressed click retention (the rules' checks are the
    services'; the bench only wants to reach the steady state sooner)."""

    retention_clicks_days: int
    retention_reports_days: int = 775
    retention_topic_hours: int = 168
    retention_idempotency_days: int = 14
    retention_webhooks_days: int = 30
    retention_partitions_ahead_days: int = 2
    attribution_window_days: int = 15
    attribution_grace_s: int = 600


def day_clicks(run: str, day: date, n: int) -> list[tuple[object, ...]]:
    start = datetime.combine(day, datetime.min.time(), UTC)
    step = timedelta(days=1) / n
    rows: list[tuple[object, ...]] = []
    for i in range(n):
        at = start + i * step
        rows.append(
            (
                f"{run}-{day:%Y%m%d}-{i}",
                f"s{i % 50}",
                f"v{(i * 7919) % (n // 3 + 1)}-{day:%j}",
                f"a{i % 200}",
                at,
                at,
                i % 97 == 0,
                f"l{i % 500}",
                f"p{i % 1000}",
                None,
            )
        )
    return rows


async def sizes(conn: asyncpg.Connection) -> tuple[int, int]:
    """Bytes of the partitioned clicks (all partitions, indexes included) and of the plain."""
    partitioned = await conn.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
        "WHERE inhparent = 'attribution.clicks'::regclass"
    )
    plain = await conn.fetchval(f"SELECT pg_total_relation_size('{PLAIN}')")
    return int(partitioned), int(plain)


async def measure(
    settings: Settings, stack: orchestrate.Stack, days: int, per_day: int, keep: int
) -> None:
    run = uuid.uuid4().hex[:6]
    async with fresh_database(stack, f"bench_retention_{run}") as database_url:
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        engine = make_engine(database_url)
        try:
            await conn.execute(
                f"""
                CREATE TABLE {PLAIN} (LIKE attribution.clicks INCLUDING DEFAULTS);
                ALTER TABLE {PLAIN} ADD PRIMARY KEY (click_id);
                CREATE INDEX ON {PLAIN} (visitor_id, store_id, occurred_at, click_id)
                    WHERE NOT suspicious;
                CREATE INDEX ON {PLAIN} (visitor_id, occurred_at, click_id);
                CREATE INDEX ON {PLAIN} USING brin (occurred_at);
                """
            )
            # the first simulated day: past the migration's partitions (dropped, empty, at once)
            first = datetime.now(UTC).date() + timedelta(days=10)
            clock = FixedClock(datetime.combine(first, datetime.min.time(), UTC))
            job = RetentionJob(
                make_sessions(engine), ("attribution",), BenchRetention(keep), clock, 0
            )
            await job.run_once()
            drops_ms: list[float] = []
            deletes_ms: list[float] = []
            curve: list[tuple[int, int, int]] = []
            print(
                f"bench/retention — {days} days of {per_day:,} clicks a day, clicks kept "
                f"{keep} days (compressed), real PostgreSQL"
            )
            print(
                f"{'day':>4}{'partitioned MB':>16}{'plain MB':>10}{'drop ms':>10}{'DELETE+VACUUM ms':>18}"
            )
            for n in range(days):
                day = first + timedelta(days=n)
                clock.set(datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=1))
                started = time.perf_counter()
                report = await job.run_once()
                job_ms = (time.perf_counter() - started) * 1000
                delete_ms = None
                expired = day - timedelta(days=keep + 1)  # the day a drop takes, once there
                dropped = (
                    expired >= first and f"attribution.clicks_p{expired:%Y%m%d}" in report.dropped
                )
                if dropped:
                    drops_ms.append(job_ms)
                    started = time.perf_counter()
                    await conn.execute(
                        f"DELETE FROM {PLAIN} WHERE occurred_at < $1",
                        datetime.combine(expired + timedelta(days=1), datetime.min.time(), UTC),
                    )
                    await conn.execute(f"VACUUM {PLAIN}")
                    delete_ms = (time.perf_counter() - started) * 1000
                    deletes_ms.append(delete_ms)
                rows = day_clicks(run, day, per_day)
                await conn.copy_records_to_table(
                    "clicks", schema_name="attribution", records=rows, columns=COLUMNS
                )
                await conn.copy_records_to_table(
                    "bench_plain_clicks", schema_name="attribution", records=rows, columns=COLUMNS
                )
                await conn.execute(f"ANALYZE {PLAIN}")
                part, plain = await sizes(conn)
                curve.append((n + 1, part, plain))
                print(
                    f"{n + 1:>4}{part / 2**20:>16.1f}{plain / 2**20:>10.1f}"
                    f"{(f'{job_ms:.0f}' if dropped else '-'):>10}"
                    f"{(f'{delete_ms:.0f}' if delete_ms is not None else '-'):>18}"
                )
        finally:
            await conn.close()
            await engine.dispose()
    if not drops_ms:
        print("bench-retention: no day expired (more --days than --keep needed)")
        return
    steady = [p for d, p, _ in curve if d > keep + 1]
    at_reach, last = steady[0], steady[-1]
    growth = (last - at_reach) / at_reach * 100
    levelled = "yes" if abs(growth) < 10 else "no"
    drop = statistics.median(drops_ms)
    delete = statistics.median(deletes_ms)
    print(
        f"bench-retention: drop one day {drop:.0f} ms (max {max(drops_ms):.0f}), DELETE "
        f"{delete:.0f} ms (max {max(deletes_ms):.0f}), size levelled {levelled} "
        f"({at_reach / 2**20:.1f} MB at day {keep + 2} → {last / 2**20:.1f} MB at day "
        f"{days}, {growth:+.1f}%; plain table {curve[-1][2] / 2**20:.1f} MB) "
        f"(target drop < {DROP_TARGET_MS / 1000:.0f} s)"
        + ("" if drop < DROP_TARGET_MS and levelled == "yes" else " — MISSED")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="day partitions dropped vs DELETE + VACUUM")
    parser.add_argument("--days", type=int, default=60, help="days simulated")
    parser.add_argument("--clicks-per-day", type=int, default=50_000)
    parser.add_argument("--keep", type=int, default=14, help="days of clicks kept")
    args = parser.parse_args()
    settings = Settings()
    # synchronous: runs its own event loops; the bench migrates a database of its own
    stack = orchestrate.up(settings, migrate=False)
    asyncio.run(measure(settings, stack, args.days, args.clicks_per_day, args.keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
