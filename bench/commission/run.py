"""bench/commission: completions and refunds through the commission consumer into the ledger,
next to the commission floor and an asyncpg COPY of the same number of posting rows, plus
settlement-query latency.

Produces, for N orders of one store: the attribution decision, the completion, and a refund
for one order in ten, into a database of the run's own, then measures in the same run:
- the floor (issue 20): one aiokafka consumer reading the same input, decoding with orjson and
  per batch, in one transaction, COPYing what the ledger must hold (a ledger transaction and
  its two postings per payable or reversed order, the order's facts row, the order's summary
  upsert) and its offsets: no rules, no idempotency check;
- one `alliance commission` process from its start until its stored offsets reach the end;
- an asyncpg ``COPY`` of as many posting rows into a scratch table (rows/s), and the p50/p99
  of ``GET /v1/settlements/stores/{id}`` afterwards; then `alliance ledger verify`.
Targets: service ≥ 0.5 of the floor (issue 20); settlement p99 ≤ 100 ms over 10M postings.

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
import orjson
from sqlalchemy import func, select

from bench.attribution.run import (
    floor_consumer,
    fresh_database,
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
from services.commission.core.ledger import (
    TxnKind,
    affiliate_account,
    commission_key,
    reversal_key,
    store_account,
)
from services.commission.core.program import OpKind
from services.commission.orders.verify import verify
from services.commission.program.service import ProgramService
from shared.clock import FixedClock
from shared.config import KafkaConnection, Settings
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


#: the floor's tables: the ledger's own shapes (``LIKE … INCLUDING ALL``: the same columns,
#: keys, indexes and defaults, so that the floor pays the same index upkeep), the postings'
#: foreign key too, and the summary as an upsert on its own table
FLOOR_TABLES = """
CREATE TABLE bench_floor_transactions (LIKE commission.ledger_transactions INCLUDING ALL);
CREATE TABLE bench_floor_postings (LIKE commission.ledger_postings INCLUDING ALL);
ALTER TABLE bench_floor_postings ADD FOREIGN KEY (txn_id) REFERENCES bench_floor_transactions (id);
CREATE TABLE bench_floor_orders (LIKE commission.orders INCLUDING ALL);
CREATE TABLE bench_floor_summaries (store_id text, order_id text, sales_minor bigint NOT NULL,
    commission_minor bigint NOT NULL, reversed_minor bigint NOT NULL,
    PRIMARY KEY (store_id, order_id));
CREATE TABLE bench_floor_offsets (LIKE commission.consumer_offsets INCLUDING ALL);
"""

#: one statement for the batch's summaries: new orders inserted, known ones added to
FLOOR_SUMMARIES = """
INSERT INTO bench_floor_summaries
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
ON CONFLICT (store_id, order_id) DO UPDATE SET
    sales_minor = bench_floor_summaries.sales_minor + excluded.sales_minor,
    commission_minor = bench_floor_summaries.commission_minor + excluded.commission_minor,
    reversed_minor = bench_floor_summaries.reversed_minor + excluded.reversed_minor
