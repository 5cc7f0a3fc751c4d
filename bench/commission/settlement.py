"""bench/commission/settlement: settlement latency over a ledger of 10M postings.

Seeds a fresh, migrated database with COPY: a year of orders of ``--stores`` stores and
``--affiliates`` affiliates (85% completed, 10% still placed, 5% cancelled; one completed
order in ten refunded; one in ten in EUR), each with its commission summary, and the ledger
transactions and postings the consumer would have posted for them (2 per commission, 2 per
reversal) until ``--postings`` postings. Then, side by side in the same run, for the same
random (store or affiliate, month) requests:

- baseline: the settlement's aggregate SQL alone, over asyncpg (the floor);
- the service: ``GET /v1/settlements/stores/{id}`` and ``/affiliates/{id}`` of a real
  ``alliance commission`` process, finance key, over HTTP.

Target (issue 5): p99 ≤ 100 ms over 10M postings.

Run: ``make bench-settlement`` (or ``.venv/bin/python -m bench.commission.settlement``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from deploy import procs
from deploy.migrations import upgrade
from deploy.stack import orchestrate, postgres
from services.commission.admin.service import AdminService
from services.commission.finance.repository import FinanceRepository
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.limits import UNREACHED_LIMITS_ENV

YEAR = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 50_000  # orders per COPY


def seed_rows(
    rng: random.Random, first: int, count: int, stores: int, affiliates: int, txn_id: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """(orders, transactions, postings) of orders ``first`` .. ``first + count``."""
    orders, txns, postings = [], [], []
    for n in range(first, first + count):
        store, affiliate = f"s{rng.randrange(stores)}", f"a{rng.randrange(affiliates)}"
        currency = "EUR" if n % 10 == 3 else "USD"
        placed = YEAR + timedelta(seconds=rng.randrange(365 * 86_400))
        roll = rng.random()
        status = "completed" if roll < 0.85 else ("placed" if roll < 0.95 else "cancelled")
        status_at = placed + timedelta(days=rng.randrange(1, 20)) if status != "placed" else None
        sales = rng.randrange(500, 50_000)
        commission = sales * 6 // 100
        refunded = status == "completed" and n % 10 == 7
        reversed_ = commission // 2 if refunded else 0
        oid = f"o{n}"
        charged = status != "cancelled"
        orders.append(
            (
                *(oid, store, currency, placed, "[]", status, status_at, 0, affiliate, f"c{n}"),
                *(charged, sales, commission if charged else 0, reversed_),
            )
        )
        if status_at is None or status != "completed":
            continue
        for kind, amount in (("commission", commission), ("reversal", -reversed_)):
            if kind == "reversal" and not refunded:
                continue
            txn_id += 1
            at = status_at if kind == "commission" else status_at + timedelta(days=3)
            txns.append((txn_id, f"{kind}:{oid}", kind, oid, store, affiliate, currency, at, at))
            postings.append((txn_id, f"store:{store}:commission", currency, -amount))
            postings.append((txn_id, f"affiliate:{affiliate}:earned", currency, amount))
    return orders, txns, postings, txn_id


async def seed(dsn: str, postings_wanted: int, stores: int, affiliates: int) -> tuple[int, int]:
    """COPY orders, transactions and postings until ``postings_wanted``; (orders, postings)."""
    rng = random.Random(7)
    conn = await asyncpg.connect(dsn)
    try:
        orders = postings = txn_id = 0
        started = time.monotonic()
        while postings < postings_wanted:
            o, t, p, txn_id = seed_rows(rng, orders, CHUNK, stores, affiliates, txn_id)
            await conn.copy_records_to_table(
                "orders",
                schema_name="commission",
                records=o,
                columns=[
                    "order_id",
                    "store_id",
                    "currency",
                    "placed_at",
                    "items",
                    "status",
                    "status_at",
                    "attribution_revision",
                    "affiliate_id",
                    "click_id",
                    "chargeable",
                    "sales_minor",
                    "commission_minor",
                    "reversed_minor",
                ],
            )
            await conn.copy_records_to_table(
                "ledger_transactions",
                schema_name="commission",
                records=t,
                columns=[
                    "id",
                    "key",
                    "kind",
                    "order_id",
                    "store_id",
                    "affiliate_id",
                    "currency",
                    "occurred_at",
                    "posted_at",
                ],
            )
            await conn.copy_records_to_table(
                "ledger_postings",
                schema_name="commission",
                records=p,
                columns=["txn_id", "account", "currency", "amount_minor"],
            )
            orders += len(o)
            postings += len(p)
            rate = postings / (time.monotonic() - started)
            print(f"\rseeded {orders:,} orders, {postings:,} postings ({rate:,.0f}/s)", end="")
        print()
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('commission.ledger_transactions', 'id'), $1)",
            txn_id,
        )
        await conn.execute("ANALYZE commission.orders")
        return orders, postings
    finally:
        await conn.close()


def requests(n: int, stores: int, affiliates: int) -> Iterator[tuple[str, str, datetime]]:
    """(kind, id, month start) of ``n`` random settlement requests."""
    rng = random.Random(11)
    for _ in range(n):
        month = datetime(2026, rng.randrange(1, 13), 1, tzinfo=UTC)
        if rng.random() < 0.5:
            yield "stores", f"s{rng.randrange(stores)}", month
        else:
            yield "affiliates", f"a{rng.randrange(affiliates)}", month


def month_end(start: datetime) -> datetime:
    return (start + timedelta(days=32)).replace(day=1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@contextlib.asynccontextmanager
async def commission_api(
    database_url: str, stack: orchestrate.Stack, port: int, name: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A real ``alliance commission`` process on ``database_url``, ready, with an HTTP client
    and the headers of a new finance key; stopped on exit."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            keys = await AdminService("bench", "").create(
                session, "finance", f"bench-{uuid.uuid4().hex[:6]}", "bench", datetime.now(UTC)
            )
    finally:
        await engine.dispose()
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    env = {
        "ALLIANCE_ENV": "dev",  # the bench runs on the development secrets
        **UNREACHED_LIMITS_ENV,  # one load generator's address: measured, never refused
        "ALLIANCE_COMMISSION_PORT": str(port),
        "ALLIANCE_DATABASE_URL": database_url,
        "ALLIANCE_TOPIC_PREFIX": f"bench-{name}-{uuid.uuid4().hex[:6]}-",
        "ALLIANCE_KAFKA_BOOTSTRAP": stack.bootstrap,
    }
    procs.start("commission", ["commission"], run_dir, env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(300):  # wait until it serves
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
            yield client, {"Authorization": f"Bearer {keys['api_key']}"}
    finally:
        procs.stop("commission", run_dir)


async def measure(
    database_url: str, stack: orchestrate.Stack, n: int, stores: int, affiliates: int
) -> tuple[list[float], list[float]]:
    engine = make_engine(database_url, pool_size=2)
    sql: list[float] = []
    try:
        for kind, who, month in requests(n, stores, affiliates):
            async with make_sessions(engine)() as session:
                t0 = time.perf_counter()
                await FinanceRepository(session).settlement_totals(
                    store_id=who if kind == "stores" else None,
                    affiliate_id=who if kind == "affiliates" else None,
                    start=month,
                    end=month_end(month),
                )
                sql.append((time.perf_counter() - t0) * 1000)
    finally:
        await engine.dispose()
    api: list[float] = []
    async with commission_api(database_url, stack, 18504, "settlement") as (client, headers):
        for kind, who, month in requests(n, stores, affiliates):
            params = {"from": month.isoformat(), "to": month_end(month).isoformat()}
            t0 = time.perf_counter()
            resp = await client.get(f"/v1/settlements/{kind}/{who}", params=params, headers=headers)
            api.append((time.perf_counter() - t0) * 1000)
            assert resp.status_code == 200, resp.text
    return sql, api


async def main_async(args: argparse.Namespace, stack: orchestrate.Stack) -> None:
    database = f"bench_settlement_{uuid.uuid4().hex[:6]}"
    await postgres.create_database(stack.postgres, database)
    database_url = stack.database_url(database)
    try:
        await asyncio.to_thread(upgrade, database_url)
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        orders, postings = await seed(dsn, args.postings, args.stores, args.affiliates)
        sql, api = await measure(database_url, stack, args.requests, args.stores, args.affiliates)
        report(args, orders, postings, sql, api)
    finally:
        await postgres.drop_database(stack.postgres, database)


def report(
    args: argparse.Namespace, orders: int, postings: int, sql: list[float], api: list[float]
) -> None:
    print(
        f"bench/commission/settlement — {postings:,} postings, {orders:,} orders, "
        f"{args.stores:,} stores, {args.affiliates:,} affiliates; {args.requests} requests "
        "(random store or affiliate, random month)"
    )
    print(f"{'':22}{'SQL aggregate alone':>22}{'settlement API':>18}")
    for label, q in (("p50 (ms)", 0.5), ("p99 (ms)", 0.99), ("max (ms)", 1.0)):
        print(f"{label:22}{pct(sql, q):>22.1f}{pct(api, q):>18.1f}")
    print(f"mean (ms){'':13}{statistics.mean(sql):>22.1f}{statistics.mean(api):>18.1f}")
    print(f"p99 of the API: {pct(api, 0.99):.1f} ms (target ≤ 100 ms over 10M postings)")


def main() -> int:
    parser = argparse.ArgumentParser(description="settlement latency over a large ledger")
    parser.add_argument("--postings", type=int, default=10_000_000)
    parser.add_argument("--stores", type=int, default=1_000)
    parser.add_argument("--affiliates", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    stack = orchestrate.up(Settings())
    asyncio.run(main_async(args, stack))
    return 0


if __name__ == "__main__":
    sys.exit(main())
