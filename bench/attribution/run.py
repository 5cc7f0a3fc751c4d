"""bench/attribution: the attribution service draining a realistic stream, next to a raw
aiokafka consumer that only reads the same topics.

Produces N events (10 clicks per order, V visitors, two stores, some suspicious clicks) to
fresh topics on the real broker, then measures in the same run:
- baseline: one aiokafka consumer reading both topics to the end (no decoding, no work);
- the attribution service (one worker, a subprocess of `alliance attribution`) from start
  until its stored offsets reach the end, and its memory peak (VmHWM).
- the floor: one aiokafka consumer that reads, decodes (orjson) and ``COPY``s the click and
  order rows with its offsets, one transaction per batch (no decision, no idempotency, no
  outbox).
Target (issue 20): the service ≥ 0.5 of the floor; the last line is the verdict.

The bench works in a database and on topics of its own (``bench_attribution_<tag><run>``,
``bench-<tag><run>-…``), dropped at the end; the stack's default database is neither migrated
nor written. ``--profile FILE`` samples the service with py-spy (raw, collapsed stacks) while
it drains.

Run: ``make bench-attribution`` (or ``.venv/bin/python -m bench.attribution.run --events 1000000``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer
from sqlalchemy import Select, Table, func, select

from deploy import procs
from deploy.migrations import upgrade
from deploy.stack import kafka, orchestrate, postgres
from services.attribution.models import consumer_offsets
from shared.config import KafkaConnection, Settings
from shared.db import make_engine
from shared.events import Click, OrderItem, OrderPlaced, Topic, encode
from shared.kafka import end_offsets_of, make_producer
from shared.limits import UNREACHED_LIMITS_ENV


def workload(
    events: int, visitors: int, run: str, seed: int = 1
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(clicks, orders) as (key, value): 10 clicks per order over the last 30 days. Every id
    carries ``run``: the database keeps earlier runs, whose ids would be duplicates here."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    orders_n = events // 11
    clicks: list[tuple[str, bytes]] = []
    for n in range(events - orders_n):
        v = f"{run}v{rng.randrange(visitors)}"
        at = now - timedelta(seconds=rng.randrange(30 * 86_400))
        c = Click(
            event_id=f"{run}c{n}",
            occurred_at=at,
            received_at=at,
            affiliate_id=f"a{rng.randrange(500)}",
            store_id=f"{run}s{rng.randrange(2)}",
            link_code="k1.x.y",
            visitor_id=v,
            suspicious=rng.random() < 0.05,
        )
        clicks.append((v, encode(c)))
    orders: list[tuple[str, bytes]] = []
    for n in range(orders_n):
        v = f"{run}v{rng.randrange(visitors)}"
        o = OrderPlaced(
            event_id=f"{run}o{n}",
            occurred_at=now - timedelta(seconds=rng.randrange(15 * 86_400)),
            store_id=f"{run}s{rng.randrange(2)}",
            order_id=f"{run}o{n}",
            visitor_id=v,
            currency="USD",
            items=[
                OrderItem(
                    product_id="p",
                    quantity=1,
                    unit_price=Decimal("25.00"),
                    shipping_fee=Decimal("2.00"),
                )
            ],
        )
        orders.append((v, encode(o)))
    return clicks, orders


async def produce(
    cluster: KafkaConnection, topic: str, messages: Iterable[tuple[str, bytes]]
) -> None:
    """Send ``messages`` (a list, or a generator: made as they are sent), 5,000 in flight."""
    producer = make_producer(cluster, linger_ms=20)
    await producer.start()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(topic, value, key=key.encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def raw_read(cluster: KafkaConnection, topics: list[str], total: int) -> float:
    """Seconds for a plain group consumer to read ``total`` messages of ``topics``."""
    consumer = AIOKafkaConsumer(
        *topics,
        **cluster.client_options(),
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=1000,
    )
    await consumer.start()
    try:
        seen, start = 0, time.monotonic()
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=500, max_records=1000)).values():
                seen += len(records)
        return time.monotonic() - start
    finally:
        await consumer.stop()


FLOOR_TABLES = """
CREATE TABLE bench_floor_clicks (click_id text PRIMARY KEY, visitor_id text NOT NULL,
    store_id text NOT NULL, occurred_at timestamptz NOT NULL);
CREATE INDEX ON bench_floor_clicks (visitor_id, occurred_at);
CREATE TABLE bench_floor_orders (order_id text PRIMARY KEY, visitor_id text NOT NULL,
    store_id text NOT NULL, placed_at timestamptz NOT NULL);
