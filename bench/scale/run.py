"""bench/scale: each consumer with one and two workers on 12-partition topics, and the
recovery after a worker is killed.

Four backlogs, each drained on fresh topics (12 partitions) and a fresh database each time, so
the runs are comparable, in the same run (issue 20, item 3):
- ``commission-1000-stores``: the commission (ledger) consumer, orders of 1,000 stores;
- ``commission-one-store``: the same consumer, as many orders of one store;
- ``reports``: the reports consumer (in the commission process): clicks and page views of
  1,000 stores, live traffic (all of today);
- ``attribution``: the attribution consumer, clicks and placed orders.
The events are keyed as the services key them (attributions and order events by
``store:order``, clicks and page views by visitor). For each: one worker drains the preloaded
backlog; then two workers (one consumer group, separate processes) drain the same backlog;
events/s of each and the speed-up. For attribution and commission-1000-stores, with ``--kill``,
two workers also drain a bigger backlog, one gets SIGKILL at a quarter of it: the time until every
partition it held advances again (the group noticed and the survivor took them over: the
rebalance), the time until the backlog is drained, and the stored rows counted exactly against
the one-worker run (nothing lost, nothing doubled).
Progress is read from the offsets each worker stores in PostgreSQL with its writes (exactly
once), per partition. Every process (the workers, Kafka, PostgreSQL, this script) shares the
machine's cores: the figures are per machine, printed with its core count. The bench uses
databases and topics of its own: the stack's default database is neither migrated nor written.

Run: ``make bench-scale`` (or ``.venv/bin/python -m bench.scale.run``). The last line is the
verdict: two workers against one for each backlog (target >= 1.3 each).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Table, func, select

from bench.attribution.run import fresh_database, produce, scalar, vm_hwm_mb, workload
from bench.commission.run import postings_of
from deploy import procs
from deploy.stack import kafka, orchestrate
from services.attribution import models as am
from services.commission import models as cm
from services.commission.core.program import OpKind
from services.commission.program.service import ProgramService
from shared.clock import FixedClock
from shared.config import KafkaConnection, Settings
from shared.db import make_engine, make_sessions
from shared.events import (
    Attribution,
    Click,
    OrderCompleted,
    OrderItem,
    OrderPlaced,
    OrderRefunded,
    PageView,
    RefundItem,
    Topic,
    encode,
)
from shared.kafka import consumer_group, end_offsets_of
from shared.limits import UNREACHED_LIMITS_ENV

PARTITIONS = 12
#: two workers against one, each consumer on each backlog (issue #20)
SCALE_TARGET = 1.3
#: the stores of the many-store backlogs
STORES = 1000


@dataclass
class Run:
    """One drain: its figures and what it stored."""

    workers: int
    events: int
    seconds: float
    stored: dict[str, int]
    peak_mb: float
    killed_at_s: float | None = None
    rebalance_s: float | None = None  # kill → every partition of the dead worker advances
    recovered_s: float | None = None  # kill → backlog drained
    notes_moving: float | None = None  # kill → every partition behind at the kill moved
    waits: dict[str, int] = field(default_factory=dict)  # sampled wait events of the run's db
    samples: int = 0  # polls during the drain (waits: active sessions seen over these)
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class Service:
    """How to feed, run and count one backlog of one consumer in this bench."""

    label: str  # the verdict's name of the backlog
    process: str  # the ``alliance`` command that runs the consumer
    consumer: str  # the consumer's name (its stored offsets, its Kafka group)
    offsets: Table
    port: int
    topics: tuple[Topic, ...]  # what the bench produces into (and the consumer drains)
    load: Callable[[Settings, str, int], Awaitable[int]]  # → events produced
    count: Callable[[str, str], Awaitable[dict[str, int]]]  # (database url, run) → rows
    size: int = 0  # the backlog (the load's unit: events or orders)


async def assignments(cluster: KafkaConnection, group: str) -> list[set[str]]:
    """Each member of ``group`` and the partitions ("topic[partition]") it holds, as the
    group's coordinator says."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.group import MemberAssignment

    admin = AIOKafkaAdminClient(**cluster.client_options())
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members: list[set[str]] = []
    for response in responses:
        for described in response.to_object()["groups"]:
            for member in described["members"]:
                raw = member["member_assignment"]
                held = MemberAssignment.decode(raw).assignment if raw else []
                members.append({f"{t}[{p}]" for t, ps in held for p in ps})
    return members


