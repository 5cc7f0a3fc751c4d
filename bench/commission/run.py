"""bench/commission: completions and refunds through the commission consumer into the ledger,
next to an asyncpg COPY of the same number of posting rows, plus settlement-query latency.

Produces, for N orders of one store: the attribution decision, the completion, and a refund
for one order in ten, then measures one `alliance commission` process from its start until its
stored offsets reach the end (postings/s), an asyncpg ``COPY`` of as many posting rows into a
scratch table (rows/s), and the p50/p99 of ``GET /v1/settlements/stores/{id}`` afterwards.
Targets (issue 5): ratio ≥ 0.25; settlement p99 ≤ 100 ms over 10M postings.

Run: ``make bench-commission`` (or ``.venv/bin/python -m bench.commission.run --orders 100000``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func, select

from bench.attribution.run import (
    produce,
    raw_read,
    scalar,
    stored_progress,
    vm_hwm_mb,
)
from deploy import procs
from deploy.stack import kafka, orchestrate
from services.commission import models as m
from services.commission.admin.service import AdminService
from services.commission.core.program import OpKind
from services.commission.program.service import ProgramService
from shared.clock import FixedClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.events import (
    Attribution,
    OrderCompleted,
    OrderItem,
    OrderPlaced,
    OrderRefunded,
    RefundItem,
    Topic,
    encode,
)
from shared.kafka import end_offsets_of
from shared.limits import UNREACHED_LIMITS_ENV


def events(run: str, orders: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    now = datetime.now(UTC) - timedelta(days=1)
    store = f"{run}store"
    attributions, order_events = [], []
    for n in range(orders):
        oid = f"{run}o{n}"
        placed = OrderPlaced(
            event_id=f"{oid}-p",
            occurred_at=now,
            store_id=store,
            order_id=oid,
            visitor_id=f"v{n}",
            currency="USD",
            items=[
                OrderItem(
                    product_id=f"p{n % 50}",
                    category_id="c",
                    quantity=2,
                    unit_price=Decimal("19.99"),
                    shipping_fee=Decimal("1.50"),
                )
            ],
        )
        decision = Attribution(
            event_id=f"{oid}:0",
            occurred_at=now,
            revision=0,
            order_id=oid,
            store_id=store,
            visitor_id=f"v{n}",
            placed_at=now,
            rule="last_click",
            affiliate_id=f"aff{n % 200}",
            click_id=f"c{n}",
            click_at=now,
            window_start=now - timedelta(days=15),
            window_end=now,
            order=placed,
        )
        attributions.append((oid, encode(decision)))
        order_events.append(
            (
                oid,
                encode(
                    OrderCompleted(
                        event_id=f"{oid}-c", occurred_at=now, store_id=store, order_id=oid
                    )
                ),
            )
        )
        if n % 10 == 0:
            refund = OrderRefunded(
                event_id=f"{oid}-r",
                occurred_at=now,
                store_id=store,
                order_id=oid,
                refund_id="r1",
                items=[RefundItem(product_id=f"p{n % 50}", amount=Decimal("10.00"))],
            )
            order_events.append((oid, encode(refund)))
    return attributions, order_events


async def setup_store(database_url: str, settings: Settings, store: str) -> str:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            keys = await AdminService(settings.secret_key, settings.topic_prefix).create(
                session, "store", store, store, datetime.now(UTC), "https://x.example/{product_id}"
            )
            await ProgramService(FixedClock(datetime.now(UTC) - timedelta(days=30))).change_program(
                session, store, OpKind.JOIN, "bench"
            )
        return keys["api_key"]
    finally:
        await engine.dispose()


async def postings_of(database_url: str, run: str) -> int:
    t, p = m.ledger_transactions, m.ledger_postings
    return await scalar(
        database_url,
        select(func.count())
        .select_from(p.join(t, t.c.id == p.c.txn_id))
        .where(t.c.order_id.like(f"{run}%")),
    )


async def progress(database_url: str, prefix: str) -> int:
    return await stored_progress(database_url, prefix, "commission", m.consumer_offsets)


async def copy_baseline(dsn: str, rows: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TEMP TABLE bench_postings (txn_id bigint, account text, currency text, amount_minor bigint)"
        )
        records = [
            (n // 2, f"affiliate:aff{n % 200}:earned", "USD", 300 if n % 2 else -300)
            for n in range(rows)
        ]
        start = time.monotonic()
        await conn.copy_records_to_table("bench_postings", records=records)
        return time.monotonic() - start
    finally:
        await conn.close()


async def main_async(settings: Settings, stack: orchestrate.Stack, orders: int) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:6]}-"
    bench = settings.model_copy(update={"topic_prefix": prefix})
    await kafka.create_topics(stack.kafka.connection, orchestrate.topic_names(bench), 1)
    database_url = stack.database_url()
    store_key = await setup_store(database_url, bench, f"{prefix}store")
    attributions, order_events = events(prefix, orders)
    await produce(stack.kafka.connection, bench.topic(Topic.ATTRIBUTIONS), attributions)
    await produce(stack.kafka.connection, bench.topic(Topic.ORDERS), order_events)
    total = sum(
        (
            await end_offsets_of(
                stack.kafka.connection, [bench.topic(Topic.ATTRIBUTIONS), bench.topic(Topic.ORDERS)]
            )
        ).values()
    )
    # no consumer turns events into postings faster than a bare consumer reads the events
    raw_s = await raw_read(
        stack.kafka.connection, [bench.topic(Topic.ATTRIBUTIONS), bench.topic(Topic.ORDERS)], total
    )
    run_dir = Path(tempfile.mkdtemp(prefix="bench-commission-"))
    port = 18503
    env = {
        "ALLIANCE_ENV": "dev",  # the bench runs on the development secrets
        **UNREACHED_LIMITS_ENV,  # one load generator's address: measured, never refused
        "ALLIANCE_TOPIC_PREFIX": prefix,
        "ALLIANCE_COMMISSION_PORT": str(port),
        "ALLIANCE_KAFKA_BOOTSTRAP": stack.bootstrap,
        "ALLIANCE_DATABASE_URL": database_url,
    }
    start = time.monotonic()
    pid = procs.start("commission", ["commission"], run_dir, env)
    peak = 0.0
    try:
        while await progress(database_url, prefix) < total:
            peak = max(peak, vm_hwm_mb(pid))
            await asyncio.sleep(0.5)
        consumer_s = time.monotonic() - start
        postings = await postings_of(database_url, prefix)
        latencies = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(30):
                t0 = time.monotonic()
                resp = await client.get(
                    f"/v1/settlements/stores/{prefix}store",
                    headers={"Authorization": f"Bearer {store_key}"},
                )
                latencies.append((time.monotonic() - t0) * 1000)
                assert resp.status_code == 200, resp.text
    finally:
        procs.stop("commission", run_dir)
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    copy_s = await copy_baseline(dsn, postings)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print("bench/commission — one worker, real broker and PostgreSQL")
    print(
        f"{orders:,} orders: {total:,} events in, {postings:,} postings out (memory peak {peak:.0f} MB)"
    )
    print(f"{'':30}{'asyncpg COPY':>16}{'raw read of input':>20}{'commission consumer':>22}")
    print(
        f"{'postings/s':30}{postings / copy_s:>16,.0f}{postings / raw_s:>20,.0f}"
        f"{postings / consumer_s:>22,.0f}"
    )
    print(f"{'events/s':30}{'':>16}{total / raw_s:>20,.0f}{total / consumer_s:>22,.0f}")
    print(
        f"ratio consumer/COPY = {(postings / consumer_s) / (postings / copy_s):.3f} (target ≥ 0.25)"
    )
    print(
        f"ratio raw read/COPY = {copy_s / raw_s:.3f}: the most any consumer of these events "
        "reaches here, with no work at all"
    )
    print(
        f"settlement query over {orders:,} orders: p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms (target ≤ 100 ms over 10M postings)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description="commission ledger throughput and settlement latency"
    )
    parser.add_argument("--orders", type=int, default=100_000)
    args = parser.parse_args()
    settings = Settings()
    stack = orchestrate.up(settings)
    asyncio.run(main_async(settings, stack, args.orders))
    return 0


if __name__ == "__main__":
    sys.exit(main())
