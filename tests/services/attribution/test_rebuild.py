"""The rebuild's comparison of emitted and recomputed decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.attribution.core import DEFAULT_WINDOW, Click, OrderRef
from services.attribution.rebuild import Difference, compare, placements
from shared.events import Attribution, OrderItem, OrderPlaced

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


def _placed(visitor: str, at: datetime, currency: str = "USD") -> OrderPlaced:
    return OrderPlaced(
        event_id=f"placed-{visitor}",
        occurred_at=at,
        store_id="s1",
        order_id="o1",
        visitor_id=visitor,
        currency=currency,
        items=[OrderItem(product_id="p1", quantity=1, unit_price=Decimal("1.00"))],
    )


def _decision(order: OrderPlaced, click: str | None, revision: int = 0) -> Attribution:
    return Attribution(
        event_id=f"s1:o1:{revision}",
        occurred_at=order.occurred_at,
        revision=revision,
        order_id="o1",
        store_id="s1",
        visitor_id=order.visitor_id,
        placed_at=order.occurred_at,
        rule="last_click" if click else "organic",
        affiliate_id="a" if click else None,
        click_id=click,
        click_at=T - timedelta(days=1) if click else None,
        window_start=order.occurred_at - DEFAULT_WINDOW,
        window_end=order.occurred_at,
        order=order,
    )


class TestOnePlacement:
    def test_rebuild_decides_again_from_the_placement_the_decision_was_made_from(self) -> None:
        """Two differing ``order_placed`` of one order: the one attribution decided from (the
        second on the topic, its partition read first) is the placement, so no difference."""
        clicks = [Click("c1", "s1", "buyer", "a", T - timedelta(days=1))]
        hostile = _placed("other", T, "EUR")
        decided = _placed("buyer", T)
        orders, emitted = placements([hostile, decided], [_decision(decided, "c1")], T)
        assert orders == {("s1", "o1"): OrderRef("o1", "s1", "buyer", T)}
        report = compare(clicks, orders.values(), emitted, DEFAULT_WINDOW)
        assert (report.same, report.differences) == (1, [])

    def test_the_latest_decisions_placement_and_winner_count(self) -> None:
        decided = _placed("buyer", T)
        orders, emitted = placements(
            [decided], [_decision(decided, "c2", 1), _decision(decided, "c1", 0)], T
        )
        assert emitted == {("s1", "o1"): "c2"}
        assert list(orders) == [("s1", "o1")]

    def test_an_order_never_decided_keeps_its_first_placement(self) -> None:
        first, second = _placed("v1", T), _placed("v2", T + timedelta(seconds=1))
        orders, emitted = placements([first, second], [], T)
        assert (orders[("s1", "o1")].visitor_id, emitted) == ("v1", {})

    def test_orders_placed_before_since_are_left_out(self) -> None:
        orders, _ = placements([_placed("v1", T)], [], T + timedelta(seconds=1))
        assert orders == {}