CREATE TABLE bench_floor_offsets (topic text, partition int, next_offset bigint,
    PRIMARY KEY (topic, partition));
"""


async def floor_consumer(
    cluster: KafkaConnection, topics: list[str], batch: int
) -> AIOKafkaConsumer:
    """A started consumer of a floor: a group of its own from the earliest offset, no
    auto-commit (the floor stores its offsets with its rows), batches of ``batch``."""
    consumer = AIOKafkaConsumer(
        *topics,
        **cluster.client_options(),
        group_id=f"bench-floor-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=batch,
    )
    await consumer.start()
    return consumer


async def floor_read_and_store(
    cluster: KafkaConnection, topics: list[str], total: int, dsn: str, batch: int
) -> float:
    """Seconds for the least any durable attribution worker does: read the topics, decode each
    event (orjson, no validation), ``COPY`` the click and order rows into indexed tables and
    store the offsets, one transaction per batch. No decision, no idempotency check, no
    outbox: an upper bound of what the service can reach on this machine."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(FLOOR_TABLES)
    consumer = await floor_consumer(cluster, topics, batch)
    parse = datetime.fromisoformat
    try:
        seen, start = 0, time.monotonic()
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=500, max_records=batch)
            clicks, orders, offsets = [], [], []
            for tp, records in fetched.items():
                for r in records:
                    e = orjson.loads(r.value or b"{}")
                    if tp.topic == topics[0]:
                        c = (e["event_id"], e["visitor_id"], e["store_id"], parse(e["occurred_at"]))
                        clicks.append(c)
                    else:
                        o = (e["order_id"], e["visitor_id"], e["store_id"], parse(e["occurred_at"]))
                        orders.append(o)
                offsets.append((tp.topic, tp.partition, records[-1].offset + 1))
                seen += len(records)
            async with conn.transaction():
                await conn.copy_records_to_table("bench_floor_clicks", records=clicks)
                await conn.copy_records_to_table("bench_floor_orders", records=orders)
                await conn.executemany(
                    "INSERT INTO bench_floor_offsets VALUES ($1, $2, $3) ON CONFLICT (topic, "
                    "partition) DO UPDATE SET next_offset = excluded.next_offset",
                    offsets,
                )
        return time.monotonic() - start
    finally:
        await consumer.stop()
        await conn.close()


async def scalar(database_url: str, query: Select[Any]) -> int:
    """One integer from the database (a fresh, one-connection engine: the bench polls)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def stored_progress(
    database_url: str, prefix: str, consumer: str = "attribution", table: Table = consumer_offsets
) -> int:
    """The sum of a consumer's stored next offsets over the topics of this run."""
    return await scalar(
        database_url,
        select(func.coalesce(func.sum(table.c.next_offset), 0)).where(
            table.c.consumer == consumer, table.c.topic.like(f"{prefix}%")
        ),
    )


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@asynccontextmanager
async def fresh_database(stack: orchestrate.Stack, database: str) -> AsyncIterator[str]:
    """A database of the run's own, migrated, dropped at the end (its URL): figures do not
    depend on past runs."""
    await postgres.create_database(stack.postgres, database)
    database_url = stack.database_url(database)
    await asyncio.to_thread(upgrade, database_url)
    try:
        yield database_url
    finally:
        await postgres.drop_database(stack.postgres, database)


async def main_async(
    settings: Settings,
    stack: orchestrate.Stack,
    events: int,
    visitors: int,
    batch: int,
    tag: str = "",
    profile: Path | None = None,
) -> None:
    run = f"{tag}{uuid.uuid4().hex[:6]}"
    prefix = f"bench-{run}-"
    async with fresh_database(stack, f"bench_attribution_{run}") as database_url:
        await measure(settings, stack, events, visitors, batch, prefix, database_url, profile)


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling ``pid`` into ``out`` (raw collapsed stacks) until stopped; None when
    py-spy is not installed (``.venv/bin/pip install py-spy``)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: no profile")
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "50", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
        spy.wait(timeout=30)


