"""One visitor's flood: a decision's work is bounded whatever one visitor clicked, and what
one visitor or one address stores per link per day is capped (the rest counted). On the real
database."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from services.attribution.models import click_caps
from services.attribution.models import clicks as clicks_table
from services.attribution.repository import AttributionRepository
from services.attribution.service import AttributionService
from shared.clock import FixedClock
from shared.config import Settings
from tests.services.attribution.test_holds import _state
from tests.services.attribution.test_stream import NOW, click, order
from tests.services.attribution.test_windows import db, received

pytestmark = pytest.mark.integration
D = timedelta(days=1)
FLOOD = 200_000


async def test_a_decision_is_bounded_whatever_one_visitor_clicked(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200,000 clicks of one visitor (on the order's store and another, eligible, suspicious
    and after the order) then an order: the latest eligible click wins and the decision reads
    at most the explanation's sample plus the winner, not the flood."""
    u = uuid.uuid4().hex[:8]
    visitor = f"v-{u}"
    service = AttributionService(FixedClock(NOW), 15 * D, settings.topic_prefix)
    winner = click(u, visitor, NOW - 3 * D, "winner")
    loaded: list[int] = []
    original = AttributionRepository.decision_clicks

    async def counted(self: AttributionRepository, *args: Any) -> Any:
        read = await original(self, *args)
        loaded.append(sum(len(v) for v in read.values()))
        return read

    monkeypatch.setattr(AttributionRepository, "decision_clicks", counted)
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            # bulk, server side: the flood as the tracker would have stored it before the cap
            # (n % 4: 0 eligible but older than the winner, 1 suspicious and newer, 2 another
            # store and newer, 3 after the order)
            await session.execute(
                text(
                    """
                    INSERT INTO attribution.clicks (click_id, store_id, visitor_id,
                        affiliate_id, occurred_at, received_at, suspicious, link_code)
                    SELECT 'flood-' || :u || '-' || n,
                        CASE WHEN n % 4 = 2 THEN 'other-' || :u ELSE :store END, :visitor,
                        'flooder-' || :u,
                        CASE n % 4
                            WHEN 0 THEN CAST(:winner_at AS timestamptz)
                                - make_interval(secs => 1 + n)
                            WHEN 3 THEN CAST(:placed AS timestamptz)
                                + make_interval(secs => 1 + n % 80000)
                            ELSE CAST(:winner_at AS timestamptz) + make_interval(secs => 1 + n)
                        END,
                        CAST(:placed AS timestamptz), n % 4 = 1, 'flood.link'
                    FROM generate_series(1, :n) AS n
                    """
                ),
                {
                    "u": u,
                    "store": f"s-{u}",
                    "visitor": visitor,
                    "winner_at": winner.occurred_at,
                    "placed": NOW,
                    "n": FLOOD,
                },
            )
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([winner]))
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([order(u, visitor, NOW)]))
        (decision, published) = await _state(sessions, f"o-{u}-1")
        async with sessions() as session:
            stored = await session.scalar(
                select(text("count(*)"))
                .select_from(clicks_table)
                .where(clicks_table.c.visitor_id == visitor)
            )
    assert stored == FLOOD + 1
    assert decision == (0, winner.click_id)
    assert published[0]["affiliate_id"] == winner.affiliate_id
    assert len(published[0]["considered"]) == 100
    assert loaded == [101], loaded  # the explanation's 100 latest and the winner


async def test_a_visitor_stores_at_most_the_cap_per_link_per_day_and_the_rest_is_counted(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    service = AttributionService(FixedClock(NOW), 15 * D, settings.topic_prefix, click_cap=5)
    base = click(u, f"v-{u}", NOW - D)
    flood = [
        base.model_copy(
            update={
                "event_id": f"c-{u}-{n}",
                "occurred_at": base.occurred_at + timedelta(seconds=n),
                "ip": "192.0.2.7",
            }
        )
        for n in range(12)
    ]
    other = base.model_copy(
        update={"event_id": f"c-{u}-o", "visitor_id": f"w-{u}", "ip": "192.0.2.7"}
    )
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received(flood[:7]))
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([*flood[7:], *flood[:3], other]))
        async with sessions() as session:
            kept = set(
                (
                    await session.execute(
                        select(clicks_table.c.click_id).where(
                            clicks_table.c.link_code == base.link_code,
                            clicks_table.c.click_id.like(f"c-{u}-%"),
                        )
                    )
                ).scalars()
            )
            caps = {
                r.subject: (r.stored, r.overflow)
                for r in await session.execute(
                    select(click_caps).where(click_caps.c.subject.like("%" + u + "%"))
                )
            }
            address = (
                await session.execute(
                    select(click_caps.c.stored, click_caps.c.overflow).where(
                        click_caps.c.subject == "address:192.0.2.7",
                        click_caps.c.link_code == base.link_code,
                    )
                )
            ).all()
    # the first five stored, the other seven counted (replays of stored ones: neither);
    # the second visitor from the same address is past the address's cap
    assert kept == {f"c-{u}-{n}" for n in range(5)}
    assert caps == {f"visitor:v-{u}": (5, 7), f"visitor:w-{u}": (0, 0)}
    assert address == [(5, 1)]  # the refusal is charged to the key that refused it


async def test_a_batch_that_passes_the_cap_on_one_key_only_is_admitted_click_by_click(
    settings: Settings,
) -> None:
    """The cap's one-statement path adds each key's count where it stays within the cap; a
    key past it sends the batch through the click-by-click rule, what was added taken back:
    the counts and the clicks stored are those of one click at a time."""
    u = uuid.uuid4().hex[:8]
    ip = f"198.51.100.{int(u[:2], 16)}-{u}"
    service = AttributionService(FixedClock(NOW), 15 * D, settings.topic_prefix, click_cap=5)
    base = click(u, f"v-{u}", NOW - D).model_copy(update={"ip": ip})

    def at(visitor: str, n: int) -> Any:
        return base.model_copy(
            update={
                "event_id": f"c-{u}-{visitor}{n}",
                "visitor_id": f"{visitor}-{u}",
                "occurred_at": base.occurred_at + timedelta(seconds=n),
            }
        )

    async with db(settings) as sessions:
        async with sessions() as session, session.begin():  # within the cap: one statement
            await service.handle_batch(session, received([at("a", n) for n in range(3)]))
        async with sessions() as session, session.begin():
            # visitor a stays within (3 + 2), b too (0 + 1); the address would pass (3 + 3)
            await service.handle_batch(session, received([at("a", 3), at("a", 4), at("b", 5)]))
        async with sessions() as session:
            kept = set(
                (
                    await session.execute(
                        select(clicks_table.c.click_id).where(
                            clicks_table.c.click_id.like(f"c-{u}-%")
                        )
                    )
                ).scalars()
            )
            caps = {
                r.subject: (r.stored, r.overflow)
                for r in await session.execute(
                    select(click_caps).where(click_caps.c.subject.like("%" + u + "%"))
                )
            }
    assert kept == {f"c-{u}-a{n}" for n in range(5)}
    assert caps == {f"visitor:a-{u}": (5, 0), f"visitor:b-{u}": (0, 0), f"address:{ip}": (5, 1)}