"""

FLOOR_OFFSETS = """
INSERT INTO bench_floor_offsets SELECT 'floor', * FROM unnest($1::text[], $2::int[], $3::bigint[])
ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = excluded.next_offset
"""

#: what the floor posts per payable order and per reversal (it applies no rule: a constant)
FLOOR_COMMISSION_MINOR, FLOOR_REVERSAL_MINOR = 400, 100


async def commission_floor(
    cluster: KafkaConnection, topics: list[str], total: int, dsn: str, batch: int
) -> float:
    """Seconds for the least any durable commission worker does (issue 20): read the
    attributions and the order events, decode each (orjson, no validation) and, per batch in
    one transaction, ``COPY`` what the ledger must hold: each attribution's order facts row;
    per completion (a payable order) and per refund (a reversal) a ledger transaction and its
    two postings, and the order's summary upsert; then the offsets. No rules (constant
    amounts), no idempotency check, transaction ids counted here: an upper bound of what the
    commission consumer can reach on this machine. ``topics``: attributions, then orders."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(FLOOR_TABLES)
    consumer = await floor_consumer(cluster, topics, batch)
    parse = datetime.fromisoformat
    affiliates: dict[tuple[str, str], str] = {}  # the decision's affiliate, for the postings
    next_id = 1
    try:
        seen, start = 0, time.monotonic()
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=500, max_records=batch)
            facts, txns, postings, offsets = [], [], [], []
            sums: dict[tuple[str, str], list[int]] = {}
            now = datetime.now(UTC)
            for tp, records in fetched.items():
                for r in records:
                    e = orjson.loads(r.value or b"{}")
                    key = (e["store_id"], e["order_id"])
                    if tp.topic == topics[0]:
                        order = e["order"]
                        affiliates[key] = e["affiliate_id"]
                        e.pop("order")
                        facts.append(
                            (
                                *key,
                                e["revision"],
                                e["affiliate_id"],
                                e["click_id"],
                                parse(e["click_at"]),
                                e.get("sub_id"),
                                orjson.dumps(e).decode(),
                                order["currency"],
                                parse(order["occurred_at"]),
                                orjson.dumps(order["items"]).decode(),
                            )
                        )
                        continue
                    if e["type"] == "order_completed":
                        kind, txn_key = TxnKind.COMMISSION.value, commission_key(*key)
                        amount = FLOOR_COMMISSION_MINOR
                        sums.setdefault(key, [0, 0, 0])[1] += amount
                    elif e["type"] == "order_refunded":
                        kind = TxnKind.REVERSAL.value
                        txn_key = reversal_key(*key, e["refund_id"])
                        amount = -FLOOR_REVERSAL_MINOR
                        sums.setdefault(key, [0, 0, 0])[2] += FLOOR_REVERSAL_MINOR
                    else:
                        continue
                    affiliate = affiliates.get(key, "unknown")
                    txns.append(
                        (next_id, txn_key, kind, key[1], key[0], affiliate, "USD", now, now)
                    )
                    postings.append((next_id, store_account(key[0]), "USD", -amount))
                    postings.append((next_id, affiliate_account(affiliate), "USD", amount))
                    next_id += 1
                offsets.append((tp.topic, tp.partition, records[-1].offset + 1))
                seen += len(records)
            if not offsets:
                continue
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "bench_floor_orders", records=facts, columns=FLOOR_ORDER_COLUMNS
                )
                await conn.copy_records_to_table(
                    "bench_floor_transactions", records=txns, columns=FLOOR_TXN_COLUMNS
                )
                await conn.copy_records_to_table(
                    "bench_floor_postings", records=postings, columns=FLOOR_POSTING_COLUMNS
                )
                if sums:
                    await conn.execute(
                        FLOOR_SUMMARIES,
                        [k[0] for k in sums],
                        [k[1] for k in sums],
                        *([v[n] for v in sums.values()] for n in range(3)),
                    )
                await conn.execute(FLOOR_OFFSETS, *map(list, zip(*offsets, strict=True)))
        return time.monotonic() - start
    finally:
        await consumer.stop()
        await conn.close()


#: an order's facts as its decision brings them (its status starts at the default, placed)
FLOOR_ORDER_COLUMNS = (
    "store_id",
    "order_id",
    "attribution_revision",
    "affiliate_id",
    "click_id",
    "click_at",
    "sub_id",
    "attribution",
    "currency",
    "placed_at",
    "items",
)
FLOOR_POSTING_COLUMNS = ("txn_id", "account", "currency", "amount_minor")
#: a ledger transaction's columns the floor writes (an adjustment's reason stays empty)
FLOOR_TXN_COLUMNS = (
    "id",
    "key",
    "kind",
    "order_id",
    "store_id",
    "affiliate_id",
    "currency",
    "occurred_at",
    "posted_at",
)


async def main_async(
    settings: Settings, stack: orchestrate.Stack, orders: int, batch: int, port: int
) -> None:
    run = uuid.uuid4().hex[:6]
    async with fresh_database(stack, f"bench_commission_{run}") as database_url:
        await measure(settings, stack, orders, batch, port, f"bench-{run}-", database_url)


