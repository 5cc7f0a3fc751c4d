"""Reconciliation rules in the pure core: every day's estimate is explained by what became of
its orders (``unexplained`` is zero when the books agree), the cancelled commission lands on
the day of the cancellation, and postings are read with their sign."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.commission import (
    Adjustment,
    AdjustmentAction,
    AdjustmentLine,
    AdjustmentReason,
    LineItem,
    OrderFacts,
    OrderStatus,
    compute_order,
)
from services.commission.core.ledger import TxnKind
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp
from services.commission.core.reconciliation import DayFigures, Reconciliation
from shared.money import ZERO

D = Decimal
T0 = datetime(2026, 3, 1, tzinfo=UTC)
START, END = T0 + timedelta(days=1), T0 + timedelta(days=8)
PROGRAM = ProgramHistory((ProgramOp(OpKind.JOIN, T0 - timedelta(days=30), rate=D("0.1")),))


def order(n: int, placed: timedelta, status: OrderStatus, done: timedelta | None) -> OrderFacts:
    return OrderFacts(
        order_id=f"o{n}",
        store_id="s",
        currency="USD",
        placed_at=T0 + placed,
        items=(LineItem("p", None, 1, D("10.00") + n, D("0")),),
        status=status,
        status_at=T0 + done if done is not None else None,
        affiliate_id="a",
    )


orders = st.lists(
    st.tuples(
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=9)),
        st.sampled_from(list(OrderStatus)),
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    ),
    max_size=25,
)


class TestUnexplained:
    def test_is_the_estimate_less_what_became_of_it(self) -> None:
        f = DayFigures(
            estimated_at_placement=D("10"),
            day_orders_payable=D("4"),
            day_orders_cancelled=D("1"),
            day_orders_open=D("2"),
        )
        assert f.unexplained == D("3")

    @given(orders)
    def test_every_day_agrees_whatever_became_of_the_orders(
        self, raw: list[tuple[timedelta, OrderStatus, timedelta]]
    ) -> None:
        books = Reconciliation(START, END)
        facts = [
            order(n, placed, status, None if status is OrderStatus.PLACED else placed + later)
            for n, (placed, status, later) in enumerate(raw)
        ]
        for f in facts:
            books.add_order(f, PROGRAM)
        assert all(figures.unexplained == ZERO for _, _, figures in books.rows())
        # the estimate is the gross commission of the orders placed in the range, as placed
        gross = sum(
            (
                compute_order(replace(f, status=OrderStatus.PLACED), PROGRAM).commission
                for f in facts
                if START <= f.placed_at < END
            ),
            ZERO,
        )
        assert sum((fig.estimated_at_placement for *_, fig in books.rows()), ZERO) == gross


class TestDays:
    def test_a_cancellation_counts_on_its_own_day_and_on_the_placement_day(self) -> None:
        books = Reconciliation(START, END)
        books.add_order(
            order(0, timedelta(days=2), OrderStatus.CANCELLED, timedelta(days=4)), PROGRAM
        )
        rows = {day: f for day, _, f in books.rows()}
        assert rows["2026-03-03"].estimated_at_placement == D("1.00")
        assert rows["2026-03-03"].day_orders_cancelled == D("1.00")
        assert rows["2026-03-05"].cancelled == D("1.00")
        assert rows["2026-03-05"].estimated_at_placement == ZERO

    def test_an_order_placed_before_the_range_counts_only_its_cancellation(self) -> None:
        books = Reconciliation(START, END)
        books.add_order(order(0, timedelta(0), OrderStatus.CANCELLED, timedelta(days=3)), PROGRAM)
        assert [(day, f.cancelled, f.estimated_at_placement) for day, _, f in books.rows()] == [
            ("2026-03-04", D("1.00"), ZERO)
        ]

    def test_an_unattributed_order_counts_nowhere(self) -> None:
        books = Reconciliation(START, END)
        f = order(0, timedelta(days=2), OrderStatus.COMPLETED, timedelta(days=3))
        books.add_order(replace(f, affiliate_id=None), PROGRAM)
        assert books.rows() == []

    def test_postings_become_payable_or_reversed_with_their_sign(self) -> None:
        books = Reconciliation(START, END)
        books.add_postings("2026-03-02", "USD", TxnKind.COMMISSION.value, D("5.00"))
        books.add_postings("2026-03-02", "USD", TxnKind.REVERSAL.value, D("-1.25"))
        (row,) = books.rows()
        assert row[:2] == ("2026-03-02", "USD")
        assert (row[2].became_payable, row[2].reversed) == (D("5.00"), D("1.25"))


class TestAdjustments:
    @given(orders, st.lists(st.sampled_from(list(AdjustmentAction)), max_size=4))
    def test_the_estimate_is_explained_including_adjustments(
        self, raw: list[tuple[timedelta, OrderStatus, timedelta]], actions: list[AdjustmentAction]
    ) -> None:
        books = Reconciliation(START, END)
        adjusted = ZERO
        for n, (placed, status, later) in enumerate(raw):
            f = order(n, placed, status, None if status is OrderStatus.PLACED else placed + later)
            adjustments = tuple(
                Adjustment(
                    k,
                    f.placed_at + timedelta(hours=k),
                    a,
                    AdjustmentReason.OTHER,
                    (AdjustmentLine("p", D("5.00")),) if a is AdjustmentAction.AMEND else (),
                )
                for k, a in enumerate(actions, 1)
            )
            f = replace(f, adjustments=adjustments)
            books.add_order(f, PROGRAM)
            if START <= f.placed_at < END and status is not OrderStatus.CANCELLED:
                as_placed = replace(f, status=OrderStatus.PLACED)
                adjusted += (
                    compute_order(as_placed, PROGRAM, adjustments=()).commission
                    - compute_order(as_placed, PROGRAM).commission
                )
        assert all(figures.unexplained == ZERO for _, _, figures in books.rows())
        assert sum((fig.day_orders_adjusted for *_, fig in books.rows()), ZERO) == adjusted

    def test_adjustment_postings_are_apart_with_their_sign(self) -> None:
        books = Reconciliation(START, END)
        books.add_postings("2026-03-02", "USD", TxnKind.ADJUSTMENT.value, D("-2.00"))
        books.add_postings("2026-03-02", "USD", TxnKind.ADJUSTMENT.value, D("0.50"))
        (row,) = books.rows()
        assert (row[2].adjusted, row[2].reversed) == (D("-1.50"), ZERO)
