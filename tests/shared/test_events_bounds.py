"""Amounts the ledger and the reports cannot hold are refused at the edge (the tracker answers
422), never left to stop a consumer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.events import ProductUpserted, storefront_event_adapter

PRODUCT = {
    "event_id": "cat-1",
    "type": "product_upserted",
    "occurred_at": datetime(2026, 11, 1, tzinfo=UTC).isoformat(),
    "store_id": "s1",
    "product_id": "p1",
    "title": "Lamp",
    "currency": "USD",
}


@pytest.mark.parametrize("price", ["19.999", "1e30", "1000000000.01", "-1"])
def test_a_product_price_that_does_not_fit_is_refused(price: str) -> None:
    with pytest.raises(ValidationError):
        storefront_event_adapter.validate_python({**PRODUCT, "price": price})


@pytest.mark.parametrize(("price", "currency"), [("19.99", "USD"), ("1999", "JPY"), ("0", "EUR")])
def test_prices_in_the_currency_s_minor_unit_pass(price: str, currency: str) -> None:
    event = storefront_event_adapter.validate_python(
        {**PRODUCT, "price": price, "currency": currency}
    )
    assert isinstance(event, ProductUpserted)
    assert str(event.price) == price


class TestEventTimesStayComputable:
    """An event time must leave room for the arithmetic around it (windows, holds, report
    ranges): outside years 1000–8999 it is refused by the schema, so a consumer dead-letters
    the message itself instead of failing later on a batch that no longer holds it."""

    @pytest.mark.parametrize(
        "at",
        [
            "0001-01-01T00:00:00Z",
            "0999-12-31T23:59:59Z",
            "9000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ],
    )
    def test_a_time_outside_the_computable_years_is_refused(self, at: str) -> None:
        with pytest.raises(ValidationError) as refused:
            storefront_event_adapter.validate_python(
                {**PRODUCT, "price": "1.00", "occurred_at": at}
            )
        assert [e["type"] for e in refused.value.errors()] == ["datetime_out_of_range"]

    @pytest.mark.parametrize("at", ["1000-01-01T00:00:00Z", "8999-12-31T23:59:59Z"])
    def test_the_first_and_last_computable_instants_pass(self, at: str) -> None:
        event = storefront_event_adapter.validate_python(
            {**PRODUCT, "price": "1.00", "occurred_at": at}
        )
        assert event.occurred_at == datetime.fromisoformat(at)
