"""Per-program attribution windows and click expiry, on the real database and broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.attribution.expiry import ClickExpiry
from services.attribution.models import clicks as clicks_table
from services.attribution.models import orders as orders_table
from services.attribution.models import outbox as outbox_table
from services.attribution.service import AttributionService, Incoming
from shared.clock import FixedClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.events import StoreEntry, Topic, encode
from shared.kafka import Received
from tests.integration.harness import admin, eventually, order_view, running
from tests.services.attribution.test_stream import (
    NOW,
    click,
    joined_store,
    order,
    produce,
)

pytestmark = pytest.mark.integration
D = timedelta(days=1)


async def test_a_program_sets_resets_and_records_its_window(settings: Settings) -> None:
    u = uuid.uuid4().hex[:8]
    async with running(settings) as svc:
        await joined_store(svc, settings, u)
        base = f"/v1/stores/s-{u}"
        auth = admin(settings)
        got = (await svc.commission.get(f"{base}/program", headers=auth)).json()
        assert (got["attribution_window_days"], got["attribution_window_is_default"]) == (15, True)
        for bad in ({"days": 0}, {"days": 31}, {"days": "x"}, {}):
            resp = await svc.commission.put(f"{base}/attribution-window", json=bad, headers=auth)
            assert resp.status_code == 422, (bad, resp.text)
        too_long = await svc.commission.put(
            f"{base}/attribution-window", json={"days": 31}, headers=auth
        )
        assert too_long.json()["error"]["code"] == "invalid_window"
        set_ = await svc.commission.put(
            f"{base}/attribution-window", json={"days": 7}, headers=auth
        )
        assert set_.status_code == 200, set_.text
        assert set_.json()["attribution_window_days"] == 7
        assert set_.json()["attribution_window_is_default"] is False
        reset = await svc.commission.delete(f"{base}/attribution-window", headers=auth)
        assert reset.json()["attribution_window_days"] == 15
        ops = (await svc.commission.get(f"{base}/operations", headers=auth)).json()
        windows = [(o["kind"], o["days"], o["after"]["window_days"]) for o in ops[-2:]]
        assert windows == [("attribution_window", 7, 7), ("attribution_window", None, None)]
        assert ops[-2]["before"]["window_days"] is None


async def test_orders_are_decided_with_their_stores_window(settings: Settings) -> None:
    """Store A sets 3 days, store B keeps the default 15: the same 5-day-old click wins B's
    order and not A's. The setting reaches attribution through the directory topic."""
    a, b = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    async with running(settings) as svc:
        for u in (a, b):
            await joined_store(svc, settings, u)
        resp = await svc.commission.put(
            f"/v1/stores/s-{a}/attribution-window", json={"days": 3}, headers=admin(settings)
        )
        assert resp.status_code == 200
        placed = datetime.now(UTC) + timedelta(seconds=1)  # after the change took effect
        events = []
        for u in (a, b):
            c = click(u, f"v-{u}", placed - 5 * D)
            o = order(u, f"v-{u}", placed)
            events += [
                (Topic.CLICKS, c.visitor_id, encode(c)),
                (Topic.ORDERS, o.visitor_id, encode(o)),
            ]
        await produce(settings, events)
        await eventually(
            lambda: order_view(svc, settings, (f"s-{b}", f"o-{b}-1"), affiliate_id=f"aff-{b}")
        )
        # A's order may be decided before the window change arrives, and then corrected
        explained = await eventually(lambda: _explained(svc, settings, f"s-{a}", f"o-{a}-1", 3 * D))
        assert explained["affiliate_id"] is None
        assert [c["verdict"] for c in explained["considered"]] == ["outside_window"]


async def _explained(
    svc: Any, settings: Settings, store_id: str, order_id: str, window: timedelta
) -> dict[str, Any] | None:
    resp = await svc.commission.get(
        f"/v1/stores/{store_id}/orders/{order_id}/attribution", headers=admin(settings)
    )
    if resp.status_code != 200:
        return None
    body: dict[str, Any] = resp.json()
    start = datetime.fromisoformat(body["window_start"])
    end = datetime.fromisoformat(body["window_end"])
    return body if end - start == window and body["affiliate_id"] is None else None


