"""The reports' click cap: past ``ALLIANCE_CLICK_CAP_PER_DAY`` clicks of one visitor on one
link in one day, clicks are no longer stored one by one but the traffic still counts them.
On the real database."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import func, select

from services.commission.models import click_caps, report_clicks, traffic_days
from services.commission.reports.service import TrafficService
from shared.config import Settings
from tests.services.attribution.test_stream import NOW, click
from tests.services.attribution.test_windows import db, received

pytestmark = pytest.mark.integration


async def test_clicks_past_the_cap_are_counted_not_stored_and_traffic_stays_true(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    base = click(u, f"v-{u}", NOW.replace(hour=12) - timedelta(days=1))
    flood = [
        base.model_copy(
            update={
                "event_id": f"c-{u}-{n}",
                "occurred_at": base.occurred_at + timedelta(seconds=n),
            }
        )
        for n in range(10)
    ]
    traffic = TrafficService(settings.attribution_window_days, click_cap=4)
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await traffic.handle_batch(session, cast(Any, received(flood[:6])))
        async with sessions() as session, session.begin():
            await traffic.handle_batch(session, cast(Any, received([*flood[6:], flood[0]])))
        async with sessions() as session:
            stored = await session.scalar(
                select(func.count()).where(report_clicks.c.store_id == f"s-{u}")
            )
            counted = await session.scalar(
                select(func.sum(traffic_days.c.clicks)).where(traffic_days.c.store_id == f"s-{u}")
            )
            cap = (
                await session.execute(
                    select(click_caps.c.stored, click_caps.c.overflow).where(
                        click_caps.c.subject == f"visitor:v-{u}"
                    )
                )
            ).all()
    assert stored == 4
    assert counted == 10  # every click once: stored or not, the replayed one not again
    assert cap == [(4, 6)]
