"""Coupon codes and policies in the attribution service, on the real database: learnt from
directory entries, in either order of arrival with the orders, replays changing nothing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.attribution.models import orders as orders_table
from services.attribution.models import outbox as outbox_table
from services.attribution.service import AttributionService, Incoming
from shared.clock import FixedClock
from shared.config import Settings
from shared.coupons import CouponPolicy
from shared.events import CouponEntry, OrderPlaced, StoreEntry
from tests.services.attribution.test_stream import NOW, click, order
from tests.services.attribution.test_windows import db, received

pytestmark = pytest.mark.integration
H = timedelta(hours=1)


def store_entry(u: str, at: datetime, policy: CouponPolicy) -> StoreEntry:
    return StoreEntry(
        event_id=f"store:{u}:{at.isoformat()}:{policy}",
        store_id=f"s-{u}",
        name="s",
        landing_url_template="https://x.example/{product_id}",
        secret_versions=[1],
        in_program=True,
        key_hash="h",
        updated_at=at,
        coupon_policy=policy,
    )


def code_entry(u: str, at: datetime, affiliate: str | None, **validity: datetime) -> CouponEntry:
    return CouponEntry(
        event_id=f"coupon:{u}:{at.isoformat()}",
        store_id=f"s-{u}",
        code="ANNA10",
        affiliate_id=affiliate,
        updated_at=at,
        **validity,
    )


def with_code(o: OrderPlaced, code: str) -> OrderPlaced:
    return o.model_copy(update={"coupon_code": code})


async def decided(
    sessions: async_sessionmaker[AsyncSession], u: str
) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    """(order, revision, click, affiliate, code) of the store's orders, and what was published."""
    async with sessions() as session:
        o = orders_table
        rows = await session.execute(
            select(o.c.order_id, o.c.revision, o.c.click_id, o.c.affiliate_id, o.c.coupon_code)
            .where(o.c.store_id == f"s-{u}")
            .order_by(o.c.order_id)
        )
        published = await session.execute(
            select(outbox_table.c.payload)
            .where(outbox_table.c.key.like(f"s-{u}:%"))
            .order_by(outbox_table.c.id)
        )
        return [tuple(r) for r in rows], [orjson.loads(p) for p in published.scalars()]


async def test_a_code_and_policy_arriving_after_the_order_re_decide_it(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    service = AttributionService(FixedClock(NOW), timedelta(days=15), settings.topic_prefix)
    c = click(u, f"v-{u}", NOW - 2 * H)
    placed = with_code(order(u, f"v-{u}", NOW - H), "anna10")
    before = with_code(order(u, f"w-{u}", NOW - 5 * H, 2), "ANNA10")  # before the code existed
    late: list[Incoming] = [
        store_entry(u, NOW - 4 * H, CouponPolicy.COUPON_WINS),
        code_entry(u, NOW - 3 * H, f"anna-{u}"),
    ]
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([c, placed, before]))
        rows, _ = await decided(sessions, u)
        assert rows == [
            (placed.order_id, 0, c.click_id, c.affiliate_id, None),
            (before.order_id, 0, None, None, None),
        ]
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received(late))
        for _ in range(2):  # a replay of the entries changes nothing
            async with sessions() as session, session.begin():
                await service.handle_batch(session, received(late))
        rows, published = await decided(sessions, u)
        assert rows == [
            (placed.order_id, 1, None, f"anna-{u}", "ANNA10"),
            (before.order_id, 0, None, None, None),
        ]
        changed = [p for p in published if p["revision"] == 1]
        assert [
            (p["order_id"], p["rule"], p["affiliate_id"], p["coupon_code"]) for p in changed
        ] == [(placed.order_id, "coupon", f"anna-{u}", "ANNA10")]
        assert [k["verdict"] for k in changed[0]["considered"]] == ["coupon_won"]

        # deleted before the order was placed: the click wins again
        async with sessions() as session, session.begin():
            await service.handle_batch(
                session, received([code_entry(u, NOW - 90 * timedelta(minutes=1), None)])
            )
        rows, published = await decided(sessions, u)
        assert rows[0] == (placed.order_id, 2, c.click_id, c.affiliate_id, None)
        assert published[-1]["rule"] == "last_click"
        assert len(published) == 4  # two first decisions, two corrections


async def test_in_the_normal_order_the_first_decision_is_the_codes(settings: Settings) -> None:
    """Policy click_wins and a code valid until a time: orders after it, or with a click,
    are not the code's."""
    u = uuid.uuid4().hex[:8]
    service = AttributionService(FixedClock(NOW), timedelta(days=15), settings.topic_prefix)
    until = NOW - 2 * H
    entries: list[Incoming] = [
        store_entry(u, NOW - 10 * H, CouponPolicy.CLICK_WINS),
        code_entry(u, NOW - 9 * H, f"anna-{u}", valid_to=until),
    ]
    clicked = click(u, f"v-{u}", NOW - 5 * H)
    orders = [
        with_code(order(u, f"v-{u}", NOW - 4 * H, 1), "Anna10"),  # has an eligible click
        with_code(order(u, f"w-{u}", NOW - 4 * H, 2), "anna10"),  # code only
        with_code(order(u, f"x-{u}", until, 3), "ANNA10"),  # at the end of validity (excluded)
        with_code(order(u, f"y-{u}", until - timedelta(microseconds=1), 4), "ANNA10"),
    ]
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received(entries))
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([clicked, *orders]))
        rows, published = await decided(sessions, u)
    assert rows == [
        (orders[0].order_id, 0, clicked.click_id, clicked.affiliate_id, None),
        (orders[1].order_id, 0, None, f"anna-{u}", "ANNA10"),
        (orders[2].order_id, 0, None, None, None),
        (orders[3].order_id, 0, None, f"anna-{u}", "ANNA10"),
    ]
    assert [p["rule"] for p in published] == ["last_click", "coupon", "organic", "coupon"]
