"""Order events as the storefront and attribution publish them, built for tests: one
placement of one line, and a last-click decision made from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.events import Attribution, OrderPlaced


def placement(
    store: str, order: str, visitor: str, currency: str, price: str, event_id: str | None = None
) -> OrderPlaced:
    return OrderPlaced.model_validate(
        {
            "event_id": event_id or f"{order}-placed-{visitor}",
            "occurred_at": datetime.now(UTC),
            "store_id": store,
            "order_id": order,
            "visitor_id": visitor,
            "currency": currency,
            "items": [{"product_id": "p1", "quantity": 1, "unit_price": price}],
        }
    )


def decision(placed: OrderPlaced, affiliate: str, click_id: str | None = None) -> Attribution:
    """The first decision (revision 0) crediting ``affiliate`` with a click five minutes
    before the placement."""
    return Attribution(
        event_id=f"{placed.store_id}:{placed.order_id}:0",
        occurred_at=datetime.now(UTC),
        revision=0,
        order_id=placed.order_id,
        store_id=placed.store_id,
        visitor_id=placed.visitor_id,
        placed_at=placed.occurred_at,
        rule="last_click",
        affiliate_id=affiliate,
        click_id=click_id or f"click-{placed.order_id}",
        click_at=placed.occurred_at - timedelta(minutes=5),
        window_start=placed.occurred_at - timedelta(days=30),
        window_end=placed.occurred_at,
        order=placed,
    )
