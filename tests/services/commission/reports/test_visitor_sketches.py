"""Distinct visitors over more than one day come from per-day HyperLogLog sketches, within the
bound the API documents; a single day's count stays exact. On the real database, written by
the reports consumer's own upserts (several batches per day, one of them replayed)."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta

import pytest

from services.commission.core.reports import (
    VISITOR_SKETCH_ERROR,
    DayRange,
    Granularity,
    bucket_of,
)
from services.commission.reports.repository import ReportRepository
from services.commission.reports.schemas import TrafficTotals
from shared.config import Settings
from tests.services.attribution.test_windows import db

pytestmark = pytest.mark.integration

#: three standard errors: the bound the API states for 99.7% of estimates
BOUND = 3 * VISITOR_SKETCH_ERROR
#: a Wednesday: the 13 days' first ISO week holds five of them, the last (a Monday) one
FIRST = date(2026, 3, 4)
DAYS = 13
#: (store, day, visitor) → (an affiliate click, a page view)
VisitorDays = dict[tuple[str, date, str], tuple[bool, bool]]


def visitor_days(store: str) -> VisitorDays:
    """3,000 visitors a day out of 15,000 (so they recur across days), two thirds of them
    with an affiliate click: dense sketches, not the small exact forms. The same visitors for
    every store and run (the sketches hash the visitor id alone), so the estimate is
    reproducible: a 3-sigma bound checked over fresh random sets would fail now and then."""
    rng = random.Random(20261205)
    out: VisitorDays = {}
    for n in range(DAYS):
        day = FIRST + timedelta(days=n)
        for v in rng.sample(range(15_000), 3_000):
            out[(store, day, f"v{v}")] = (v % 3 != 0, True)
    return out


#: each visitor's partition: a day's sketch is the union of its shards' rows
SHARDS = {f"v{v}": v % 12 for v in range(15_000)}


def exact(rows: VisitorDays, first: date, last: date) -> tuple[int, int]:
    """Distinct (affiliate, store) visitors over ``first`` .. ``last``, counted here."""
    inside = [(v, c) for (_, d, v), (c, _) in rows.items() if first <= d <= last]
    return len({v for v, c in inside if c}), len({v for v, _ in inside})


def assert_within(estimate: int, truth: int) -> None:
    assert abs(estimate - truth) <= BOUND * truth, (estimate, truth, BOUND)


async def test_multi_day_visitors_are_within_the_stated_bound_and_a_single_day_is_exact(
    settings: Settings,
) -> None:
    store = f"s-{uuid.uuid4().hex[:8]}"
    rows = visitor_days(store)
    items = list(rows.items())
    random.Random(1).shuffle(items)  # each day spread over every batch
    batches = [dict(items[n : n + 4_000]) for n in range(0, len(items), 4_000)]
    async with db(settings) as sessions:
        for batch in [*batches, batches[0]]:  # the last one replayed: changes nothing
            async with sessions() as session, session.begin():
                await ReportRepository(session).add_visitors(batch, SHARDS)
        async with sessions() as session:
            repo = ReportRepository(session)
            last = FIRST + timedelta(days=DAYS - 1)
            whole = await repo.traffic_total(store, DayRange(FIRST, last))
            dashboard = await repo.traffic_total(store, DayRange(FIRST, last), store_visitors=False)
            one_day = await repo.traffic_total(store, DayRange(FIRST, FIRST))
            daily = await repo.traffic_series(store, DayRange(FIRST, last), Granularity.DAY)
            weekly = await repo.traffic_series(store, DayRange(FIRST, last), Granularity.WEEK)

    affiliate, everyone = exact(rows, FIRST, last)
    assert affiliate > 8_000  # far past the sketches' exact small forms
    assert_within(whole.affiliate_visitors, affiliate)
    assert_within(whole.store_visitors, everyone)
    assert dashboard.affiliate_visitors == whole.affiliate_visitors
    assert (one_day.affiliate_visitors, one_day.store_visitors) == exact(rows, FIRST, FIRST)
    for day, row in daily.items():
        assert (row.affiliate_visitors, row.store_visitors) == exact(rows, day, day)
    last_week = bucket_of(last, Granularity.WEEK)
    assert (weekly[last_week].affiliate_visitors, weekly[last_week].store_visitors) == exact(
        rows, last, last
    )  # a week holding one day of the range: exact
    for week, row in weekly.items():
        first_day, last_day = max(week, FIRST), min(week + timedelta(days=6), last)
        a, s = exact(rows, first_day, last_day)
        assert_within(row.affiliate_visitors, a)
        assert_within(row.store_visitors, s)


def test_the_api_states_the_error_bound_of_distinct_visitors() -> None:
    described = TrafficTotals.model_json_schema()["properties"]["affiliate_visitors"]
    assert f"{VISITOR_SKETCH_ERROR:.3%}" in described["description"]
    assert "exact" in described["description"]
