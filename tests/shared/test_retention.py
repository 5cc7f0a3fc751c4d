"""The retention core (shared/retention.py): the partition plan against a day-by-day reference,
and the rules the settings must keep."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.commission.core.program import MAX_WINDOW_DAYS
from shared.config import Settings
from shared.retention import (
    WIDEST_WINDOW_DAYS,
    Partition,
    clicks_minimum_days,
    parse_bound,
    plan,
    retention_problems,
)

TODAY = date(2026, 12, 6)
DAY = timedelta(days=1)


def day_partition(day: date) -> Partition:
    return Partition(f"t_p{day:%Y%m%d}", day, day + DAY)


@st.composite
def layouts(draw: st.DrawFn) -> list[Partition]:
    """Day partitions on random days around today, maybe a legacy one below them all (open
    below), maybe a default one."""
    offsets = draw(st.sets(st.integers(-120, 20), max_size=40))
    parts = [day_partition(TODAY + timedelta(days=o)) for o in sorted(offsets)]
    if draw(st.booleans()):
        first = min((p.lower for p in parts if p.lower), default=TODAY + 21 * DAY)
        upper = first - draw(st.integers(0, 100)) * DAY
        parts.append(Partition("t_legacy", None, upper))
    if draw(st.booleans()):
        parts.append(Partition("t_default", None, None, default=True))
    return parts


def covering(parts: list[Partition], day: date) -> list[str]:
    return [p.name for p in parts if p.overlaps(day, day + DAY)]


class TestPlan:
    @given(layouts(), st.integers(1, 800), st.integers(0, 30))
    def test_after_the_plan_each_day_ahead_has_exactly_one_partition(
        self, parts: list[Partition], keep: int, ahead: int
    ) -> None:
        p = plan(parts, TODAY, keep, ahead)
        after = [x for x in parts if x.name not in p.drop] + [day_partition(d) for d in p.create]
        for n in range(ahead + 1):
            assert len(covering(after, TODAY + n * DAY)) == 1

    @given(layouts(), st.integers(1, 800), st.integers(0, 30))
    def test_drops_exactly_the_partitions_wholly_older_than_the_retention(
        self, parts: list[Partition], keep: int, ahead: int
    ) -> None:
        p = plan(parts, TODAY, keep, ahead)
        cutoff = TODAY - keep * DAY
        assert p.cutoff == cutoff
        for x in parts:
            # reference: a partition goes when no day it may hold is on or after the cutoff
            wholly_old = not x.default and x.upper is not None and x.upper <= cutoff
            assert (x.name in p.drop) == wholly_old

    @given(layouts(), st.integers(1, 800), st.integers(0, 30))
    def test_creates_no_past_day_and_overlaps_nothing(
        self, parts: list[Partition], keep: int, ahead: int
    ) -> None:
        p = plan(parts, TODAY, keep, ahead)
        assert all(TODAY <= d <= TODAY + ahead * DAY for d in p.create)
        assert len(set(p.create)) == len(p.create)
        kept = [x for x in parts if x.name not in p.drop]
        assert all(not covering(kept, d) for d in p.create)

    @given(layouts(), st.integers(1, 800), st.integers(0, 30))
    def test_is_idempotent(self, parts: list[Partition], keep: int, ahead: int) -> None:
        p = plan(parts, TODAY, keep, ahead)
        after = [x for x in parts if x.name not in p.drop] + [day_partition(d) for d in p.create]
        again = plan(after, TODAY, keep, ahead)
        assert again.create == ()
        assert again.drop == ()

    def test_a_day_partition_ending_at_the_cutoff_goes_the_next_one_stays(self) -> None:
        cutoff = TODAY - 61 * DAY
        parts = [day_partition(cutoff - DAY), day_partition(cutoff)]
        assert plan(parts, TODAY, 61, 0).drop == (parts[0].name,)

    def test_the_legacy_table_goes_once_its_last_day_is_past_the_retention(self) -> None:
        legacy = Partition("clicks_legacy", None, TODAY - 10 * DAY)
        assert plan([legacy], TODAY, 11, 0).drop == ()
        assert plan([legacy], TODAY, 10, 0).drop == ("clicks_legacy",)

    def test_refuses_a_retention_under_a_day(self) -> None:
        with pytest.raises(ValueError, match="keep_days"):
            plan([], TODAY, 0, 1)


class TestRules:
    def test_the_widest_window_is_the_programs(self) -> None:
        assert WIDEST_WINDOW_DAYS == MAX_WINDOW_DAYS

    def test_the_default_click_retention_is_the_least_the_rule_allows(self) -> None:
        s = Settings()
        least = clicks_minimum_days(WIDEST_WINDOW_DAYS, s.attribution_grace_s)
        assert s.retention_clicks_days == least == 61
        assert retention_problems(s) == []

    @given(st.integers(1, 60), st.integers(0, 3 * 86400))
    def test_clicks_minimum_covers_two_windows_and_the_grace(self, window: int, grace: int) -> None:
        days = clicks_minimum_days(window, grace)
        assert days * 86400 >= 2 * window * 86400 + grace > (days - 1) * 86400

    def test_clicks_shorter_than_the_rule_are_refused(self) -> None:
        with pytest.raises(ValidationError, match="ALLIANCE_RETENTION_CLICKS_DAYS=60"):
            Settings(retention_clicks_days=60)

    def test_a_wider_default_window_raises_the_minimum(self) -> None:
        with pytest.raises(ValidationError, match="at least 81"):
            Settings(attribution_window_days=40, retention_clicks_days=61)

    def test_idempotency_shorter_than_the_topics_plus_a_margin_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="applied twice; at least 8 days"):
            Settings(retention_idempotency_days=7)  # topics: 168 h = 7 days, plus a day
        with pytest.raises(ValidationError, match="ALLIANCE_RETENTION_IDEMPOTENCY_DAYS=14"):
            Settings(retention_topic_hours=24 * 14)
        assert retention_problems(Settings(retention_idempotency_days=8)) == []


class TestBounds:
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            (
                "FOR VALUES FROM ('2026-12-06 00:00:00+00') TO ('2026-12-07 00:00:00+00')",
                (date(2026, 12, 6), date(2026, 12, 7), False),
            ),
            ("FOR VALUES FROM ('2026-12-06') TO ('2026-12-07')", (TODAY, TODAY + DAY, False)),
            ("FOR VALUES FROM (MINVALUE) TO ('2026-12-07')", (None, TODAY + DAY, False)),
            ("DEFAULT", (None, None, True)),
        ],
    )
    def test_reads_the_catalogs_bounds(
        self, expression: str, expected: tuple[date | None, date | None, bool]
    ) -> None:
        assert parse_bound(expression) == expected

    def test_refuses_a_list_partition(self) -> None:
        with pytest.raises(ValueError, match="not a range"):
            parse_bound("FOR VALUES IN ('a')")
