"""Attribution processes on the real stack: killed mid-batch, and two in one group."""

from __future__ import annotations

import os
import random
import signal
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from deploy import procs
from services.attribution.core import Click as CoreClick
from services.attribution.core import OrderRef, decide
from services.attribution.models import orders as orders_table
from shared.config import Settings
from shared.db import make_engine
from shared.events import Click, OrderItem, OrderPlaced, Topic, encode
from tests.conftest import free_ports
from tests.integration.harness import eventually
from tests.services.attribution.test_stream import NOW, produce

pytestmark = pytest.mark.integration


def history(
    u: str, visitors: int = 60, orders: int = 300, clicks: int = 900
) -> tuple[list[Click], list[OrderPlaced]]:
    rng = random.Random(u)
    cs = [
        Click(
            event_id=f"{u}-c{n:05d}",
            occurred_at=(at := NOW - timedelta(seconds=rng.randint(0, 25 * 86_400))),
            received_at=at,
            affiliate_id=f"aff-{rng.randint(1, 5)}",
            store_id=f"s{rng.randint(1, 2)}-{u}",
            link_code="k1.x.y",
            visitor_id=f"{u}-v{rng.randint(1, visitors)}",
            suspicious=rng.random() < 0.1,
        )
        for n in range(clicks)
    ]
    os_ = [
        OrderPlaced(
            event_id=f"{u}-o{n:05d}-p",
            occurred_at=NOW - timedelta(seconds=rng.randint(0, 10 * 86_400)),
            store_id=f"s{rng.randint(1, 2)}-{u}",
            order_id=f"{u}-o{n:05d}",
            visitor_id=f"{u}-v{rng.randint(1, visitors)}",
            currency="USD",
            items=[OrderItem(product_id="p", quantity=1, unit_price=Decimal("10.00"))],
        )
        for n in range(orders)
    ]
    return cs, os_


def expected(cs: list[Click], os_: list[OrderPlaced]) -> dict[str, str | None]:
    core = [
        CoreClick(c.click_id, c.store_id, c.visitor_id, c.affiliate_id, c.occurred_at, c.suspicious)
        for c in cs
    ]
    out: dict[str, str | None] = {}
    for o in os_:
        d = decide(OrderRef(o.order_id, o.store_id, o.visitor_id, o.occurred_at), core)
        out[o.order_id] = d.click.click_id if d.click else None
    return out


def env(settings: Settings, port: int) -> dict[str, str]:
    return {
        "ALLIANCE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "ALLIANCE_DATABASE_URL": settings.database_url,
        "ALLIANCE_TOPIC_PREFIX": settings.topic_prefix,
        "ALLIANCE_ATTRIBUTION_PORT": str(port),
        "ALLIANCE_CONSUMER_BATCH_SIZE": "40",
        "ALLIANCE_CONSUMER_BATCH_MS": "20",
        # the clicks arrive after the orders here: keep every decision open for the test
        "ALLIANCE_ATTRIBUTION_GRACE_S": "3600",
    }


async def decisions(settings: Settings, order_ids: set[str]) -> dict[str, str | None]:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(orders_table.c.order_id, orders_table.c.click_id).where(
                    orders_table.c.order_id.in_(order_ids)
                )
            )
            return {r.order_id: r.click_id for r in rows}
    finally:
        await engine.dispose()


async def count_decided(settings: Settings, prefix: str) -> int:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            n = await conn.execute(
                select(func.count()).where(orders_table.c.order_id.like(f"{prefix}%"))
            )
            return int(n.scalar_one())
    finally:
        await engine.dispose()


async def converge(settings: Settings, want: dict[str, str | None]) -> dict[str, str | None]:
    async def done() -> dict[str, str | None] | None:
        got = await decisions(settings, set(want))
        return got if got == want else None

    try:
        return await eventually(done, timeout_s=90)
    except AssertionError:
        got = await decisions(settings, set(want))
        wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        raise AssertionError(
            f"{len(wrong)} orders differ, e.g. {list(wrong.items())[:3]}"
        ) from None


async def test_killed_mid_batch_and_restarted_ends_with_the_same_attributions(
    settings: Settings, tmp_path: Path
) -> None:
    u = uuid.uuid4().hex[:6]
    cs, os_ = history(u)
    (port,) = free_ports(1)
    run_dir = tmp_path / "run"
    # orders first, then clicks: every click that matters re-decides an order (the hard path)
    await produce(settings, [(Topic.ORDERS, o.visitor_id, encode(o)) for o in os_])
    await produce(settings, [(Topic.CLICKS, c.visitor_id, encode(c)) for c in cs])
    pid = procs.start("attribution", ["attribution"], run_dir, env(settings, port))
    try:

        async def started() -> bool | None:
            # a poll: far enough into the stream to be killed mid-way, wherever it is
            return True if await count_decided(settings, u) >= 100 else None

        await eventually(started, timeout_s=60)
        os.killpg(pid, signal.SIGKILL)  # no shutdown, no commit: mid-stream
        procs.stop("attribution", run_dir)
        procs.start("attribution", ["attribution"], run_dir, env(settings, port))
        want = expected(cs, os_)
        await converge(settings, want)

        # what was decided before the kill and not yet published is published after it
        async def all_published() -> dict[str, str | None] | None:
            got = await published_latest(settings)
            return got if got == want else None

        try:
            await eventually(all_published, timeout_s=30)
        except AssertionError:
            got = await published_latest(settings)
            wrong = {k: (got.get(k, "absent"), v) for k, v in want.items() if got.get(k) != v}
            raise AssertionError(f"{len(wrong)} published differ: {wrong}") from None
    finally:
        procs.stop("attribution", run_dir)


async def test_two_workers_split_the_partitions_and_agree_with_one(
    settings: Settings, tmp_path: Path
) -> None:
    u = uuid.uuid4().hex[:6]
    cs, os_ = history(u)
    ports = free_ports(2)
    run_dir = tmp_path / "run"
    await produce(settings, [(Topic.CLICKS, c.visitor_id, encode(c)) for c in cs])
    await produce(settings, [(Topic.ORDERS, o.visitor_id, encode(o)) for o in os_])
    names = ["attribution-a", "attribution-b"]
    for name, port in zip(names, ports, strict=True):
        procs.start(name, ["attribution"], run_dir, env(settings, port))
    try:
        await converge(settings, expected(cs, os_))
    finally:
        for name in names:
            procs.stop(name, run_dir)
    logs = [(run_dir / f"{name}.log").read_text() for name in names]
    assert all("Setting newly assigned partitions" in log for log in logs), (
        "both workers got partitions"
    )


async def published_latest(settings: Settings) -> dict[str, str | None]:
    """The click of each order's latest published attribution (highest revision)."""
    from tests.integration.topics import read_topic

    latest: dict[str, tuple[int, str | None]] = {}
    for d in await read_topic(settings.kafka, settings.topic(Topic.ATTRIBUTIONS)):
        if d["order_id"] not in latest or d["revision"] > latest[d["order_id"]][0]:
            latest[d["order_id"]] = (d["revision"], d["click_id"])
    return {k: v[1] for k, v in latest.items()}