async def partition_progress(
    url: str, offsets: Table, consumer: str, prefix: str
) -> tuple[dict[str, int], list[str]]:
    """Each partition's stored next offset ("topic[partition]" → offset), and what the run's
    database's other sessions wait for now (pg_stat_activity: "type:event", "cpu" if none)."""
    from sqlalchemy import text

    from shared.db import make_engine

    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(offsets.c.topic, offsets.c.partition, offsets.c.next_offset).where(
                    offsets.c.consumer == consumer, offsets.c.topic.like(f"{prefix}%")
                )
            )
            progress = {f"{t}[{p}]": int(o) for t, p, o in rows}
            waits = await conn.execute(
                text(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'cpu') "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state = 'active'"
                )
            )
            return progress, [w for (w,) in waits]
    finally:
        await engine.dispose()


async def drain(
    service: Service,
    stack: orchestrate.Stack,
    settings: Settings,
    size: int,
    workers: int,
    kill_at: float | None = None,
) -> Run:
    """A fresh database and topics, ``size`` units of work produced, ``workers`` processes of
    the service started together and timed until their stored offsets reach the end."""
    run = uuid.uuid4().hex[:6]
    prefix = f"scale-{run}-"
    async with fresh_database(stack, f"bench_scale_{run}") as url:
        bench = settings.model_copy(
            update={
                "topic_prefix": prefix,
                "kafka_bootstrap": stack.bootstrap,
                "database_url": url,
                "topic_partitions": PARTITIONS,
            }
        )
        topics = orchestrate.topic_names(bench)
        await kafka.create_topics(bench.kafka, topics, 1)
        try:
            produced = await service.load(bench, prefix, size)
            ends = await end_offsets_of(bench.kafka, [bench.topic(t) for t in service.topics])
            ends_by = {f"{tp.topic}[{tp.partition}]": end for tp, end in ends.items() if end}
            result = await timed(service, bench, prefix, workers, kill_at, ends_by)
            result.events = produced
            result.stored = await service.count(url, prefix)
            return result
        finally:
            await delete_topics(bench.kafka, list(topics))


async def delete_topics(cluster: KafkaConnection, topics: list[str]) -> None:
    """The run's topics go with its database (a shared broker keeps no partitions of it)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**cluster.client_options())
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def timed(
    service: Service,
    bench: Settings,
    prefix: str,
    workers: int,
    kill_at: float | None,
    ends: dict[str, int],
) -> Run:
    """Start the workers, poll their stored offsets (every 0.25 s) until every partition of
    ``ends`` is read to its end. The drain is timed from the first stored offset (the workers'
    start-up apart). With ``kill_at``: once both workers hold partitions and that share of the
    backlog is done, SIGKILL one, then time until the group's coordinator gives every
    partition to the survivor (the rebalance) and until every partition behind at the kill
    has moved again."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-scale-{service.label}-"))
    names = [f"{service.process}-{i}" for i in range(workers)]
    env = {
        "ALLIANCE_ENV": "dev",  # the bench runs on the development secrets
        **UNREACHED_LIMITS_ENV,  # one load generator's address: measured, never refused
        "ALLIANCE_TOPIC_PREFIX": prefix,
        "ALLIANCE_KAFKA_BOOTSTRAP": bench.kafka_bootstrap,
        "ALLIANCE_DATABASE_URL": bench.database_url,
    }
    port_var = f"ALLIANCE_{service.process.upper()}_PORT"
    group = consumer_group(prefix, service.consumer)
    target = sum(ends.values())
    pids = {
        n: procs.start(n, [service.process], run_dir, {**env, port_var: str(service.port + i)})
        for i, n in enumerate(names)
    }
    result = Run(workers, 0, 0.0, {}, 0.0)
    first: float | None = None
    killed: str | None = None
    kill_time = 0.0
    behind_at_kill: dict[str, int] = {}
    moving_s: float | None = None
    try:
        while True:
            stored, waits = await partition_progress(
                bench.database_url, service.offsets, service.consumer, prefix
            )
            now = time.monotonic()
            at = {k: min(stored.get(k, 0), end) for k, end in ends.items()}
            done = sum(at.values())
            if first is None and done:
                first = now
            if first is not None:
                result.samples += 1
                for w in waits:
                    result.waits[w] = result.waits.get(w, 0) + 1
            for n in names:
                if n != killed:
                    result.peak_mb = max(result.peak_mb, vm_hwm_mb(pids[n]))
            if kill_at is not None and killed is None and done >= kill_at * target:
                held = await assignments(bench.kafka, group)
                if len(held) == workers and all(held):
                    killed = names[-1]
                    os.killpg(pids[killed], signal.SIGKILL)
                    kill_time = now
                    result.killed_at_s = now - (first or now)
                    behind_at_kill = {k: v for k, v in at.items() if v < ends[k]}
            if killed and result.rebalance_s is None:
                held = await assignments(bench.kafka, group)
                if len(held) == 1 and set(ends) <= held[0]:
                    result.rebalance_s = time.monotonic() - kill_time
            if killed and moving_s is None and all(at[k] > v for k, v in behind_at_kill.items()):
                moving_s = now - kill_time
            if done >= target:
                result.seconds = now - (first or now)
                if killed:
                    result.recovered_s = now - kill_time
                    result.notes_moving = moving_s
                break
            await asyncio.sleep(0.25)
    finally:
        for n in names:
            if n == killed:
                (run_dir / f"{n}.pid").unlink(missing_ok=True)
            else:
                procs.stop(n, run_dir)
    return result


