"""No hot row in the reports' traffic: two workers' batches of one store and day (events of
different partitions) write rows of their own, so neither waits for the other's commit, and
the day's figures are the sum of the rows. On the real database."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import func, select, text

from services.commission.core.reports import DayRange
from services.commission.models import traffic_days, visitor_sketches
from services.commission.reports.repository import ReportRepository
from services.commission.reports.service import Incoming, TrafficService
from shared.config import Settings
from shared.events import PageView, encode
from shared.kafka import Received
from tests.services.attribution.test_stream import NOW, click
from tests.services.attribution.test_windows import db

pytestmark = pytest.mark.integration


def on_partition(partition: int, events: list[Incoming]) -> list[Received[Incoming]]:
    return [
        Received("t", partition, n, None, e, 0, encode(e) if e is not None else b"")
        for n, e in enumerate(events)
    ]


async def test_two_workers_batches_of_one_store_and_day_never_wait_on_each_other(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    at = NOW.replace(hour=12) - timedelta(days=1)
    store = f"s-{u}"

    def traffic(visitor: str) -> list[Incoming]:
        view = PageView(
            event_id=f"pv-{visitor}", occurred_at=at, store_id=store, visitor_id=visitor
        )
        return [click(u, visitor, at, affiliate=visitor), view]

    service = TrafficService(settings.attribution_window_days)
    async with db(settings) as sessions:
        async with sessions() as first, first.begin():
            await service.handle_batch(first, cast(Any, on_partition(0, traffic(f"v1-{u}"))))
            # the other worker's batch, while the first is not committed: it waited for the
            # first's (store, day) rows until its commit (here: a lock timeout)
            async with sessions() as second, second.begin():
                await second.execute(text("SET LOCAL lock_timeout = '2s'"))
                await service.handle_batch(second, cast(Any, on_partition(1, traffic(f"v2-{u}"))))
        async with sessions() as session:
            rows = await session.scalar(
                select(func.count()).where(traffic_days.c.store_id == store)
            )
            sketches = await session.scalar(
                select(func.count()).where(visitor_sketches.c.store_id == store)
            )
            repo = ReportRepository(session)
            day = DayRange(at.date(), at.date())
            week = DayRange(at.date() - timedelta(days=6), at.date())
            one_day = await repo.traffic_total(store, day)
            seven_days = await repo.traffic_total(store, week)
    assert (rows, sketches) == (2, 2)  # one per partition
    assert (one_day.clicks, one_day.page_views, one_day.affiliate_page_views) == (2, 2, 2)
    assert (one_day.affiliate_visitors, one_day.store_visitors) == (2, 2)
    assert (seven_days.clicks, seven_days.page_views) == (2, 2)
    assert (seven_days.affiliate_visitors, seven_days.store_visitors) == (2, 2)  # sketches
