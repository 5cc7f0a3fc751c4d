"""A batch's terminal statuses and decisions are one statement each (the settlement rollup's
trigger fires once per statement), with the outcome of applying the rows one by one: the
first terminal status wins, the first row of the highest revision applies, nothing applies to
an order already posted (issue 20, item 4)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.commission import OrderStatus
from services.commission.orders.repository import OrderRepository
from shared.db import make_engine, make_sessions

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _decision(order: str, rev: int, affiliate: str) -> dict[str, Any]:
    return {
        "b_store": "s1",
        "b_oid": order,
        "b_rev": rev,
        "b_aff": affiliate,
        "b_click": f"c-{affiliate}",
        "b_click_at": T0,
        "b_sub": None,
        "b_expl": {"winner": affiliate},
    }


@pytest.fixture
async def session(database_url: str) -> AsyncIterator[AsyncSession]:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


class TestOneStatementPerKindOfFact:
    async def test_the_first_terminal_status_of_a_batch_wins_and_a_later_batch_changes_nothing(
        self, session: AsyncSession
    ) -> None:
        repo = OrderRepository(session)
        await repo.ensure_orders([("s1", "o1"), ("s1", "o2")])
        day = timedelta(days=1)
        await repo.set_terminal_many(
            [
                (("s1", "o1"), OrderStatus.CANCELLED, T0),
                (("s1", "o1"), OrderStatus.COMPLETED, T0 + day),
                (("s1", "o2"), OrderStatus.COMPLETED, T0 + 2 * day),
            ]
        )
        await repo.set_terminal_many([(("s1", "o2"), OrderStatus.CANCELLED, T0)])
        rows = await session.execute(
            text("SELECT order_id, status, status_at FROM commission.orders ORDER BY order_id")
        )
        assert [tuple(r) for r in rows] == [
            ("o1", "cancelled", T0),
            ("o2", "completed", T0 + 2 * day),
        ]

    async def test_the_first_row_of_the_highest_revision_applies_unless_the_order_is_posted(
        self, session: AsyncSession
    ) -> None:
        repo = OrderRepository(session)
        await repo.ensure_orders([("s1", "o1"), ("s1", "o2"), ("s1", "o3")])
        await session.execute(
            text(
                "INSERT INTO commission.ledger_transactions (key, kind, order_id,"
                " store_id, currency, occurred_at)"
                " VALUES ('commission:s1:o3', 'commission', 'o3', 's1', 'USD', now())"
            )
        )
        await repo.set_attribution_many(
            [
                _decision("o1", 2, "a-two"),
                _decision("o1", 3, "a-three"),
                _decision("o1", 3, "a-three-again"),
                _decision("o1", 1, "a-one"),
                _decision("o2", 0, "a-zero"),
                _decision("o3", 5, "a-posted"),
            ]
        )
        rows = await session.execute(
            text(
                "SELECT order_id, attribution_revision, affiliate_id, click_id,"
                " attribution FROM commission.orders ORDER BY order_id"
            )
        )
        assert [tuple(r) for r in rows] == [
            ("o1", 3, "a-three", "c-a-three", {"winner": "a-three"}),
            ("o2", 0, "a-zero", "c-a-zero", {"winner": "a-zero"}),
            ("o3", -1, None, None, None),
        ]


class TestOneWriteOfANewOrder:
    async def test_a_new_row_takes_placement_and_decision_a_held_row_only_a_missing_placement(
        self, session: AsyncSession
    ) -> None:
        """The rows' one statement (issue 20, item 1): a new order's row is inserted with its
        placement and decision; a held row gets a placement only if it has none, never a
        decision (that one goes through set_attribution_many's rules)."""
        repo = OrderRepository(session)
        await repo.ensure_orders([("s1", "held"), ("s1", "placed")])
        await repo.upsert_placed_many([_placed("placed", "EUR")])
        written = await repo.ensure_orders(
            [("s1", "new"), ("s1", "held"), ("s1", "placed"), ("s1", "bare")],
            [_placed("new", "USD"), _placed("held", "USD"), _placed("placed", "USD")],
            {
                ("s1", "new"): _decision("new", 0, "a-new"),
                ("s1", "held"): _decision("held", 0, "a-held"),
            },
        )
        assert written == {("s1", "new"): True, ("s1", "held"): False, ("s1", "bare"): True}
        rows = await session.execute(
            text(
                "SELECT order_id, currency, attribution_revision, affiliate_id, attribution"
                " FROM commission.orders ORDER BY order_id"
            )
        )
        assert [tuple(r) for r in rows] == [
            ("bare", None, -1, None, None),
            ("held", "USD", -1, None, None),
            ("new", "USD", 0, "a-new", {"winner": "a-new"}),
            ("placed", "EUR", -1, None, None),
        ]


def _placed(order: str, currency: str) -> dict[str, Any]:
    return {
        "store_id": "s1",
        "order_id": order,
        "currency": currency,
        "placed_at": T0,
        "items": [
            {
                "product_id": "p",
                "category_id": None,
                "title": "",
                "quantity": 1,
                "unit_price": "1.00",
                "shipping_fee": "0",
            }
        ],
    }