# --------------------------------------------------------------------------------------------
# The backlogs


async def load_attribution(bench: Settings, prefix: str, events: int) -> int:
    clicks, orders = workload(events, max(1000, events // 10), prefix)
    await produce(bench.kafka, bench.topic(Topic.CLICKS), clicks)
    await produce(bench.kafka, bench.topic(Topic.ORDERS), orders)
    return len(clicks) + len(orders)


async def count_attribution(url: str, prefix: str) -> dict[str, int]:
    del prefix  # the database is the run's own
    return {
        "clicks stored": await scalar(url, select(func.count()).select_from(am.clicks)),
        "orders stored": await scalar(url, select(func.count()).select_from(am.orders)),
    }


def store_of(prefix: str, n: int, stores: int) -> str:
    return f"{prefix}store{n % stores}"


def commission_events(
    prefix: str, orders: int, stores: int
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """Per order of ``stores`` stores (round robin): its attribution decision, its completion,
    and a refund for one order in ten; keyed ``store:order`` as attribution and the tracker
    key them (bench/commission's events, over many stores)."""
    now = datetime.now(UTC) - timedelta(days=1)
    attributions, order_events = [], []
    for n in range(orders):
        store, oid = store_of(prefix, n, stores), f"{prefix}o{n}"
        key = f"{store}:{oid}"
        item = OrderItem(
            product_id=f"p{n % 50}",
            category_id="c",
            quantity=2,
            unit_price=Decimal("19.99"),
            shipping_fee=Decimal("1.50"),
        )
        placed = OrderPlaced(
            event_id=f"{oid}-p",
            occurred_at=now,
            store_id=store,
            order_id=oid,
            visitor_id=f"v{n}",
            currency="USD",
            items=[item],
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
        attributions.append((key, encode(decision)))
        completed = OrderCompleted(
            event_id=f"{oid}-c", occurred_at=now, store_id=store, order_id=oid
        )
        order_events.append((key, encode(completed)))
        if n % 10 == 0:
            refund = OrderRefunded(
                event_id=f"{oid}-r",
                occurred_at=now,
                store_id=store,
                order_id=oid,
                refund_id="r1",
                items=[RefundItem(product_id=f"p{n % 50}", amount=Decimal("10.00"))],
            )
            order_events.append((key, encode(refund)))
    return attributions, order_events


async def join_programs(database_url: str, stores: list[str]) -> None:
    """Each store joins the program (its default rate), a month ago, in one transaction."""
    engine = make_engine(database_url, pool_size=1)
    try:
        programs = ProgramService(FixedClock(datetime.now(UTC) - timedelta(days=30)))
        async with make_sessions(engine)() as session, session.begin():
            for store in stores:
                await programs.change_program(session, store, OpKind.JOIN, "bench")
    finally:
        await engine.dispose()


def load_commission(stores: int) -> Callable[[Settings, str, int], Awaitable[int]]:
    async def load(bench: Settings, prefix: str, orders: int) -> int:
        await join_programs(
            bench.database_url, [store_of(prefix, n, stores) for n in range(stores)]
        )
        attributions, order_events = commission_events(prefix, orders, stores)
        await produce(bench.kafka, bench.topic(Topic.ATTRIBUTIONS), attributions)
        await produce(bench.kafka, bench.topic(Topic.ORDERS), order_events)
        return len(attributions) + len(order_events)

    return load


async def count_commission(url: str, prefix: str) -> dict[str, int]:
    t = cm.ledger_transactions
    return {
        "ledger postings": await postings_of(url, prefix),
        "ledger transactions": await scalar(
            url, select(func.count()).select_from(t).where(t.c.order_id.like(f"{prefix}%"))
        ),
    }


def traffic(prefix: str, events: int, stores: int) -> tuple[list[tuple[str, bytes]], ...]:
    """Live traffic (the last hour, so all of today's): half affiliate clicks, half page
    views, of ``stores`` stores and ``events // 4`` visitors; keyed by visitor as the tracker
    keys them."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    today = int((now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds())
    spread = max(1, min(3600, today))  # seconds back from now, never into yesterday
    visitors = max(100, events // 4)
    clicks, views = [], []
    for n in range(events):
        v = f"{prefix}v{rng.randrange(visitors)}"
        at = now - timedelta(seconds=rng.randrange(spread))
        store = store_of(prefix, rng.randrange(stores), stores)
        if n % 2 == 0:
            c = Click(
                event_id=f"{prefix}c{n}",
                occurred_at=at,
                received_at=at,
                affiliate_id=f"a{rng.randrange(500)}",
                store_id=store,
                product_id=f"p{rng.randrange(50)}",
                link_code=f"k{rng.randrange(500)}.x.y",
                visitor_id=v,
                suspicious=rng.random() < 0.05,
            )
            clicks.append((v, encode(c)))
        else:
            view = PageView(
                event_id=f"{prefix}pv{n}",
                occurred_at=at,
                store_id=store,
                visitor_id=v,
                product_id=f"p{rng.randrange(50)}",
            )
            views.append((v, encode(view)))
    return clicks, views


async def load_reports(bench: Settings, prefix: str, events: int) -> int:
    await join_programs(bench.database_url, [store_of(prefix, n, STORES) for n in range(STORES)])
    clicks, views = traffic(prefix, events, STORES)
    await produce(bench.kafka, bench.topic(Topic.CLICKS), clicks)
    await produce(bench.kafka, bench.topic(Topic.PAGE_VIEWS), views)
    return len(clicks) + len(views)


async def count_reports(url: str, prefix: str) -> dict[str, int]:
    del prefix  # the database is the run's own
    t = cm.traffic_days
    return {
        "clicks counted": await scalar(url, select(func.coalesce(func.sum(t.c.clicks), 0))),
        "page views counted": await scalar(url, select(func.coalesce(func.sum(t.c.page_views), 0))),
        "visitor-days": await scalar(url, select(func.count()).select_from(cm.visitor_days)),
    }


ATTRIBUTION = Service(
    "attribution", "attribution", "attribution", am.consumer_offsets, 18610,
    (Topic.CLICKS, Topic.ORDERS), load_attribution, count_attribution,
)  # fmt: skip
COMMISSION_STORES = Service(
    f"commission-{STORES}-stores", "commission", "commission", cm.consumer_offsets, 18620,
    (Topic.ATTRIBUTIONS, Topic.ORDERS), load_commission(STORES), count_commission,
)  # fmt: skip
COMMISSION_ONE = Service(
    "commission-one-store", "commission", "commission", cm.consumer_offsets, 18620,
    (Topic.ATTRIBUTIONS, Topic.ORDERS), load_commission(1), count_commission,
)  # fmt: skip
REPORTS = Service(
    "reports", "commission", "reports", cm.consumer_offsets, 18620,
    (Topic.CLICKS, Topic.PAGE_VIEWS), load_reports, count_reports,
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# The runs and the report


async def scale(
    service: Service,
    stack: orchestrate.Stack,
    settings: Settings,
    size: int,
    kill_size: int | None,
) -> list[Run]:
    one = await drain(service, stack, settings, size, 1)
    two = await drain(service, stack, settings, size, 2)
    if two.stored != one.stored:
        two.notes.append(f"STORED DIFFERS from one worker: {two.stored} vs {one.stored}")
    if kill_size is None:
        return [one, two]
    killed = await drain(service, stack, settings, kill_size, 2, kill_at=0.25)
    reference = await drain(service, stack, settings, kill_size, 1)  # what the kill run stores
    if killed.stored != reference.stored:
        killed.notes.append(
            f"STORED DIFFERS from one worker: {killed.stored} vs {reference.stored}"
        )
    return [one, two, killed, reference]


def waits_line(r: Run) -> str:
    """The workers' database sessions during the drain: how many were active on average, and
    what they waited for (share of the active ones seen; "cpu": running, no wait event)."""
    total = sum(r.waits.values()) or 1
    top = sorted(r.waits.items(), key=lambda kv: -kv[1])[:5]
    shares = ", ".join(f"{w} {n / total:.0%}" for w, n in top) or "none sampled"
    return f"{sum(r.waits.values()) / max(1, r.samples):.2f} active on average: {shares}"


def report(service: Service, runs: list[Run]) -> None:
    one, two = runs[:2]
    print(
        f"\n{service.label} — topics of {PARTITIONS} partitions, one consumer group; "
        f"load {os.getloadavg()[0]:.2f} (1 min) when done"
    )
    print(f"{'':44}{'events':>10}{'seconds':>9}{'events/s':>10}{'peak MB':>9}")
    labelled = [("1 worker", one), ("2 workers", two)]
    if len(runs) == 4:
        labelled += [
            ("2 workers, one killed at 25%", runs[2]),
            ("1 worker (the killed run's backlog)", runs[3]),
        ]
    for label, r in labelled:
        print(f"{label:44}{r.events:>10,}{r.seconds:>9.1f}{r.rate:>10,.0f}{r.peak_mb:>9.0f}")
    print(f"speed-up of the second worker: {two.rate / one.rate:.2f}x")
    print(f"database sessions, 1 worker: {waits_line(one)}")
    print(f"database sessions, 2 workers: {waits_line(two)}")
    print(f"stored by 2 workers: {two.stored}; by one: {one.stored}")
    if len(runs) == 4:
        killed, reference = runs[2], runs[3]
        if killed.killed_at_s is None:
            print("the backlog was drained before both workers held partitions: no kill (raise it)")
        else:
            print(
                f"one of two killed {killed.killed_at_s:.1f} s into the drain: the survivor held "
                f"every partition {fmt(killed.rebalance_s)} s later (the rebalance), every "
                f"partition behind moved again after {fmt(killed.notes_moving)} s, the backlog "
                f"was drained {fmt(killed.recovered_s)} s after the kill"
            )
        same = killed.stored == reference.stored
        print(
            f"stored by the killed run: {killed.stored}; by one worker: {reference.stored} "
            f"({'the same: nothing lost, nothing doubled' if same else 'DIFFERENT'})"
        )
    for note in [n for r in runs for n in r.notes]:
        print(note)


def fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f}"


def cores() -> str:
    usable = len(os.sched_getaffinity(0))
    return f"{usable} usable of {os.cpu_count()} cores, shared by the workers, Kafka and PostgreSQL"


def the_stack(settings: Settings) -> orchestrate.Stack:
    """The running stack, used as it is (a shared one: its default database is neither
    migrated nor written here, the bench's databases and topics are its own); started, without
    migrating its default database, only when none of it runs. A stack half up is not touched:
    the bench stops and says so."""
    status = orchestrate.status(settings)
    if status.get("kafka") and status.get("postgres"):
        return orchestrate.Stack.from_settings(settings)
    if status.get("kafka") or status.get("postgres"):
        raise SystemExit(f"bench-scale: the stack is half up ({status}); not touching it")
    return orchestrate.up(settings, migrate=False)


def main() -> int:
    parser = argparse.ArgumentParser(description="one and two workers per consumer, and a kill")
    parser.add_argument("--events", type=int, default=400_000, help="attribution backlog")
    parser.add_argument("--orders", type=int, default=20_000, help="commission backlogs (orders)")
    parser.add_argument("--traffic", type=int, default=60_000, help="reports backlog (events)")
    parser.add_argument("--kill-factor", type=float, default=2.0, help="backlog × for the kill")
    parser.add_argument(
        "--kill", action="store_true", help="kill runs too (attribution, commission-stores)"
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="backlogs to run (labels), all by default"
    )
    args = parser.parse_args()
    settings = Settings()
    stack = the_stack(settings)
    print(f"bench/scale — {cores()}; load {os.getloadavg()[0]:.2f} at the start")
    plan = [
        (COMMISSION_STORES, args.orders, True),
        (COMMISSION_ONE, args.orders, False),
        (REPORTS, args.traffic, False),
        (ATTRIBUTION, args.events, True),
    ]
    plan = [p for p in plan if args.only is None or p[0].label in args.only]

    async def all_runs() -> list[tuple[Service, list[Run]]]:
        out = []
        for service, size, kill in plan:
            kill_size = int(size * args.kill_factor) if kill and args.kill else None
            runs = await scale(service, stack, settings, size, kill_size)
            report(service, runs)  # as each backlog is done
            out.append((service, runs))
        return out

    results = asyncio.run(all_runs())
    print(f"\nload {os.getloadavg()[0]:.2f} at the end; aiokafka's session timeout (10 s) bounds")
    print("how soon the group notices a killed worker")
    ratios = {service.label: runs[1].rate / runs[0].rate for service, runs in results}
    met = all(r >= SCALE_TARGET for r in ratios.values())
    print(
        "bench-scale: "
        + ", ".join(f"{label} {ratio:.2f}x" for label, ratio in ratios.items())
        + f" (target >= {SCALE_TARGET} each)"
        + ("" if met else " — MISSED")
    )
    ok = all(not r.notes for _, runs in results for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
