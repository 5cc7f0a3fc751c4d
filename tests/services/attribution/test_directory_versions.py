"""Issue 19, defect 7, at attribution (real database): a store's directory entry older than the
one attribution holds (replayed, or published out of order by two relays) is ignored, so it
never sets a window or a coupon policy the store has since changed."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.attribution.repository import AttributionRepository
from services.attribution.service import AttributionService, Incoming
from shared.clock import FixedClock
from shared.config import Settings
from shared.coupons import CouponPolicy
from shared.events import Attribution, StoreEntry, Topic, encode
from tests.services.attribution.test_stream import NOW, click, order, produce
from tests.services.attribution.test_windows import db, received

pytestmark = pytest.mark.integration
D = timedelta(days=1)
DEFAULT = 15 * D


def entry(u: str, version: int, at: datetime, days: int | None, policy: CouponPolicy) -> StoreEntry:
    return StoreEntry(
        version=version,
        event_id=f"store:s-{u}:{version}",
        store_id=f"s-{u}",
        name="s",
        landing_url_template="https://x.example/{product_id}",
        secret_versions=[1],
        in_program=True,
        key_hash="h",
        updated_at=at,
        attribution_window_days=days,
        coupon_policy=policy,
    )


async def apply(
    sessions: async_sessionmaker[AsyncSession], service: AttributionService, *events: Incoming
) -> None:
    async with sessions() as session, session.begin():
        await service.handle_batch(session, received(list(events)))


async def in_force(
    sessions: async_sessionmaker[AsyncSession], u: str
) -> tuple[timedelta, CouponPolicy, dict[str, int]]:
    """The window and coupon policy in force now for the store, and the version held."""
    async with sessions() as session:
        repo = AttributionRepository(session)
        window = (await repo.windows([f"s-{u}"], DEFAULT))[f"s-{u}"].at(NOW)
        policy = (await repo.policies([f"s-{u}"]))[f"s-{u}"].at(NOW)
        return window, policy, await repo.directory_versions([f"store:s-{u}"])


class TestAnOlderDirectoryEntryIsIgnored:
    async def test_an_older_entry_arriving_after_a_newer_one_sets_nothing(
        self, settings: Settings
    ) -> None:
        """Version 1 set 3 days and ``coupon_wins``; version 2 went back to the defaults. Two
        relays published 2 before 1: the store's program is the defaults, not version 1."""
        u = uuid.uuid4().hex[:8]
        service = AttributionService(FixedClock(NOW), DEFAULT, settings.topic_prefix)
        first = entry(u, 1, NOW - 2 * D, 3, CouponPolicy.COUPON_WINS)
        second = entry(u, 2, NOW - D, None, CouponPolicy.OFF)
        async with db(settings) as sessions:
            await apply(sessions, service, second)
            await apply(sessions, service, first)
            assert await in_force(sessions, u) == (DEFAULT, CouponPolicy.OFF, {f"store:s-{u}": 2})

    async def test_within_one_batch_too(self, settings: Settings) -> None:
        u = uuid.uuid4().hex[:8]
        service = AttributionService(FixedClock(NOW), DEFAULT, settings.topic_prefix)
        first = entry(u, 1, NOW - 2 * D, 3, CouponPolicy.COUPON_WINS)
        second = entry(u, 2, NOW - D, None, CouponPolicy.OFF)
        async with db(settings) as sessions:
            await apply(sessions, service, second, first)
            assert await in_force(sessions, u) == (DEFAULT, CouponPolicy.OFF, {f"store:s-{u}": 2})

    async def test_a_replayed_entry_changes_nothing_and_a_newer_one_applies(
        self, settings: Settings
    ) -> None:
        u = uuid.uuid4().hex[:8]
        service = AttributionService(FixedClock(NOW), DEFAULT, settings.topic_prefix)
        first = entry(u, 1, NOW - 3 * D, 3, CouponPolicy.COUPON_WINS)
        second = entry(u, 2, NOW - 2 * D, 7, CouponPolicy.CLICK_WINS)
        third = entry(u, 3, NOW - D, 5, CouponPolicy.CLICK_WINS)
        async with db(settings) as sessions:
            await apply(sessions, service, first, second)
            held = (7 * D, CouponPolicy.CLICK_WINS, {f"store:s-{u}": 2})
            assert await in_force(sessions, u) == held
            await apply(sessions, service, first)  # replayed
            await apply(sessions, service, second)  # the same again: idempotent
            assert await in_force(sessions, u) == held
            await apply(sessions, service, third)
            assert await in_force(sessions, u) == (
                5 * D,
                CouponPolicy.CLICK_WINS,
                {f"store:s-{u}": 3},
            )

    async def test_an_unversioned_entry_never_overrides_a_versioned_one(
        self, settings: Settings
    ) -> None:
        u = uuid.uuid4().hex[:8]
        service = AttributionService(FixedClock(NOW), DEFAULT, settings.topic_prefix)
        async with db(settings) as sessions:
            await apply(sessions, service, entry(u, 1, NOW - D, None, CouponPolicy.OFF))
            await apply(sessions, service, entry(u, 0, NOW - 2 * D, 3, CouponPolicy.COUPON_WINS))
            assert await in_force(sessions, u) == (DEFAULT, CouponPolicy.OFF, {f"store:s-{u}": 1})


async def test_rebuild_ignores_an_older_entry_read_after_a_newer_one(settings: Settings) -> None:
    """On the topic, version 2 (back to the default window) before version 1 (3 days): the
    rebuild decides with the default window, like the live service, and finds no difference."""
    from services.attribution.rebuild import rebuild

    u = uuid.uuid4().hex[:8]
    first = entry(u, 1, NOW - 2 * D, 3, CouponPolicy.OFF)
    second = entry(u, 2, NOW - D, None, CouponPolicy.OFF)
    c = click(u, f"v-{u}", NOW - 5 * D)  # in the default window, not in 3 days
    o = order(u, f"v-{u}", NOW)
    decided = Attribution(
        event_id=f"s-{u}:{o.order_id}:0",
        occurred_at=NOW,
        revision=0,
        order_id=o.order_id,
        store_id=o.store_id,
        visitor_id=o.visitor_id,
        placed_at=NOW,
        rule="last_click",
        affiliate_id=c.affiliate_id,
        click_id=c.click_id,
        click_at=c.occurred_at,
        window_start=NOW - DEFAULT,
        window_end=NOW,
        order=o,
    )
    key = f"store:s-{u}"
    await produce(
        settings,
        [
            (Topic.DIRECTORY, key, encode(second)),
            (Topic.DIRECTORY, key, encode(first)),
            (Topic.CLICKS, c.visitor_id, encode(c)),
            (Topic.ORDERS, o.visitor_id, encode(o)),
            (Topic.ATTRIBUTIONS, f"s-{u}:{o.order_id}", encode(decided)),
        ],
    )
    report = await rebuild(settings.kafka, settings.topic_prefix, NOW - D, DEFAULT)
    assert (report.orders, report.same, report.differences) == (1, 1, [])
