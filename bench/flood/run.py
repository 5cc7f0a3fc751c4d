"""bench/flood: one visitor's flood of clicks, then its order, against the attribution service.

Produces N clicks (default 2,000,000) of one visitor on one link to fresh topics on the real
broker (what replaying ``GET /r/{code}`` with one cookie sends), runs the attribution
service (one worker, a subprocess of `alliance attribution`, on a fresh migrated database)
until it has read them all, then produces the visitor's order and measures, side by side
with a baseline in the same run (a fresh visitor: one click, then an order):
- the decision's latency: from the order's arrival on the broker to its decision stored;
- the attribution process's resident memory (VmRSS), sampled throughout, and its peak
  (VmHWM).
Targets: the flooded decision within 5 s, the RSS below 300 MB throughout.

Run: ``make bench-flood`` (or ``.venv/bin/python -m bench.flood.run --clicks 2000000``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from bench.attribution.run import fresh_database, produce, stored_progress, vm_hwm_mb
from deploy import procs
from deploy.stack import kafka, orchestrate
from shared.config import Settings
from shared.events import Click, OrderItem, OrderPlaced, Topic, encode
from shared.kafka import end_offsets_of, make_producer

DECISION_TARGET_S = 5.0
RSS_TARGET_MB = 300.0


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def flood(
    run: str, visitor: str, clicks: int, now: datetime, ip: str = "192.0.2.66"
) -> Iterator[tuple[str, bytes]]:
    """``clicks`` clicks of ``visitor`` (from ``ip``) on one link of the run's store over the
    last hour, oldest first, made as they are sent (the bench holds a chunk, not the flood)."""
    step = timedelta(hours=1) / max(clicks, 1)
    for n in range(clicks):
        at = now - timedelta(hours=1) + n * step
        c = Click(
            event_id=f"{run}{visitor}c{n}",
            occurred_at=at,
            received_at=at,
            affiliate_id="flooder",
            store_id=f"{run}s",
            link_code="k1.flood.link",
            visitor_id=visitor,
            suspicious=n > 0,  # the tracker marks a flood (the first click is honest)
            ip=ip,
        )
        yield visitor, encode(c)


def order_of(run: str, visitor: str, n: int) -> bytes:
    return encode(
        OrderPlaced(
            event_id=f"{run}o{n}",
            occurred_at=datetime.now(UTC),
            store_id=f"{run}s",
            order_id=f"{run}o{n}",
            visitor_id=visitor,
            currency="USD",
            items=[OrderItem(product_id="p", quantity=1, unit_price=Decimal("25.00"))],
        )
    )


class Sampler:
    """The attribution process's RSS, sampled every 0.2 s until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_rss = 0.0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.max_rss = max(self.max_rss, vm_rss_mb(self.pid))
            await asyncio.sleep(0.2)

    async def stop(self) -> float:
        self.task.cancel()
        self.max_rss = max(self.max_rss, vm_rss_mb(self.pid), vm_hwm_mb(self.pid))
        return self.max_rss


async def seed(dsn: str, run: str, visitor: str, clicks: int) -> None:
    """``clicks`` clicks of ``visitor`` stored at once (server side), over the last ten days,
    a quarter eligible (the latest: ``winner``), the rest suspicious or on another store."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO attribution.clicks (click_id, store_id, visitor_id, affiliate_id,
                occurred_at, received_at, suspicious, link_code)
            SELECT $1 || n, CASE WHEN n % 4 = 2 THEN $2 || 'other' ELSE $2 END, $3,
                CASE WHEN n = $4 THEN 'winner' ELSE 'flooder' END,
                now() - make_interval(secs => ($4 - n) * 0.4 + 1), now(),
                n % 4 = 1, 'k1.flood.link'
            FROM generate_series(0, $4) AS n
            """,
            f"{run}{visitor}c",
            f"{run}s",
            visitor,
            clicks - clicks % 4,  # n % 4 = 0: the last click is eligible
        )
        await conn.execute("ANALYZE attribution.clicks")
    finally:
        await conn.close()


async def read_up_to(database_url: str, prefix: str, total: int) -> None:
    """Until the attribution service has stored offsets summing to ``total``."""
    while True:
        if await stored_progress(database_url, prefix) >= total:
            return
        await asyncio.sleep(0.2)


async def decision_s(
    settings: Settings, topic: str, dsn: str, run: str, visitor: str, n: int
) -> tuple[float, str | None]:
    """Seconds from the order's arrival on the broker to its decision stored, and the
    affiliate it went to."""
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, order_of(run, visitor, n), key=visitor.encode())
    finally:
        await producer.stop()
    arrived = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        while time.monotonic() - arrived < 120:
            row = await conn.fetchrow(
                "SELECT affiliate_id FROM attribution.orders WHERE order_id = $1 AND revision >= 0",
                f"{run}o{n}",
            )
            if row is not None:
                return time.monotonic() - arrived, row["affiliate_id"]
            await asyncio.sleep(0.02)
        return float("inf"), None
    finally:
        await conn.close()