@asynccontextmanager
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(settings.database_url, pool_size=2)
    try:
        yield make_sessions(engine)
    finally:
        await engine.dispose()


def received(events: Sequence[Incoming]) -> list[Received[Incoming]]:
    return [
        Received("t", 0, n, None, e, 0, encode(e) if e is not None else b"")
        for n, e in enumerate(events)
    ]


def entry(u: str, at: datetime, days: int | None) -> StoreEntry:
    return StoreEntry(
        event_id=f"store:{u}:{at.isoformat()}:{days}",
        store_id=f"s-{u}",
        name="s",
        landing_url_template="https://x.example/{product_id}",
        secret_versions=[1],
        in_program=True,
        key_hash="h",
        updated_at=at,
        attribution_window_days=days,
    )


async def test_a_window_change_re_decides_the_open_orders_placed_since(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    clock = FixedClock(NOW)
    service = AttributionService(clock, 15 * D, settings.topic_prefix)
    before, after = order(u, f"v-{u}", NOW - 2 * D, 1), order(u, f"v-{u}", NOW - D, 2)
    old_click = click(u, f"v-{u}", NOW - 6 * D)
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([old_click, before, after]))
        # the change arrives late: effective between the two orders
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([entry(u, NOW - 1.5 * D, 3)]))
        async with sessions() as session, session.begin():  # a replay changes nothing
            await service.handle_batch(session, received([entry(u, NOW - 1.5 * D, 3)]))
        async with sessions() as session:
            rows = await session.execute(
                select(orders_table.c.order_id, orders_table.c.revision, orders_table.c.click_id)
                .where(orders_table.c.store_id == f"s-{u}")
                .order_by(orders_table.c.order_id)
            )
            decided = [tuple(r) for r in rows]
            published = [
                orjson.loads(p)
                for p in (
                    await session.execute(
                        select(outbox_table.c.payload).where(
                            outbox_table.c.key.in_(
                                [f"{o.store_id}:{o.order_id}" for o in (before, after)]
                            )
                        )
                    )
                ).scalars()
            ]
    assert decided == [
        (before.order_id, 0, old_click.click_id),  # placed before the change: 15 days
        (after.order_id, 1, None),  # placed after: 3 days, the 5-day-old click is out
    ]
    changed = [p for p in published if p["type"] == "attribution_changed"]
    assert [(p["order_id"], p["click_id"]) for p in changed] == [(after.order_id, None)]


async def test_expiry_keeps_clicks_for_twice_the_widest_window(settings: Settings) -> None:
    u = uuid.uuid4().hex[:8]
    clock = FixedClock(NOW)
    service = AttributionService(clock, 15 * D, settings.topic_prefix, grace=timedelta(0))
    ages = [10, 30, 40, 70]  # days; kept: 2 × 15 + 1 = 31 days, then 2 × 30 + 1 = 61
    clicks = [click(u, f"v-{u}-{age}", NOW - age * D) for age in ages]

    async def ours(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
        async with sessions() as session:
            rows = await session.execute(
                select(clicks_table.c.visitor_id)
                .where(clicks_table.c.store_id == f"s-{u}")
                .order_by(clicks_table.c.occurred_at.desc())
            )
            return [v.rsplit("-", 1)[1] for v in rows.scalars()]

    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received(clicks))
        assert await ours(sessions) == ["10", "30", "40", "70"]
        expiry = ClickExpiry(sessions, service, 0, chunk=1)  # chunks: one row per transaction
        assert await expiry.run_once() == 2  # the 40- and 70-day-old clicks
        assert await ours(sessions) == ["10", "30"]
        # a store with a 30-day window: explanations reach 60 days back
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([*clicks, entry(u, NOW - 100 * D, 30)]))
        await expiry.run_once()
        assert await ours(sessions) == ["10", "30", "40"]
