"""The reports' definitions in the pure core: what an affiliate order is (and its one SQL
spelling), and the affiliate page-view window, which includes both ends as attribution's does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.attribution.core import Click, OrderRef, ineligibility
from services.commission.core.commission import OrderStatus
from services.commission.core.reports import (
    AFFILIATE_ORDER_STATUSES,
    is_affiliate_order,
    is_affiliate_view,
)
from services.commission.models import affiliate_order_sql

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
WINDOW = timedelta(days=15)
TICK = timedelta(microseconds=1)


class TestAffiliateOrder:
    @pytest.mark.parametrize(
        ("chargeable", "status", "counts"),
        [
            (True, OrderStatus.PLACED, True),
            (True, OrderStatus.COMPLETED, True),
            (True, OrderStatus.CANCELLED, False),
            (False, OrderStatus.PLACED, False),
            (False, OrderStatus.COMPLETED, False),
        ],
    )
    def test_a_chargeable_order_not_cancelled(
        self, chargeable: bool, status: OrderStatus, counts: bool
    ) -> None:
        assert is_affiliate_order(chargeable, status) is counts

    def test_the_sql_is_built_from_the_same_statuses(self) -> None:
        sql = affiliate_order_sql("l")
        assert sql.startswith("(l.chargeable AND l.status IN (")
        for status in OrderStatus:
            assert (f"'{status.value}'" in sql) is (status in AFFILIATE_ORDER_STATUSES)
        assert affiliate_order_sql() == sql.replace("l.", "")


class TestAffiliateViewWindow:
    def test_a_view_exactly_one_window_after_the_click_counts(self) -> None:
        assert is_affiliate_view(T0, T0 + WINDOW, WINDOW)

    def test_a_view_just_after_the_window_does_not(self) -> None:
        assert not is_affiliate_view(T0, T0 + WINDOW + TICK, WINDOW)

    def test_a_view_at_the_click_counts(self) -> None:
        assert is_affiliate_view(T0, T0, WINDOW)

    def test_no_click_or_a_later_click_does_not_count(self) -> None:
        assert not is_affiliate_view(None, T0, WINDOW)
        assert not is_affiliate_view(T0 + TICK, T0, WINDOW)

    @given(
        offset=st.timedeltas(min_value=timedelta(days=-2), max_value=timedelta(days=40)),
        days=st.integers(min_value=1, max_value=30),
    )
    def test_the_same_rule_as_the_attribution_window(self, offset: timedelta, days: int) -> None:
        """A view counts exactly when an order placed at the view's time could be attributed
        to the click (same store and visitor, not suspicious): both ends included."""
        window = timedelta(days=days)
        click = Click("c", "s", "v", "a", T0)
        order = OrderRef("o", "s", "v", T0 + offset)
        eligible = ineligibility(click, order, window) is None
        assert is_affiliate_view(T0, T0 + offset, window) is eligible

    @pytest.mark.parametrize("edge", [WINDOW, WINDOW + TICK])
    def test_the_boundary_agrees_with_attribution(self, edge: timedelta) -> None:
        click = Click("c", "s", "v", "a", T0)
        attributed = ineligibility(click, OrderRef("o", "s", "v", T0 + edge), WINDOW) is None
        assert is_affiliate_view(T0, T0 + edge, WINDOW) is attributed
