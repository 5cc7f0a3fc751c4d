"""Sums at the edge's bounds: every order is at most 10^12 major units, but their sums are not
bounded, so every stored sum and every SQL ``sum()`` must hold more than a signed 64-bit
integer (issue 19, defect 10)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text

from services.commission.core.ledger import affiliate_account, commission_key, store_account
from services.commission.core.program import MAX_RATE
from services.commission.orders.verify import verify
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.events import MAX_ORDER_TOTAL
from shared.money import from_minor, minor_digits
from tests.integration.harness import admin, new_affiliate, new_store, running

pytestmark = pytest.mark.integration

#: a currency with the finest minor unit (4 digits), where a maximal order is 10^16 minor units
CURRENCY = "CLF"
#: maximal orders of one affiliate: their commission at the highest rate overflows a BIGINT
ORDERS = 1_100
SALES_MINOR = MAX_ORDER_TOTAL * 10 ** minor_digits(CURRENCY)
COMMISSION_MINOR = int(SALES_MINOR * MAX_RATE)
PLACED, COMPLETED = datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 15, tzinfo=UTC)

#: the orders as the consumer keeps them, completed and attributed; one line each (reports)
ORDERS_SQL = """
INSERT INTO commission.orders (store_id, order_id, currency, placed_at, items, status,
    status_at, attribution_revision, affiliate_id, chargeable, sales_minor, commission_minor,
    reversed_minor)
SELECT :store, 'o' || g, :currency, CAST(:placed AS timestamptz), CAST(:items AS jsonb),
    'completed', CAST(:completed AS timestamptz), 0, :affiliate, true, :sales, :commission, 0
FROM generate_series(1, :n) AS g
"""
LINES_SQL = """
INSERT INTO commission.order_lines (store_id, order_id, line_no, product_id, title, quantity,
    currency, placed_at, affiliate_id, chargeable, status, sales_minor, commission_minor,
    reversed_minor)
SELECT :store, 'o' || g, 0, 'p1', 'p1', 1, :currency, CAST(:placed AS timestamptz),
    :affiliate, true, 'completed', :sales, :commission, 0
FROM generate_series(1, :n) AS g
"""
#: each order's commission posted to the ledger, as the consumer posts it
TXNS_SQL = """
INSERT INTO commission.ledger_transactions (key, kind, order_id, store_id, affiliate_id,
    currency, occurred_at)
SELECT :key_prefix || 'o' || g, 'commission', 'o' || g, :store, :affiliate, :currency,
    CAST(:completed AS timestamptz)
FROM generate_series(1, :n) AS g
"""
POSTINGS_SQL = """
INSERT INTO commission.ledger_postings (txn_id, account, currency, amount_minor)
SELECT t.id, side.account, :currency, side.amount
FROM commission.ledger_transactions AS t
CROSS JOIN (VALUES (:store_account, -CAST(:commission AS bigint)),
                   (:affiliate_account, CAST(:commission AS bigint))) AS side(account, amount)
WHERE t.store_id = :store AND t.kind = 'commission'
"""


async def maximal_orders(settings: Settings, store_id: str, affiliate_id: str) -> None:
    """``ORDERS`` maximal orders of one affiliate, completed and posted: four statements."""
    params = {
        "store": store_id,
        "affiliate": affiliate_id,
        "currency": CURRENCY,
        "placed": PLACED,
        "completed": COMPLETED,
        "items": (
            '[{"product_id": "p1", "category_id": null, "title": "p1", "quantity": 1,'
            ' "unit_price": "1000000000000", "shipping_fee": "0"}]'
        ),
        "sales": SALES_MINOR,
        "commission": COMMISSION_MINOR,
        "n": ORDERS,
        "key_prefix": commission_key(store_id, ""),
        "store_account": store_account(store_id),
        "affiliate_account": affiliate_account(affiliate_id),
    }
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            for sql in (ORDERS_SQL, LINES_SQL, TXNS_SQL, POSTINGS_SQL):
                await session.execute(text(sql), params)
    finally:
        await engine.dispose()


class TestSumsPastSixtyFourBits:
    async def test_an_affiliate_with_1100_maximal_orders_is_paid_the_exact_sum(
        self, settings: Settings
    ) -> None:
        u = uuid.uuid4().hex[:8]
        total_commission = from_minor(ORDERS * COMMISSION_MINOR, CURRENCY)
        total_sales = from_minor(ORDERS * SALES_MINOR, CURRENCY)
        assert ORDERS * COMMISSION_MINOR > 2**63 - 1, "the sum must overflow a BIGINT"
        async with running(settings) as svc:
            store = await new_store(svc, settings, f"s-{u}", products=("p1",), rate="0.9")
            affiliate = f"aff-{u}"
            await new_affiliate(svc, settings, affiliate)
            await maximal_orders(settings, store.store_id, affiliate)
            span = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}

            for subject in (f"stores/{store.store_id}", f"affiliates/{affiliate}"):
                settled = await svc.commission.get(
                    f"/v1/settlements/{subject}", params=span, headers=admin(settings)
                )
                assert settled.status_code == 200, settled.text
                (totals,) = settled.json()["totals"]
                assert totals["currency"] == CURRENCY
                assert totals["orders_completed"] == ORDERS
                assert Decimal(totals["affiliate_sales"]) == total_sales
                assert Decimal(totals["commission_payable"]) == total_commission
                assert Decimal(totals["net"]) == total_commission

            statement = await svc.commission.get(
                f"/v1/statements/{store.store_id}/2026-01", headers=admin(settings)
            )
            assert statement.status_code == 200, statement.text
            (charged,) = statement.json()["totals"]
            assert charged["orders_charged"] == ORDERS
            assert Decimal(charged["commission"]) == total_commission
            assert Decimal(charged["net"]) == total_commission

            report = await svc.commission.get(
                f"/v1/stores/{store.store_id}/reports/orders",
                params={"from": "2026-01-01", "to": "2026-01-31", "granularity": "month"},
                headers=admin(settings),
            )
            assert report.status_code == 200, report.text
            reported = [t for p in report.json()["series"] for t in p["totals"]]
            assert sum((Decimal(t["affiliate_sales"]) for t in reported), Decimal(0)) == (
                total_sales
            )
            assert sum((Decimal(t["commission_payable"]) for t in reported), Decimal(0)) == (
                total_commission
            )

            paid = await svc.commission.post(
                "/v1/payouts",
                json={"affiliate_id": affiliate, "up_to": "2026-06-01T00:00:00Z"},
                headers={**admin(settings), "Idempotency-Key": f"pay-{u}"},
            )
            assert paid.status_code == 201, paid.text
            assert Decimal(paid.json()["amounts"][CURRENCY]) == total_commission
            nothing = await svc.commission.post(
                "/v1/payouts",
                json={"affiliate_id": affiliate, "up_to": "2026-06-01T00:00:00Z"},
                headers={**admin(settings), "Idempotency-Key": f"pay-again-{u}"},
            )
            assert nothing.status_code == 409, nothing.text

        engine = make_engine(settings.database_url, pool_size=1)
        try:
            async with make_sessions(engine)() as session, session.begin():
                books = await verify(session)
            # the balances are sums past 64 bits too: every transaction and currency balances
            assert books.transactions_unbalanced == []
            assert books.currencies_unbalanced == {}
        finally:
            await engine.dispose()
