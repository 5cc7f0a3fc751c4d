"""Payout runs in the pure core: the payable decision, pay or carry, conversion and its
rounding, and the payout's ledger transaction, against brute-force references."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.errors import InvalidFxRate
from services.commission.core.holds import Hold, HoldStatus
from services.commission.core.ledger import affiliate_account, balances, payout_account
from services.commission.core.payouts import (
    Balance,
    Carry,
    CarryWhy,
    Earning,
    HeldWhy,
    PayableRule,
    PayeeTerms,
    PayoutPlan,
    balance,
    decide,
    fx_account,
    held_why,
    parse_rates,
    payout_txn,
)
from shared.money import minor_digits

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CURRENCIES = ("EUR", "USD", "JPY", "KWD")  # 2, 2, 0 and 3 decimals


def money(currency: str, lo: int = -50_000, hi: int = 500_000) -> st.SearchStrategy[Decimal]:
    return st.integers(lo, hi).map(lambda n: Decimal(n).scaleb(-minor_digits(currency)))


earnings = st.lists(
    st.sampled_from(CURRENCIES).flatmap(
        lambda c: st.builds(
            Earning,
            st.just(c),
            money(c),
            st.one_of(
                st.none(),
                st.integers(0, 90 * 24).map(lambda h: NOW - timedelta(hours=h)),
            ),
        )
    ),
    max_size=30,
)
rates = st.dictionaries(
    st.tuples(st.sampled_from(CURRENCIES), st.sampled_from(CURRENCIES)).filter(
        lambda p: p[0] != p[1]
    ),
    st.integers(1, 10**8).map(lambda n: Decimal(n).scaleb(-4)),
    max_size=12,
)


def half_up(x: Fraction) -> int:
    """Round a non-negative fraction half-up to an integer (brute force, no Decimal)."""
    return int((x + Fraction(1, 2)).__floor__())


class TestPayableDecision:
    def test_an_order_completed_exactly_the_holding_period_ago_is_payable(self) -> None:
        rule = PayableRule(timedelta(days=14))
        e = Earning("USD", Decimal("1.00"), NOW - timedelta(days=14))
        assert held_why(e, NOW, rule) is None
        later = Earning("USD", Decimal("1.00"), NOW - timedelta(days=14) + timedelta(seconds=1))
        assert held_why(later, NOW, rule) is HeldWhy.HOLDING_PERIOD

    def test_a_hold_then_the_lock_then_the_holding_period_decide(self) -> None:
        """One rule for every payout: an active hold on the order's store (or every store)
        holds it; with payouts needing the lock, an order not yet locked waits (its locking
        date counts as locked); else the holding period."""
        done = NOW - timedelta(days=30)
        hold = Hold(1, "aff-1", "s-1", HoldStatus.ACTIVE, NOW - timedelta(days=1))
        everywhere = Hold(2, "aff-1", None, HoldStatus.ACTIVE, NOW)
        released = Hold(3, "aff-1", None, HoldStatus.RELEASED, NOW)
        rule = PayableRule(timedelta(days=14), holds=(hold,), affiliate_id="aff-1")
        e = Earning("USD", Decimal("1.00"), done, "s-1", done, locks_at=NOW)
        other = Earning("USD", Decimal("1.00"), done, "s-2", done, locks_at=NOW)
        assert held_why(e, NOW, rule) is HeldWhy.HELD
        assert held_why(other, NOW, rule) is None
        rule_all = PayableRule(timedelta(days=14), holds=(everywhere,), affiliate_id="aff-1")
        assert held_why(other, NOW, rule_all) is HeldWhy.HELD
        rule_released = PayableRule(timedelta(days=14), holds=(released,), affiliate_id="aff-1")
        assert held_why(other, NOW, rule_released) is None
        locked = PayableRule(timedelta(days=14), requires_lock=True)
        assert held_why(other, NOW, locked) is None  # locks at NOW: locked
        later = Earning("USD", Decimal("1.00"), done, "s-2", done, NOW + timedelta(seconds=1))
        assert held_why(later, NOW, locked) is HeldWhy.NOT_LOCKED
        assert held_why(later, NOW, PayableRule(timedelta(days=14))) is None

    @given(earnings, st.dictionaries(st.sampled_from(CURRENCIES), money("JPY", -9000, 0)))
    def test_the_balance_is_the_payable_earnings_less_what_was_paid(
        self, items: list[Earning], paid: dict[str, Decimal]
    ) -> None:
        rule = PayableRule(timedelta(days=7))
        got = balance(items, paid, NOW, rule)
        for currency in CURRENCIES:
            payable = sum(
                (
                    e.amount
                    for e in items
                    if e.currency == currency
                    and e.completed_at is not None
                    and NOW - e.completed_at >= timedelta(days=7)
                ),
                Decimal(0),
            ) + paid.get(currency, Decimal(0))
            held = sum(
                (e.amount for e in items if e.currency == currency),
                Decimal(0),
            ) - (payable - paid.get(currency, Decimal(0)))
            assert got.payable.get(currency, Decimal(0)) == payable
            assert got.held.get("holding_period", {}).get(currency, Decimal(0)) == held


class TestPayOrCarry:
    def test_no_settings_carries_with_why(self) -> None:
        bal = Balance({"USD": Decimal("50")})
        got = decide(bal, None, Decimal("10"), {})
        assert isinstance(got, Carry)
        assert got.why is CarryWhy.NO_PAYOUT_SETTINGS

    def test_nothing_at_all_is_neither_paid_nor_carried(self) -> None:
        assert decide(Balance(), PayeeTerms("USD", Decimal(0)), Decimal("10"), {}) is None

    def test_a_missing_rate_is_never_defaulted(self) -> None:
        bal = Balance({"EUR": Decimal("50"), "USD": Decimal("5")})
        got = decide(bal, PayeeTerms("USD", Decimal(0)), Decimal("10"), {})
        assert isinstance(got, Carry)
        assert (got.why, got.missing_rates) == (CarryWhy.FX_RATE_MISSING, ("EUR/USD",))

    def test_the_platform_minimum_wins_over_a_lower_own_minimum(self) -> None:
        bal = Balance({"USD": Decimal("9.99")})
        got = decide(bal, PayeeTerms("USD", Decimal("1.00")), Decimal("10.00"), {})
        assert isinstance(got, Carry)
        assert (got.why, got.balance, got.minimum) == (
            CarryWhy.BELOW_MINIMUM,
            Decimal("9.99"),
            Decimal("10.00"),
        )

    @given(
        st.dictionaries(st.sampled_from(CURRENCIES), money("KWD")),
        st.sampled_from(CURRENCIES),
        money("JPY", 0, 200),
        rates,
    )
    def test_pay_or_carry_matches_a_brute_force_reference(
        self,
        payable: dict[str, Decimal],
        target: str,
        minimum: Decimal,
        fx: dict[tuple[str, str], Decimal],
    ) -> None:
        payable = {
            c: v.quantize(Decimal(1).scaleb(-minor_digits(c)), rounding="ROUND_DOWN")
            for c, v in payable.items()
        }
        bal = Balance({c: v for c, v in payable.items() if v})
        got = decide(bal, PayeeTerms(target, minimum), Decimal("10"), fx)
        if bal.empty:
            assert got is None
            return
        positive = {c: v for c, v in payable.items() if v > 0}
        if any(c != target and (c, target) not in fx for c in positive):
            assert isinstance(got, Carry)
            assert got.why is CarryWhy.FX_RATE_MISSING
            return
        # the reference: exact fractions, integer minor units, half-up by hand
        digits = minor_digits(target)
        total_minor = 0
        for c, v in positive.items():
            exact = Fraction(v) * (Fraction(fx[(c, target)]) if c != target else 1)
            total_minor += half_up(exact * 10**digits)
        total = Decimal(total_minor).scaleb(-digits)
        if not positive:
            assert isinstance(got, Carry)
            assert got.why is CarryWhy.NOTHING_PAYABLE
        elif total < max(minimum, Decimal("10")):
            assert isinstance(got, Carry)
            assert (got.why, got.balance) == (CarryWhy.BELOW_MINIMUM, total)
        else:
            assert isinstance(got, PayoutPlan)
            assert got.amount == total
            assert got.source_amounts == positive
            assert {(x.base, x.quote): x.rate for x in got.conversions} == {
                (c, target): fx[(c, target)] for c in positive if c != target
            }


class TestPayoutTransaction:
    @given(
        st.dictionaries(st.sampled_from(CURRENCIES), money("KWD", 1, 10**7), min_size=1),
        st.sampled_from(CURRENCIES),
        st.integers(1, 10**8).map(lambda n: Decimal(n).scaleb(-4)),
    )
    def test_every_currency_of_the_payout_sums_to_zero(
        self, payable: dict[str, Decimal], target: str, rate: Decimal
    ) -> None:
        payable = {
            c: max(
                v.quantize(Decimal(1).scaleb(-minor_digits(c)), rounding="ROUND_DOWN"),
                Decimal(1),
            )
            for c, v in payable.items()
        }
        fx = {(c, target): rate for c in payable if c != target}
        plan = decide(Balance(payable), PayeeTerms(target, Decimal(0)), Decimal(0), fx)
        assert isinstance(plan, PayoutPlan)
        txn = payout_txn("payout:run:1:a", "a", plan)
        sums: dict[str, Decimal] = {}
        for p in txn.postings:
            c = p.currency or txn.currency
            sums[c] = sums.get(c, Decimal(0)) + p.amount
        assert all(v == 0 for v in sums.values())
        by = balances([txn])
        for c, v in payable.items():
            assert by[(affiliate_account("a"), c)] == -v
        assert by[(payout_account(), target)] == plan.amount
        for x in plan.conversions:
            assert by[(fx_account(x.base, x.quote), x.base)] == x.base_amount
            assert by[(fx_account(x.base, x.quote), x.quote)] == -x.quote_amount


class TestRates:
    def test_a_pair_is_two_distinct_currencies(self) -> None:
        assert parse_rates({"EUR/USD": Decimal("1.0843")}) == {("EUR", "USD"): Decimal("1.0843")}
        for bad in ("EUR/EUR", "EURUSD", "EUR/XYZ", "eur/usd"):
            with pytest.raises(InvalidFxRate):
                parse_rates({bad: Decimal("1")})

    @pytest.mark.parametrize("rate", ["0", "-1", "1.00000000001", "NaN"])
    def test_a_rate_is_positive_and_at_most_ten_decimals(self, rate: str) -> None:
        with pytest.raises(InvalidFxRate):
            parse_rates({"EUR/USD": Decimal(rate)})
