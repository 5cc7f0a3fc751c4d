"""The per-order cap in an order's commission and its ledger postings (docs/incentives.md,
"Caps"): the cap in force at placement limits what the order pays; a refund of a capped order
reverses the refunded share of what was paid, and the ledger posts exactly that."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from services.commission.core.commission import (
    LineItem,
    OrderFacts,
    OrderStatus,
    Refund,
    RefundItem,
    compute_order,
)
from services.commission.core.incentives import CapClaim, Caps, month_allowance, share_caps
from services.commission.core.ledger import TxnKind, balances, ledger_delta
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp

T0 = datetime(2026, 3, 1, tzinfo=UTC)
C = Decimal("0.01")


def half_up(x: Fraction) -> Decimal:
    """``x`` to the cent, half away from zero (x ≥ 0), by exact arithmetic."""
    cents = x * 100
    whole = cents.numerator // cents.denominator
    if cents - whole >= Fraction(1, 2):
        whole += 1
    return Decimal(whole) * C


def capped_program(cap: Decimal | None, later_cap: Decimal | None = None) -> ProgramHistory:
    """10% from T0, ``cap`` per order in USD from T0, ``later_cap`` from T0 + 10 days."""
    ops = [ProgramOp(OpKind.JOIN, T0, rate=Decimal("0.10"))]
    if cap is not None:
        ops.append(ProgramOp(OpKind.CAPS, T0, incentive=Caps({"USD": cap})))
    if later_cap is not None:
        ops.append(
            ProgramOp(OpKind.CAPS, T0 + timedelta(days=10), incentive=Caps({"USD": later_cap}))
        )
    return ProgramHistory(tuple(ops))


def order(
    items: tuple[LineItem, ...], refunds: tuple[Refund, ...] = (), placed_day: int = 1
) -> OrderFacts:
    placed = T0 + timedelta(days=placed_day)
    return OrderFacts(
        "o1",
        "s1",
        "USD",
        placed,
        items,
        OrderStatus.COMPLETED,
        placed + timedelta(hours=1),
        affiliate_id="a1",
        refunds=refunds,
    )


def refund(refund_id: str, product: str, amount: str, hour: int = 2) -> Refund:
    return Refund(
        refund_id, T0 + timedelta(days=1, hours=hour), (RefundItem(product, Decimal(amount)),)
    )


def post_all(facts: OrderFacts, program: ProgramHistory) -> dict[str, Decimal]:
    posted: dict[str, Decimal] = {}
    for txn in ledger_delta(facts, program, posted):
        assert sum(p.amount for p in txn.postings) == 0
        posted[txn.key] = txn.amount
    assert ledger_delta(facts, program, posted) == []
    return posted


class TestPerOrderCapInTheCommission:
    def test_the_cap_in_force_at_placement_limits_what_the_order_pays(self) -> None:
        facts = order((LineItem("p1", None, 1, Decimal("100.00"), Decimal(0)),))
        got = compute_order(facts, capped_program(Decimal("5.00")))
        assert (got.uncapped, got.commission, got.capped) == (
            Decimal("10.00"),
            Decimal("5.00"),
            Decimal("5.00"),
        )
        assert got.items[0].commission == Decimal("10.00")  # the line shows it before the cap
        assert got.payable == Decimal("5.00")

    def test_a_cap_set_after_placement_does_not_touch_the_order(self) -> None:
        facts = order((LineItem("p1", None, 1, Decimal("100.00"), Decimal(0)),))
        got = compute_order(facts, capped_program(None, later_cap=Decimal("1.00")))
        assert (got.commission, got.capped) == (Decimal("10.00"), Decimal(0))
        later = order(facts.items, placed_day=11)
        assert compute_order(later, capped_program(None, Decimal("1.00"))).commission == Decimal(
            "1.00"
        )

    def test_a_cap_that_does_not_bind_changes_nothing(self) -> None:
        facts = order(
            (LineItem("p1", None, 1, Decimal("30.00"), Decimal(0)),),
            (refund("r1", "p1", "10.00"),),
        )
        capped = compute_order(facts, capped_program(Decimal("5.00")))
        free = compute_order(facts, capped_program(None))
        assert (capped.commission, capped.reversed, capped.capped) == (
            free.commission,
            free.reversed,
            Decimal(0),
        )

    def test_a_refund_reverses_the_refunded_share_of_what_was_paid(self) -> None:
        # 10.00 capped to 5.00; a refund of 33.30 of sales reverses 3.33 uncapped:
        # 5.00 × 3.33 / 10.00 = 1.665 → 1.67
        facts = order(
            (LineItem("p1", None, 1, Decimal("100.00"), Decimal(0)),),
            (refund("r1", "p1", "33.30"),),
        )
        got = compute_order(facts, capped_program(Decimal("5.00")))
        assert got.reversed == Decimal("1.67")
        assert got.net == Decimal("3.33")
        posted = post_all(facts, capped_program(Decimal("5.00")))
        assert posted == {
            "commission:s1:o1": Decimal("5.00"),
            "reversal:s1:o1/r1": Decimal("-1.67"),
        }

    def test_a_full_refund_reverses_exactly_what_was_paid(self) -> None:
        facts = order(
            (LineItem("p1", None, 1, Decimal("100.00"), Decimal(0)),),
            (refund("r1", "p1", "33.30"), refund("r2", "p1", "66.70", hour=3)),
        )
        program = capped_program(Decimal("5.00"))
        got = compute_order(facts, program)
        assert (got.reversed, got.net) == (Decimal("5.00"), Decimal(0))
        posted = post_all(facts, program)
        assert posted["reversal:s1:o1/r2"] == Decimal("-3.33")
        assert sum(posted.values(), Decimal(0)) == 0


line_st = st.builds(
    lambda price, qty, product: LineItem(product, None, qty, price, Decimal(0)),
    st.integers(0, 50_000).map(lambda n: Decimal(n) * C),
    st.integers(1, 3),
    st.sampled_from(["p1", "p2"]),
)


class TestCappedPostings:
    @given(
        st.lists(line_st, min_size=1, max_size=3),
        st.integers(1, 20_000).map(lambda n: Decimal(n) * C),
        st.lists(
            st.tuples(
                st.sampled_from(["p1", "p2"]), st.integers(0, 60_000).map(lambda n: Decimal(n) * C)
            ),
            max_size=4,
        ),
        st.randoms(use_true_random=False),
    )
    @settings(max_examples=300, deadline=None)
    def test_the_ledger_posts_the_capped_commission_whatever_the_arrival_order(
        self,
        items: list[LineItem],
        cap: Decimal,
        specs: list[tuple[str, Decimal]],
        rnd: random.Random,
    ) -> None:
        refunds = tuple(
            Refund(f"r{n}", T0 + timedelta(days=1, hours=2 + n), (RefundItem(p, a),))
            for n, (p, a) in enumerate(specs)
        )
        program = capped_program(cap)
        full = order(tuple(items), refunds)
        # a brute-force reference in exact fractions: per line 10% half-up, reversals per line
        # on the line's refunded total, at most its commission; then the cap and the share
        lines = [half_up(Fraction(li.base) / 10) for li in items]
        uncapped = sum(lines, Decimal(0))
        paid = min(uncapped, cap)
        got = compute_order(full, program)
        assert (got.commission, got.capped) == (paid, uncapped - paid)
        line_rev = sum((i.reversed for i in got.items), Decimal(0))
        if uncapped == paid:
            expected_rev = line_rev
        elif line_rev >= uncapped:
            expected_rev = paid
        else:
            expected_rev = min(
                paid, half_up(Fraction(paid) * Fraction(line_rev) / Fraction(uncapped))
            )
        assert got.reversed == expected_rev
        # arrival order: the completion and the refunds in any order, the ledger asked each time
        arrivals = list(refunds)
        rnd.shuffle(arrivals)
        facts = order(tuple(items))
        posted: dict[str, Decimal] = {}
        journal = []
        for step in [None, *arrivals]:
            if step is not None:
                facts = replace(facts, refunds=(*facts.refunds, step))
            for txn in ledger_delta(facts, program, posted):
                assert txn.key not in posted
                if txn.kind is TxnKind.REVERSAL:
                    assert txn.amount < 0
                posted[txn.key] = txn.amount
                journal.append(txn)
        assert ledger_delta(full, program, posted) == []
        assert sum(posted.values(), Decimal(0)) == got.net
        assert sum(balances(journal).values(), Decimal(0)) == 0


class TestMonthAllowance:
    def test_an_order_takes_its_commission_at_most_what_the_month_left(self) -> None:
        assert month_allowance(Decimal("4.00"), None, Decimal(0)) is None
        assert month_allowance(Decimal("4.00"), Decimal("10.00"), Decimal("3.00")) == Decimal(
            "4.00"
        )
        assert month_allowance(Decimal("4.00"), Decimal("10.00"), Decimal("8.00")) == Decimal(
            "2.00"
        )
        assert month_allowance(Decimal("4.00"), Decimal("10.00"), Decimal("12.00")) == Decimal(0)

    def test_the_order_pays_the_lower_of_its_cap_and_its_allowance(self) -> None:
        facts = order((LineItem("p1", None, 1, Decimal("100.00"), Decimal(0)),))
        program = capped_program(Decimal("5.00"))
        left = compute_order(replace(facts, month_allowance=Decimal("3.00")), program)
        assert (left.commission, left.capped) == (Decimal("3.00"), Decimal("7.00"))
        roomy = compute_order(replace(facts, month_allowance=Decimal("9.00")), program)
        assert roomy.commission == Decimal("5.00")
        none_left = compute_order(replace(facts, month_allowance=Decimal(0)), program)
        assert (none_left.commission, none_left.net) == (Decimal(0), Decimal(0))
        assert post_all(replace(facts, month_allowance=Decimal(0)), program) == {}

    @given(
        st.lists(st.integers(0, 5_000).map(lambda n: Decimal(n) * C), min_size=1, max_size=8),
        st.one_of(st.none(), st.integers(1, 3_000).map(lambda n: Decimal(n) * C)),
        st.integers(1, 10_000).map(lambda n: Decimal(n) * C),
    )
    def test_postings_in_completion_order_share_the_room_as_the_core_rule(
        self, commissions: list[Decimal], per_order: Decimal | None, per_month: Decimal
    ) -> None:
        """Completions posted in completion order take the room as ``share_caps`` shares it;
        the month never pays more than its cap."""
        used = Decimal(0)
        paid = []
        for commission in commissions:
            capped = commission if per_order is None else min(commission, per_order)
            allowance = month_allowance(capped, per_month, used)
            assert allowance is not None
            used += allowance
            paid.append(min(capped, allowance))
        claims = [
            CapClaim(f"o{n}", T0 + timedelta(minutes=n), c) for n, c in enumerate(commissions)
        ]
        shared = share_caps(claims, "USD", per_order, per_month)
        assert paid == [shared[f"o{n}"].commission for n in range(len(commissions))]
        assert sum(paid, Decimal(0)) <= per_month
