"""bench/commission/settlement: settlement and statement latency over a ledger of 10M
postings, and for one store of 1,000,000 orders in a month.

Seeds a fresh, migrated database with COPY: a year of orders of ``--stores`` stores and
``--affiliates`` affiliates (85% completed, 10% still placed, 5% cancelled; one completed
order in ten refunded; one in ten in EUR), each with its commission summary, and the ledger
transactions and postings the consumer would have posted for them (2 per commission, 2 per
reversal) until ``--postings`` postings; then one more store, ``big``, with ``--orders``
orders placed in June 2026, alike. The rollups (``settlement_days``, ``settlement_hours``,
``statement_days``) are written by their triggers as the COPYs go, one delta row per key and
COPY of 50,000 orders, while a real ``alliance commission`` process runs on the database
with its scheduled rollup compaction (``ALLIANCE_ROLLUP_COMPACT_INTERVAL_S``, every
``--compact-interval`` seconds) folding them beside the writer; the bench then waits until
that compaction has folded the last fresh rows: what is measured is the state a running
service leaves, not one an operator prepared. Then, side by side in the same run:

- the 10M-posting ledger, random (store or affiliate, month) requests: the settlement's SQL
  alone over asyncpg (the floor), and ``GET /v1/settlements/stores/{id}`` and
  ``/affiliates/{id}`` of a real ``alliance commission`` process, finance key, over HTTP;
- the big store: ``GET /v1/settlements/stores/big`` for June (whole days), for random ranges
  inside June at random seconds (partial days at both edges: their whole hours from the
  hourly rollup, the rest of an hour from the orders), and
  ``GET /v1/statements/big/2026-06``, over HTTP.

Targets (issue 20, item 4): the big store's settlement, statement and partial-day settlement
p99 ≤ 50 ms; the 10M-posting settlement p99 ≤ 30 ms. The last line is the verdict.

Run: ``make bench-settlement`` (or ``.venv/bin/python -m bench.commission.settlement``;
``--postings``/``--orders`` smaller for a quick check).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
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
from services.commission.orders.repository import LedgerRepository
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.limits import UNREACHED_LIMITS_ENV

YEAR = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 50_000  # orders per COPY
#: requests sent before measuring, not counted
WARM_UP = 20
#: the big store, and the month its orders are placed in
BIG, BIG_MONTH, BIG_PERIOD = "big", datetime(2026, 6, 1, tzinfo=UTC), "2026-06"
ORDER_COLUMNS = [
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
]
TXN_COLUMNS = [
    "id",
    "key",
    "kind",
    "order_id",
    "store_id",
    "affiliate_id",
    "currency",
    "occurred_at",
    "posted_at",
]


def seed_rows(
    rng: random.Random,
    first: int,
    count: int,
    stores: int,
    affiliates: int,
    txn_id: int,
    big: bool = False,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """(orders, transactions, postings) of orders ``first`` .. ``first + count``: of random
    stores over the year, or (``big``) of the big store in its month."""
    orders, txns, postings = [], [], []
    for n in range(first, first + count):
        store, affiliate = f"s{rng.randrange(stores)}", f"a{rng.randrange(affiliates)}"
        currency = "EUR" if n % 10 == 3 else "USD"
        placed = YEAR + timedelta(seconds=rng.randrange(365 * 86_400))
        if big:
            store, placed = BIG, BIG_MONTH + timedelta(seconds=rng.randrange(30 * 86_400))
        roll = rng.random()
        status = "completed" if roll < 0.85 else ("placed" if roll < 0.95 else "cancelled")
        status_at = placed + timedelta(days=rng.randrange(1, 20)) if status != "placed" else None
        sales = rng.randrange(500, 50_000)
        commission = sales * 6 // 100
        refunded = status == "completed" and n % 10 == 7
        reversed_ = commission // 2 if refunded else 0
        oid = f"b{n}" if big else f"o{n}"
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


async def copy_chunk(
    conn: asyncpg.Connection,
    rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]],
) -> None:
    """COPY one chunk's orders, transactions and postings (the rollups' triggers fire)."""
    o, t, p = rows
    await conn.copy_records_to_table(
        "orders", schema_name="commission", records=o, columns=ORDER_COLUMNS
    )
    await conn.copy_records_to_table(
        "ledger_transactions", schema_name="commission", records=t, columns=TXN_COLUMNS
    )
    await conn.copy_records_to_table(
        "ledger_postings",
        schema_name="commission",
        records=p,
        columns=["txn_id", "account", "currency", "amount_minor"],
    )


async def seed(
    dsn: str, postings_wanted: int, stores: int, affiliates: int, big_orders: int = 0
) -> tuple[int, int]:
    """COPY orders, transactions and postings until ``postings_wanted``, then the big store's
    ``big_orders``; (orders, postings) in all."""
    rng = random.Random(7)
    conn = await asyncpg.connect(dsn)
    try:
        orders = postings = txn_id = 0
        started = time.monotonic()
        while postings < postings_wanted:
            o, t, p, txn_id = seed_rows(rng, orders, CHUNK, stores, affiliates, txn_id)
            await copy_chunk(conn, (o, t, p))
            orders += len(o)
            postings += len(p)
            rate = postings / (time.monotonic() - started)
            print(f"\rseeded {orders:,} orders, {postings:,} postings ({rate:,.0f}/s)", end="")
        print()
        for first in range(0, big_orders, CHUNK):
            count = min(CHUNK, big_orders - first)
            o, t, p, txn_id = seed_rows(rng, first, count, stores, affiliates, txn_id, big=True)
            await copy_chunk(conn, (o, t, p))
            orders += len(o)
            postings += len(p)
            print(f"\rseeded the big store's {first + count:,} orders", end="")
        print()
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('commission.ledger_transactions', 'id'), $1)",
            txn_id,
        )
        await conn.execute("ANALYZE commission.orders")
        for table in ("settlement_days", "settlement_hours", "statement_days"):  # autovacuum
            await conn.execute(f"VACUUM ANALYZE commission.{table}")
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
    database_url: str,
    stack: orchestrate.Stack,
    port: int,
    name: str,
    compact_interval_s: float = 60,
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
        "ALLIANCE_ROLLUP_COMPACT_INTERVAL_S": str(compact_interval_s),
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


def big_ranges(n: int) -> Iterator[tuple[datetime, datetime]]:
    """``n`` random ranges inside the big store's month, at random seconds: partial days at
    both edges."""
    rng = random.Random(13)
    for _ in range(n):
        a, b = sorted(rng.randrange(30 * 86_400) for _ in range(2))
        yield BIG_MONTH + timedelta(seconds=a), BIG_MONTH + timedelta(seconds=b + 1)


@dataclass
class Latencies:
    """Milliseconds per request, by what was asked."""

    sql: list[float] = field(default_factory=list)  # 10M postings: the settlement's SQL
    api: list[float] = field(default_factory=list)  # 10M postings: the settlement over HTTP
    big_month: list[float] = field(default_factory=list)  # big store, June, over HTTP
    big_ranges: list[float] = field(default_factory=list)  # big store, partial days
    big_statement: list[float] = field(default_factory=list)  # big store, June statement


async def timed(
    client: httpx.AsyncClient, out: list[float], url: str, headers: dict[str, str], **params: str
) -> None:
    t0 = time.perf_counter()
    resp = await client.get(url, params=params, headers=headers)
    out.append((time.perf_counter() - t0) * 1000)
    assert resp.status_code == 200, resp.text


async def compacted(database_url: str, timeout_s: float = 3600) -> tuple[int, float]:
    """Wait until the running service's scheduled compaction has folded every fresh rollup
    row; (fresh rows when the wait began, seconds waited)."""
    engine = make_engine(database_url, pool_size=1)
    began = time.monotonic()
    try:
        first = None
        while time.monotonic() - began < timeout_s:
            async with make_sessions(engine)() as session:
                fresh = await LedgerRepository(session).fresh_rollup_rows()
            first = fresh if first is None else first
            print(f"\rfresh rollup rows left: {fresh:,}   ", end="")
            if fresh == 0:
                print()
                return first, time.monotonic() - began
            await asyncio.sleep(2)
        raise TimeoutError("the service's compaction did not finish")
    finally:
        await engine.dispose()


async def measure_sql(database_url: str, args: argparse.Namespace, out: Latencies) -> None:
    """The 10M-posting settlements' SQL alone, over asyncpg (the floor of the API's)."""
    engine = make_engine(database_url, pool_size=2)
    try:
        for kind, who, month in requests(args.requests, args.stores, args.affiliates):
            async with make_sessions(engine)() as session:
                t0 = time.perf_counter()
                await FinanceRepository(session).settlement_totals(
                    store_id=who if kind == "stores" else None,
                    affiliate_id=who if kind == "affiliates" else None,
                    start=month,
                    end=month_end(month),
                )
                out.sql.append((time.perf_counter() - t0) * 1000)
    finally:
        await engine.dispose()


async def measure(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    database_url: str,
    args: argparse.Namespace,
) -> Latencies:
    n, stores, affiliates = args.requests, args.stores, args.affiliates
    out = Latencies()
    await measure_sql(database_url, args, out)
    warm: list[float] = []  # the first requests of a process (connections, caches): apart
    for kind, who, month in requests(WARM_UP, stores, affiliates):
        await timed(client, warm, f"/v1/settlements/{kind}/{who}", headers)
        await timed(client, warm, f"/v1/statements/s0/{month:%Y-%m}", headers)
    for kind, who, month in requests(n, stores, affiliates):
        end = month_end(month).isoformat()
        await timed(
            client,
            out.api,
            f"/v1/settlements/{kind}/{who}",
            headers,
            **{"from": month.isoformat(), "to": end},
        )
    if args.orders:  # one kind of request at a time: each p99 is its own
        june = {"from": BIG_MONTH.isoformat(), "to": month_end(BIG_MONTH).isoformat()}
        big = f"/v1/settlements/stores/{BIG}"
        for _ in range(n):
            await timed(client, out.big_month, big, headers, **june)
        for _ in range(n):
            await timed(client, out.big_statement, f"/v1/statements/{BIG}/{BIG_PERIOD}", headers)
        for start, end_at in big_ranges(n):
            edges = {"from": start.isoformat(), "to": end_at.isoformat()}
            await timed(client, out.big_ranges, big, headers, **edges)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main_async(args: argparse.Namespace, stack: orchestrate.Stack) -> None:
    database = f"bench_settlement_{uuid.uuid4().hex[:6]}"
    await postgres.create_database(stack.postgres, database)
    database_url = stack.database_url(database)
    try:
        await asyncio.to_thread(upgrade, database_url)
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        # the service runs while the ledger is written, its compaction folding as it goes
        port, interval = free_port(), args.compact_interval
        async with commission_api(database_url, stack, port, "settlement", interval) as (
            client,
            headers,
        ):
            began = time.monotonic()
            orders, postings = await seed(
                dsn, args.postings, args.stores, args.affiliates, args.orders
            )
            seeded = time.monotonic() - began
            fresh, waited = await compacted(database_url)
            print(
                f"seeded in {seeded:.0f} s beside the service's scheduled compaction (every "
                f"{interval:g} s); {fresh:,} fresh rollup rows were left, folded in "
                f"{waited:.0f} s more: measuring the state the service leaves"
            )
            latencies = await measure(client, headers, database_url, args)
        report(args, orders, postings, latencies)
    finally:
        await postgres.drop_database(stack.postgres, database)


def count(n: int) -> str:
    """1M, 11.9M, 50,000."""
    return f"{n / 1e6:.3g}M" if n >= 1_000_000 else f"{n:,}"


def report(args: argparse.Namespace, orders: int, postings: int, t: Latencies) -> None:
    print(
        f"bench/commission/settlement — {postings:,} postings, {orders:,} orders, "
        f"{args.stores:,} stores, {args.affiliates:,} affiliates, and the big store's "
        f"{args.orders:,} orders in {BIG_PERIOD}; {args.requests} requests of each kind"
    )
    columns = [("settlement SQL", t.sql), ("settlement API", t.api)]
    if args.orders:
        columns += [
            ("big: June", t.big_month),
            ("big: partial days", t.big_ranges),
            ("big: statement", t.big_statement),
        ]
    print(f"{'':12}" + "".join(f"{name:>20}" for name, _ in columns))
    for label, q in (("p50 (ms)", 0.5), ("p99 (ms)", 0.99), ("max (ms)", 1.0)):
        print(f"{label:12}" + "".join(f"{pct(v, q):>20.1f}" for _, v in columns))
    print(f"{'mean (ms)':12}" + "".join(f"{statistics.mean(v):>20.1f}" for _, v in columns))
    big = (
        f"{count(args.orders)}-order store settlement p99 {pct(t.big_month, 0.99):.1f} ms, "
        f"statement p99 {pct(t.big_statement, 0.99):.1f} ms, partial-day p99 "
        f"{pct(t.big_ranges, 0.99):.1f} ms (target <= 50)"
        if args.orders
        else "no big store"
    )
    print(
        f"bench-settlement: {count(postings)}-posting p99 {pct(t.api, 0.99):.1f} ms "
        f"(target <= 30), {big}; rollups as the service's scheduled compaction leaves them"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="settlement latency over a large ledger")
    parser.add_argument("--postings", type=int, default=10_000_000)
    parser.add_argument("--stores", type=int, default=1_000)
    parser.add_argument("--affiliates", type=int, default=5_000)
    parser.add_argument(
        "--orders", type=int, default=1_000_000, help="the big store's orders (0: none)"
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument(
        "--compact-interval",
        type=float,
        default=5,
        help="the service's ALLIANCE_ROLLUP_COMPACT_INTERVAL_S (seconds)",
    )
    args = parser.parse_args()
    # the bench migrates a database of its own: the stack's main database is left as it is
    stack = orchestrate.up(Settings(), migrate=False)
    asyncio.run(main_async(args, stack))
    return 0


if __name__ == "__main__":
    sys.exit(main())