async def measure(settings: Settings, stack: orchestrate.Stack, clicks: int) -> None:
    run = uuid.uuid4().hex[:6]
    prefix = f"bench-flood-{run}-"
    bench = settings.model_copy(update={"topic_prefix": prefix, "kafka_bootstrap": stack.bootstrap})
    await kafka.create_topics(stack.kafka.connection, orchestrate.topic_names(bench), 1)
    clicks_topic, orders_topic = bench.topic(Topic.CLICKS), bench.topic(Topic.ORDERS)
    async with fresh_database(stack, f"bench_flood_{run}") as database_url:
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        run_dir = Path(tempfile.mkdtemp(prefix="bench-flood-"))
        env = {
            "ALLIANCE_ENV": "dev",  # the bench runs on the development secrets
            "ALLIANCE_TOPIC_PREFIX": prefix,
            "ALLIANCE_ATTRIBUTION_PORT": "18512",
            "ALLIANCE_KAFKA_BOOTSTRAP": stack.bootstrap,
            "ALLIANCE_DATABASE_URL": database_url,
        }
        pid = procs.start("attribution", ["attribution"], run_dir, env)
        sampler = Sampler(pid)
        try:
            # baseline: a fresh visitor, one click, then an order
            calm = f"{run}calm"
            await produce(
                stack.kafka.connection, clicks_topic, flood(run, calm, 1, _now(), "192.0.2.1")
            )
            await read_up_to(database_url, prefix, 1)
            base_s, base_aff = await decision_s(bench, orders_topic, dsn, run, calm, 0)
            base_rss = sampler.max_rss
            # the flood, read to its end, then the flooding visitor's order
            visitor = f"{run}flood"
            start = time.monotonic()
            await produce(stack.kafka.connection, clicks_topic, flood(run, visitor, clicks, _now()))
            produced_s = time.monotonic() - start
            total = sum(
                (
                    await end_offsets_of(stack.kafka.connection, [clicks_topic, orders_topic])
                ).values()
            )
            await read_up_to(database_url, prefix, total)
            drained_s = time.monotonic() - start
            flood_s, flood_aff = await decision_s(bench, orders_topic, dsn, run, visitor, 1)
            flood_rss = sampler.max_rss
            # the decision alone: the same number of one visitor's clicks already stored (as
            # before the cap), eligible ones among them, then its order
            seeded = f"{run}seeded"
            start = time.monotonic()
            await seed(dsn, run, seeded, clicks)
            seeded_in_s = time.monotonic() - start
            seeded_s, seeded_aff = await decision_s(bench, orders_topic, dsn, run, seeded, 2)
            peak = await sampler.stop()
            conn = await asyncpg.connect(dsn)
            try:
                stored = await conn.fetchval(
                    "SELECT count(*) FROM attribution.clicks WHERE visitor_id = $1", visitor
                )
                counted = await conn.fetchval(
                    "SELECT coalesce(sum(overflow), 0) FROM attribution.click_caps"
                )
            finally:
                await conn.close()
        finally:
            sampler.task.cancel()
            procs.stop("attribution", run_dir)
    print("bench/flood — one attribution worker, real broker and PostgreSQL")
    head = f"{'':38}{'baseline (1 click)':>20}{f'flood ({clicks:,} clicks)':>26}"
    print(head + f"{f'{clicks:,} stored clicks':>26}")
    print(f"{'decision after the order (s)':38}{base_s:>20.2f}{flood_s:>26.2f}{seeded_s:>26.2f}")
    print(f"{'RSS max so far (MB)':38}{base_rss:>20.0f}{flood_rss:>26.0f}{peak:>26.0f}")
    print(
        f"{'decided for':38}{base_aff or 'organic':>20}{flood_aff or 'organic':>26}"
        f"{seeded_aff or 'organic':>26}"
    )
    print(
        f"flood produced in {produced_s:.0f} s, read by attribution in {drained_s:.0f} s; "
        f"clicks stored {stored:,}, counted past the cap {counted:,}; {clicks:,} clicks "
        f"stored directly in {seeded_in_s:.0f} s"
    )
    print(
        f"bench-flood: decision {max(flood_s, seeded_s):.2f} s, baseline {base_s:.2f} s "
        f"(target {DECISION_TARGET_S:.0f} s), RSS max {peak:.0f} MB, baseline {base_rss:.0f} MB "
        f"(target {RSS_TARGET_MB:.0f} MB)"
        + (
            ""
            if max(flood_s, seeded_s) < DECISION_TARGET_S and peak < RSS_TARGET_MB
            else " — MISSED"
        )
    )


def _now() -> datetime:
    return datetime.now(UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description="one visitor's flood of clicks, then its order")
    parser.add_argument("--clicks", type=int, default=2_000_000)
    args = parser.parse_args()
    settings = Settings()
    stack = orchestrate.up(settings)  # synchronous: runs its own event loops
    asyncio.run(measure(settings, stack, args.clicks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
