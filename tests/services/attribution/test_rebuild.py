"""The rebuild's comparison of emitted and recomputed decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.attribution.core import DEFAULT_WINDOW, Click, OrderRef
from services.attribution.rebuild import Difference, compare

T = datetime(2026, 3, 1, tzinfo=UTC)


def test_reports_same_changed_and_missing_decisions() -> None:
    clicks = [
        Click("c1", "s1", "v1", "a", T - timedelta(days=1)),
        Click("c2", "s1", "v2", "b", T - timedelta(days=2)),
    ]
    orders = [
        OrderRef("o1", "s1", "v1", T),
        OrderRef("o2", "s1", "v2", T),
        OrderRef("o3", "s1", "v3", T),
    ]
    report = compare(clicks, orders, {("s1", "o1"): "c1", ("s1", "o2"): None}, DEFAULT_WINDOW)
    assert (report.orders, report.same) == (3, 1)
    assert report.differences == [
        Difference("s1", "o2", None, "c2"),
        Difference("s1", "o3", None, None, missing=True),
    ]
