"""Statement rules in the pure core: what a period is, and the totals' sign (the store's side
of a commission is negative: it owes; a statement shows what it owes as positive)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.errors import InvalidPeriod
from services.commission.core.ledger import TxnKind
from services.commission.core.statements import period_range, statement_totals
from shared.money import from_minor

D = Decimal


class TestPeriod:
    def test_a_month_is_its_first_instant_to_the_next_month(self) -> None:
        assert period_range("2026-03") == (
            datetime(2026, 3, 1, tzinfo=UTC),
            datetime(2026, 4, 1, tzinfo=UTC),
        )
        assert period_range("2026-12")[1] == datetime(2027, 1, 1, tzinfo=UTC)

    @pytest.mark.parametrize("bad", ["2026-13", "1999-12", "2101-01", "2026-3", "２０２６-03", ""])
    def test_anything_else_is_invalid(self, bad: str) -> None:
        with pytest.raises(InvalidPeriod) as err:
            period_range(bad)
        assert (err.value.status_code, err.value.code) == (422, "invalid_period")
        assert err.value.details == {"period": bad}


class TestTotals:
    def test_commission_owed_and_reversed_are_shown_positive(self) -> None:
        postings = [
            ("USD", TxnKind.COMMISSION.value, 3, -1500),  # the store owes 15.00
            ("USD", TxnKind.REVERSAL.value, 1, 250),  # and 2.50 less
            ("EUR", TxnKind.COMMISSION.value, 1, -99),
        ]
        eur, usd = statement_totals(postings)
        assert (usd.currency, usd.orders_charged, usd.commission) == ("USD", 3, D("15.00"))
        assert (usd.refunds, usd.reversed, usd.net) == (1, D("2.50"), D("12.50"))
        assert (eur.currency, eur.commission, eur.refunds, eur.net) == (
            "EUR",
            D("0.99"),
            0,
            D("0.99"),
        )

    def test_kinds_that_do_not_post_on_a_store_are_left_out(self) -> None:
        (usd,) = statement_totals(
            [("USD", TxnKind.PAYOUT.value, 1, 500), ("USD", "commission", 1, -1)]
        )
        assert (usd.commission, usd.reversed) == (D("0.01"), D("0.00"))

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["USD", "EUR", "JPY"]),
                st.sampled_from([TxnKind.COMMISSION.value, TxnKind.REVERSAL.value]),
                st.integers(min_value=1, max_value=50),
                st.integers(min_value=0, max_value=10**9),
            ),
            max_size=30,
        )
    )
    def test_totals_against_a_brute_force_sum(self, raw: list[tuple[str, str, int, int]]) -> None:
        # as posted: a commission is negative on the store's account, a reversal positive
        postings = [(c, k, n, -m if k == "commission" else m) for c, k, n, m in raw]
        totals = {t.currency: t for t in statement_totals(postings)}
        assert list(totals) == sorted(totals)
        for currency, t in totals.items():
            mine = [p for p in raw if p[0] == currency]
            charged = sum(m for _, k, _, m in mine if k == "commission")
            given_back = sum(m for _, k, _, m in mine if k == "reversal")
            assert t.commission == from_minor(charged, currency) >= 0
            assert t.reversed == from_minor(given_back, currency) >= 0
            assert t.net == from_minor(charged - given_back, currency)
            assert t.orders_charged == sum(n for _, k, n, _ in mine if k == "commission")
            assert t.refunds == sum(n for _, k, n, _ in mine if k == "reversal")
