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


async def test_a_closed_days_shards_fold_into_one_row_and_its_figures_stay(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    today = NOW.replace(hour=12)
    yesterday = today - timedelta(days=1)
    store = f"s-{u}"
    service = TrafficService(settings.attribution_window_days)

    async def rows(session: Any, table: Any, day: Any) -> int:
        where = (table.c.store_id == store) & (table.c.day == day)
        return int(await session.scalar(select(func.count()).where(where)))

    async with db(settings) as sessions:
        for partition, at in ((0, yesterday), (1, yesterday), (2, yesterday), (3, today)):
            visitor = f"v{partition}-{u}"
            batch = on_partition(partition, [click(u, visitor, at, affiliate=visitor)])
            async with sessions() as session, session.begin():
                await service.handle_batch(session, cast(Any, batch))
        both = DayRange(yesterday.date(), today.date())
        async with sessions() as session:
            before = await ReportRepository(session).traffic_total(store, both)
        removed = await service.fold_shards(sessions, today)
        async with sessions() as session:
            after = await ReportRepository(session).traffic_total(store, both)
            folded = [
                await rows(session, t, yesterday.date()) for t in (traffic_days, visitor_sketches)
            ]
            open_day = [
                await rows(session, t, today.date()) for t in (traffic_days, visitor_sketches)
            ]
    assert removed >= 4  # this store's two extra rows of each table (other tests' too)
    assert folded == [1, 1]
    assert open_day == [1, 1]  # today is still written: left as it is
    assert after == before
    assert (after.clicks, after.affiliate_visitors) == (4, 4)