async def measure(
    settings: Settings,
    stack: orchestrate.Stack,
    orders: int,
    batch: int,
    port: int,
    prefix: str,
    database_url: str,
) -> None:
    bench = settings.model_copy(update={"topic_prefix": prefix})
    topics = [bench.topic(Topic.ATTRIBUTIONS), bench.topic(Topic.ORDERS)]
    await kafka.create_topics(stack.kafka.connection, orchestrate.topic_names(bench), 1)
    store_key = await setup_store(database_url, bench, f"{prefix}store")
    attributions, order_events = events(prefix, orders)
    await produce(stack.kafka.connection, topics[0], attributions)
    await produce(stack.kafka.connection, topics[1], order_events)
    total = sum((await end_offsets_of(stack.kafka.connection, topics)).values())
    # no consumer turns events into postings faster than a bare consumer reads the events
    raw_s = await raw_read(stack.kafka.connection, topics, total)
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    floor_s = await commission_floor(stack.kafka.connection, topics, total, dsn, batch)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-commission-"))
    env = {
        "ALLIANCE_ENV": "dev",  # the bench runs on the development secrets
        **UNREACHED_LIMITS_ENV,  # one load generator's address: measured, never refused
        "ALLIANCE_TOPIC_PREFIX": prefix,
        "ALLIANCE_COMMISSION_PORT": str(port),
        "ALLIANCE_KAFKA_BOOTSTRAP": stack.bootstrap,
        "ALLIANCE_DATABASE_URL": database_url,
        "ALLIANCE_CONSUMER_BATCH_SIZE": str(batch),
    }
    start = time.monotonic()
    pid = procs.start("commission", ["commission"], run_dir, env)
    print(f"commission service pid {pid} (py-spy record --pid {pid} profiles it)", flush=True)
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
    copy_s = await copy_baseline(dsn, postings)
    verified = await verify_ledger(database_url)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    raw_rate, floor_rate, service_rate = total / raw_s, total / floor_s, total / consumer_s
    print(f"bench/commission — one worker (batches of {batch}), real broker and PostgreSQL")
    print(
        f"{orders:,} orders: {total:,} events in, {postings:,} postings out (memory peak {peak:.0f} MB)"
    )
    print(f"{'':22}{'asyncpg COPY':>14}{'raw read':>12}{'floor':>12}{'commission consumer':>21}")
    print(
        f"{'postings/s':22}{postings / copy_s:>14,.0f}{postings / raw_s:>12,.0f}"
        f"{postings / floor_s:>12,.0f}{postings / consumer_s:>21,.0f}"
    )
    print(f"{'events/s':22}{'':>14}{raw_rate:>12,.0f}{floor_rate:>12,.0f}{service_rate:>21,.0f}")
    print(f"{'seconds':22}{copy_s:>14.1f}{raw_s:>12.1f}{floor_s:>12.1f}{consumer_s:>21.1f}")
    print(
        f"ratio floor/raw read = {floor_rate / raw_rate:.3f}: the most any worker that stores "
        "the ledger's rows reaches here (no rules, no idempotency check)"
    )
    print("(service time includes its start-up)")
    print(
        f"settlement query over {orders:,} orders: p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms (target ≤ 100 ms over 10M postings)"
    )
    print(f"alliance ledger verify: {'ledger OK' if verified else 'ledger NOT OK'}")
    print(
        f"bench-commission: service {service_rate:,.0f}/s, floor {floor_rate:,.0f}/s, "
        f"ratio {service_rate / floor_rate:.2f} (target ≥ 0.5)"
    )


async def verify_ledger(database_url: str) -> bool:
    """`alliance ledger verify` on the run's database: the ledger the service wrote holds."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            return (await verify(session)).ok
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description="commission ledger throughput and settlement latency"
    )
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument(
        "--batch", type=int, default=Settings().consumer_batch_size, help="consumer batch size"
    )
    parser.add_argument("--port", type=int, default=18503, help="the service's HTTP port")
    args = parser.parse_args()
    settings = Settings()
    stack = orchestrate.up(settings)
    asyncio.run(main_async(settings, stack, args.orders, args.batch, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