async def measure(
    settings: Settings,
    stack: orchestrate.Stack,
    events: int,
    visitors: int,
    batch: int,
    prefix: str,
    database_url: str,
    profile: Path | None = None,
) -> None:
    bench = settings.model_copy(update={"topic_prefix": prefix, "kafka_bootstrap": stack.bootstrap})
    await kafka.create_topics(stack.kafka.connection, orchestrate.topic_names(bench), 1)
    topics = [bench.topic(Topic.CLICKS), bench.topic(Topic.ORDERS)]
    clicks, orders = workload(events, visitors, prefix)
    start = time.monotonic()
    await produce(stack.kafka.connection, topics[0], clicks)
    await produce(stack.kafka.connection, topics[1], orders)
    print(
        f"produced {events:,} events ({len(orders):,} orders, {visitors:,} visitors) in {time.monotonic() - start:.0f} s"
    )
    total = sum((await end_offsets_of(stack.kafka.connection, topics)).values())

    raw_s = await raw_read(stack.kafka.connection, topics, total)
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    floor_s = await floor_read_and_store(stack.kafka.connection, topics, total, dsn, batch)

    run_dir = Path(tempfile.mkdtemp(prefix="bench-attribution-"))
    (port,) = [18502]
    env = {
        "ALLIANCE_ENV": "dev",  # the bench runs on the development secrets
        **UNREACHED_LIMITS_ENV,  # one load generator's address: measured, never refused
        "ALLIANCE_TOPIC_PREFIX": prefix,
        "ALLIANCE_ATTRIBUTION_PORT": str(port),
        "ALLIANCE_KAFKA_BOOTSTRAP": stack.bootstrap,
        "ALLIANCE_DATABASE_URL": database_url,
        "ALLIANCE_CONSUMER_BATCH_SIZE": str(batch),
    }
    start = time.monotonic()
    pid = procs.start("attribution", ["attribution"], run_dir, env)
    spy = start_profiler(pid, profile) if profile is not None else None
    peak = 0.0
    try:
        while (done := await stored_progress(database_url, prefix)) < total:
            peak = max(peak, vm_hwm_mb(pid))
            await asyncio.sleep(0.5)
        service_s = time.monotonic() - start
        peak = max(peak, vm_hwm_mb(pid))
    finally:
        stop_profiler(spy)
        procs.stop("attribution", run_dir)
    raw_rate, floor_rate, service_rate = total / raw_s, total / floor_s, total / service_s
    print(f"bench/attribution — one worker (batches of {batch}), real broker and PostgreSQL")
    print(f"{'':34}{'raw aiokafka read':>20}{'read+decode+COPY':>20}{'attribution service':>22}")
    print(f"{'events/s':34}{raw_rate:>20,.0f}{floor_rate:>20,.0f}{service_rate:>22,.0f}")
    print(
        f"{'seconds for ' + format(total, ',') + ' events':34}{raw_s:>20.1f}{floor_s:>20.1f}"
        f"{service_s:>22.1f}"
    )
    print(f"{'memory peak (VmHWM, MB)':34}{'':>20}{'':>20}{peak:>22.0f}")
    print(
        f"ratio service/raw = {service_rate / raw_rate:.2f} (target ≥ 0.3); service {service_rate:,.0f} events/s (target ≥ 20,000)"
    )
    print(
        f"ratio floor/raw = {floor_rate / raw_rate:.2f}: the most any worker that stores each "
        "event durably reaches here (no decision, no idempotency, no outbox)"
    )
    print(f"(service time includes its start-up; processed {done:,} of {total:,})")
    print(
        f"bench-attribution: service {service_rate:,.0f}/s, floor {floor_rate:,.0f}/s, "
        f"ratio {service_rate / floor_rate:.2f} (target >= 0.5)"
    )


def running_stack(settings: Settings) -> orchestrate.Stack:
    """The stack the settings name: used as it is when both its ports answer (perhaps a
    stack shared with others: never restarted here), brought up when neither does (a fresh
    clone); half of one running is an error to look at, not to restart. Either way the
    stack's default database is not migrated: the run migrates a database of its own."""
    stack = orchestrate.Stack.from_settings(settings)
    ports = {"kafka": stack.kafka.port, "postgres": stack.postgres.port}
    down = [f"{name} ({port})" for name, port in ports.items() if not _answers(port)]
    if not down:
        return stack
    if len(down) < len(ports):
        raise SystemExit(f"bench-attribution: {', '.join(down)} not answering; stack left as is")
    return orchestrate.up(settings, migrate=False)  # synchronous: runs its own event loops


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description="attribution throughput next to a raw consumer")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--visitors", type=int, default=100_000)
    parser.add_argument(
        "--batch", type=int, default=Settings().consumer_batch_size, help="consumer batch size"
    )
    parser.add_argument(
        "--tag", default="", help="put in the run's database and topic names (e.g. a worktree's)"
    )
    parser.add_argument(
        "--profile", type=Path, help="sample the service with py-spy into this file (raw)"
    )
    args = parser.parse_args()
    settings = Settings()
    stack = running_stack(settings)
    asyncio.run(
        main_async(settings, stack, args.events, args.visitors, args.batch, args.tag, args.profile)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
