"""bench/scale: attribution and commission with one and two workers on 12-partition topics, and
the recovery after a worker is killed.

For each service, on fresh topics (12 partitions) and a fresh database each time, so the runs
are comparable, in the same run:
- one worker drains a preloaded backlog; then two workers (one consumer group) drain the same
  backlog; events/s of each and the speed-up;
- two workers drain a bigger backlog, one gets SIGKILL at a quarter of it: the time until every
  partition it held advances again (the group noticed and the survivor took them over: the
  rebalance), the time until the backlog is drained, and the stored rows counted exactly
  against the one-worker run (nothing lost, nothing doubled).
Progress is read from the offsets each worker stores in PostgreSQL with its writes (exactly
once), per partition. Every process (the workers, Kafka, PostgreSQL, this script) shares the
machine's cores: the figures are per machine, printed with its core count.

Run: ``make bench-scale`` (or ``.venv/bin/python -m bench.scale.run``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Table, func, select

from bench.attribution.run import fresh_database, produce, scalar, vm_hwm_mb, workload
from bench.commission.run import events as commission_events
from bench.commission.run import postings_of, setup_store
from deploy import procs
from deploy.stack import kafka, orchestrate
from services.attribution import models as am
from services.commission import models as cm
from shared.config import KafkaConnection, Settings
from shared.events import Topic
from shared.kafka import consumer_group, end_offsets_of
from shared.limits import UNREACHED_LIMITS_ENV

PARTITIONS = 12
#: two workers against one, each consumer (issue #20)
SCALE_TARGET = 1.3


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
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class Service:
    """How to feed, run and count one service in this bench."""

    name: str
    offsets: Table
    port: int
    topics: tuple[Topic, ...]  # what the bench produces into (and the worker drains)
    load: Callable[[Settings, str, int], Awaitable[int]]  # → events produced
    count: Callable[[str, str], Awaitable[dict[str, int]]]  # (database url, run) → rows


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
) -> dict[str, int]:
    """Each partition's stored next offset ("topic[partition]" → offset)."""
    from shared.db import make_engine

    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(offsets.c.topic, offsets.c.partition, offsets.c.next_offset).where(
                    offsets.c.consumer == consumer, offsets.c.topic.like(f"{prefix}%")
                )
            )
            return {f"{t}[{p}]": int(o) for t, p, o in rows}
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
        await kafka.create_topics(bench.kafka, orchestrate.topic_names(bench), 1)
        produced = await service.load(bench, prefix, size)
        ends = await end_offsets_of(bench.kafka, [bench.topic(t) for t in service.topics])
        ends_by = {f"{tp.topic}[{tp.partition}]": end for tp, end in ends.items() if end}
        result = await timed(service, bench, prefix, workers, kill_at, ends_by)
        result.events = produced
        result.stored = await service.count(url, prefix)
        return result


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
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-scale-{service.name}-"))
    names = [f"{service.name}-{i}" for i in range(workers)]
    env = {
        "ALLIANCE_ENV": "dev",  # the bench runs on the development secrets
        **UNREACHED_LIMITS_ENV,  # one load generator's address: measured, never refused
        "ALLIANCE_TOPIC_PREFIX": prefix,
        "ALLIANCE_KAFKA_BOOTSTRAP": bench.kafka_bootstrap,
        "ALLIANCE_DATABASE_URL": bench.database_url,
    }
    port_var = f"ALLIANCE_{service.name.upper()}_PORT"
    group = consumer_group(prefix, service.name)
    target = sum(ends.values())
    pids = {
        n: procs.start(n, [service.name], run_dir, {**env, port_var: str(service.port + i)})
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
            stored = await partition_progress(
                bench.database_url, service.offsets, service.name, prefix
            )
            now = time.monotonic()
            at = {k: min(stored.get(k, 0), end) for k, end in ends.items()}
            done = sum(at.values())
            if first is None and done:
                first = now
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
# The two services


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


async def load_commission(bench: Settings, prefix: str, orders: int) -> int:
    await setup_store(bench.database_url, bench, f"{prefix}store")
    attributions, order_events = commission_events(prefix, orders)
    await produce(bench.kafka, bench.topic(Topic.ATTRIBUTIONS), attributions)
    await produce(bench.kafka, bench.topic(Topic.ORDERS), order_events)
    return len(attributions) + len(order_events)


async def count_commission(url: str, prefix: str) -> dict[str, int]:
    t = cm.ledger_transactions
    return {
        "ledger postings": await postings_of(url, prefix),
        "ledger transactions": await scalar(
            url, select(func.count()).select_from(t).where(t.c.order_id.like(f"{prefix}%"))
        ),
    }


ATTRIBUTION = Service(
    "attribution", am.consumer_offsets, 18610, (Topic.CLICKS, Topic.ORDERS),
    load_attribution, count_attribution,
)  # fmt: skip
COMMISSION = Service(
    "commission", cm.consumer_offsets, 18620, (Topic.ATTRIBUTIONS, Topic.ORDERS),
    load_commission, count_commission,
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# The runs and the report


async def scale(
    service: Service, stack: orchestrate.Stack, settings: Settings, size: int, kill_size: int
) -> list[Run]:
    one = await drain(service, stack, settings, size, 1)
    two = await drain(service, stack, settings, size, 2)
    killed = await drain(service, stack, settings, kill_size, 2, kill_at=0.25)
    reference = await drain(service, stack, settings, kill_size, 1)  # what the kill run stores
    if two.stored != one.stored:
        two.notes.append(f"STORED DIFFERS from one worker: {two.stored} vs {one.stored}")
    if killed.stored != reference.stored:
        killed.notes.append(
            f"STORED DIFFERS from one worker: {killed.stored} vs {reference.stored}"
        )
    return [one, two, killed, reference]


def report(service: Service, runs: list[Run]) -> None:
    one, two, killed, reference = runs
    print(f"\n{service.name} — topics of {PARTITIONS} partitions, one consumer group")
    print(f"{'':44}{'events':>10}{'seconds':>9}{'events/s':>10}{'peak MB':>9}")
    for label, r in (
        ("1 worker", one),
        ("2 workers", two),
        ("2 workers, one killed at 25%", killed),
        ("1 worker (the killed run's backlog)", reference),
    ):
        print(f"{label:44}{r.events:>10,}{r.seconds:>9.1f}{r.rate:>10,.0f}{r.peak_mb:>9.0f}")
    print(f"speed-up of the second worker: {two.rate / one.rate:.2f}x")
    if killed.killed_at_s is None:
        print("the backlog was drained before both workers held partitions: no kill (raise it)")
    else:
        print(
            f"one of two killed {killed.killed_at_s:.1f} s into the drain: the survivor held "
            f"every partition {fmt(killed.rebalance_s)} s later (the rebalance), every "
            f"partition behind moved again after {fmt(killed.notes_moving)} s, the backlog was "
            f"drained {fmt(killed.recovered_s)} s after the kill"
        )
    same = killed.stored == reference.stored and two.stored == one.stored
    print(
        f"stored by the killed run: {killed.stored}; by one worker: {reference.stored} "
        f"({'the same: nothing lost, nothing doubled' if same else 'DIFFERENT'})"
    )
    for note in two.notes + killed.notes:
        print(note)


def fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f}"


def cores() -> str:
    usable = len(os.sched_getaffinity(0))
    return f"{usable} usable of {os.cpu_count()} cores, shared by the workers, Kafka and PostgreSQL"


def main() -> int:
    parser = argparse.ArgumentParser(description="one and two workers per service, and a kill")
    parser.add_argument("--events", type=int, default=400_000, help="attribution backlog")
    parser.add_argument("--orders", type=int, default=40_000, help="commission backlog (orders)")
    parser.add_argument("--kill-factor", type=float, default=2.0, help="backlog × for the kill")
    args = parser.parse_args()
    settings = Settings()
    stack = orchestrate.up(settings)
    print(f"bench/scale — {cores()}; load {os.getloadavg()[0]:.2f} at the start")

    async def both() -> tuple[list[Run], list[Run]]:
        k = args.kill_factor
        a = await scale(ATTRIBUTION, stack, settings, args.events, int(args.events * k))
        c = await scale(COMMISSION, stack, settings, args.orders, int(args.orders * k))
        return a, c

    attribution, commission = asyncio.run(both())
    report(ATTRIBUTION, attribution)
    report(COMMISSION, commission)
    print(f"\nload {os.getloadavg()[0]:.2f} at the end; aiokafka's session timeout (10 s) bounds")
    print("how soon the group notices a killed worker")
    ratios = {
        name: runs[1].rate / runs[0].rate
        for name, runs in ((ATTRIBUTION.name, attribution), (COMMISSION.name, commission))
    }
    met = all(r >= SCALE_TARGET for r in ratios.values())
    print(
        "bench-scale: "
        + ", ".join(
            f"{name} 2 workers {runs[1].rate:,.0f}/s, 1 worker {runs[0].rate:,.0f}/s, "
            f"ratio {ratios[name]:.2f}"
            for name, runs in ((ATTRIBUTION.name, attribution), (COMMISSION.name, commission))
        )
        + f" (target ≥ {SCALE_TARGET})"
        + ("" if met else " — MISSED")
    )
    ok = all(not r.notes for r in attribution + commission)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
