"""Program controls in the pure core: the locking date and reason-coded adjustments, each
against a brute-force reference computed from the rules as the issue states them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.commission.core import errors
from services.commission.core.commission import (
    Adjustment,
    AdjustmentAction,
    AdjustmentLine,
    AdjustmentReason,
    LineItem,
    OrderFacts,
    OrderStatus,
    Refund,
    RefundItem,
    check_adjustment,
    compute_order,
    locks_at,
)
from services.commission.core.ledger import LedgerTxn, TxnKind, balances, ledger_delta
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp
from tests.services.commission.core.test_commission import cents, lines_st, rates, reference_net

T0 = datetime(2026, 1, 1, tzinfo=UTC)
D = timedelta(days=1)
PLACED = T0 + 20 * D
DONE = T0 + 22 * D
REASON = AdjustmentReason.ITEM_RETURNED


def program(
    rate: str = "0.1", lock_days: int | None = None, later: int | None = None
) -> ProgramHistory:
    """Joined at T0 with ``rate``; ``lock_days`` set at T0 + 1 d; ``later`` set after the
    order was placed (it must not count)."""
    h = ProgramHistory().append(ProgramOp(OpKind.JOIN, T0, rate=Decimal(rate)))
    if lock_days is not None:
        h = h.append(ProgramOp(OpKind.LOCK_PERIOD, T0 + D, days=lock_days))
    if later is not None:
        h = h.append(ProgramOp(OpKind.LOCK_PERIOD, PLACED + D, days=later))
    return h


def order(*items: LineItem, **kw: object) -> OrderFacts:
    fields: dict[str, object] = {"affiliate_id": "aff", "placed_at": PLACED}
    fields.update(kw)
    return OrderFacts("o1", "s1", "USD", items=items, **fields)  # type: ignore[arg-type]


def done(facts: OrderFacts, at: datetime = DONE) -> OrderFacts:
    return replace(facts, status=OrderStatus.COMPLETED, status_at=at)


def line(price: str, qty: int = 1, product: str = "p1") -> LineItem:
    return LineItem(product, "c1", qty, Decimal(price), Decimal(0))


def adj(seq: int, at: datetime, action: AdjustmentAction, *lines: tuple[str, str]) -> Adjustment:
    return Adjustment(
        seq, at, action, REASON, tuple(AdjustmentLine(p, Decimal(a)) for p, a in lines)
    )


def post_all(facts: OrderFacts, h: ProgramHistory, posted: dict[str, Decimal]) -> list[LedgerTxn]:
    txns = ledger_delta(facts, h, posted)
    for t in txns:
        assert t.key not in posted
        assert sum(p.amount for p in t.postings) == 0
        posted[t.key] = t.amount
    return txns


class TestLockPeriodSetting:
    def test_default_is_60_days_and_a_store_sets_0_to_365(self) -> None:
        assert program().current().lock_days == 60
        assert program(lock_days=0).current().lock_days == 0
        assert program(lock_days=365).current().lock_days == 365
        for days in (-1, 366):
            with pytest.raises(errors.InvalidLockPeriod) as err:
                program().append(ProgramOp(OpKind.LOCK_PERIOD, T0 + D, days=days))
            assert (err.value.status_code, err.value.code) == (422, "invalid_lock_period")

    def test_only_while_in_the_program_like_a_rate(self) -> None:
        with pytest.raises(errors.NotJoined):
            ProgramHistory().append(ProgramOp(OpKind.LOCK_PERIOD, T0, days=30))

    def test_the_setting_in_force_when_the_order_was_placed_decides(self) -> None:
        facts = done(order(line("100")))
        assert locks_at(facts, program(lock_days=10, later=200)) == DONE + 10 * D
        assert locks_at(facts, program()) == DONE + 60 * D

    def test_cancelled_organic_and_open_orders_have_nothing_to_lock(self) -> None:
        h = program()
        assert locks_at(order(line("100")), h) is None
        cancelled = replace(order(line("100")), status=OrderStatus.CANCELLED, status_at=DONE)
        assert locks_at(cancelled, h) is None
        assert locks_at(done(order(line("100"), affiliate_id=None)), h) is None


class TestLockBoundaries:
    @settings(max_examples=300, deadline=None)
    @given(
        items=lines_st,
        rate=rates,
        lock_days=st.integers(0, 365),
        refund_specs=st.lists(
            st.tuples(
                st.sampled_from(["p1", "p2", "p3"]),
                cents,
                st.integers(-3, 3),  # seconds from the lock
                st.booleans(),  # reported late (arrival after the event time)
            ),
            max_size=4,
        ),
        data=st.data(),
    )
    def test_a_refund_reported_at_or_after_the_lock_reverses_nothing(
        self,
        items: list[LineItem],
        rate: str,
        lock_days: int,
        refund_specs: list[tuple[str, Decimal, int, bool]],
        data: st.DataObject,
    ) -> None:
        h = program(rate, lock_days)
        lock = DONE + lock_days * D
        refunds = [
            Refund(
                f"r{n}",
                lock + timedelta(seconds=s) - (10 * D if late else timedelta(0)),
                (RefundItem(p, amt),),
                lock + timedelta(seconds=s),
            )
            for n, (p, amt, s, late) in enumerate(refund_specs)
        ]
        # brute force: the refunds that count are those reported strictly before the lock
        counted = [r for r in refunds if r.reported_at is not None and r.reported_at < lock]
        expected = reference_net(tuple(items), Decimal(rate), counted)
        facts = order(*items)
        posted: dict[str, Decimal] = {}
        for event in data.draw(st.permutations(["complete", *refunds])):
            if event == "complete":
                facts = done(facts)
            else:
                assert isinstance(event, Refund)
                facts = replace(facts, refunds=(*facts.refunds, event))
            post_all(facts, h, posted)
        result = compute_order(facts, h)
        assert sum(posted.values(), Decimal(0)) == result.payable == expected
        assert set(result.refunds_skipped) == {r.refund_id for r in refunds if r not in counted}
        assert result.locks_at == lock
        assert result.locked(lock)
        assert not result.locked(lock - timedelta(microseconds=1))


def reference_adjusted(
    items: tuple[LineItem, ...], rate: Decimal, adjustments: list[Adjustment], refunds: list[Refund]
) -> Decimal:
    """Net commission with adjustments, from the rules as stated: amend lowers a product's
    lines (in line order) by the amount, never below zero; decline zeroes the order; reset
    undoes everything before it. Refunds reverse ``refunded × rate`` capped per line."""

    def r(x: Decimal) -> Decimal:
        return (x * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    bases = [max(Decimal(0), i.unit_price * i.quantity - i.shipping_fee) for i in items]
    lowered = [Decimal(0)] * len(items)
    declined = False
    for a in sorted(adjustments, key=lambda a: (a.at, a.seq)):
        if a.action is AdjustmentAction.RESET:
            lowered, declined = [Decimal(0)] * len(items), False
        elif a.action is AdjustmentAction.DECLINE:
            declined = True
        else:
            for al in a.lines:
                left = al.amount
                for i, it in enumerate(items):
                    if it.product_id == al.product_id:
                        cut = min(left, bases[i] - lowered[i])
                        lowered[i] += cut
                        left -= cut
    total = Decimal(0)
    for i, it in enumerate(items):
        commission = Decimal(0) if declined else r(bases[i] - lowered[i])
        refunded = Decimal(0)
        same = [j for j, x in enumerate(items) if x.product_id == it.product_id]
        for refund in sorted(refunds, key=lambda f: (f.occurred_at, f.refund_id)):
            for ri in refund.items:
                if ri.product_id != it.product_id:
                    continue
                left = ri.amount
                for pos, j in enumerate(same):
                    take = left if pos == len(same) - 1 else min(left, bases[j])
                    if j == i and take > 0:
                        refunded += take
                    left -= take
        total += commission - min(commission, r(refunded))
    return total


actions = st.sampled_from(list(AdjustmentAction))


class TestAdjustments:
    def test_amend_lowers_the_base_the_issue_example(self) -> None:
        # a line of 2 × 50.00 at 10% amended by 50.00 pays 5.00
        facts = done(order(line("50.00", 2)), DONE)
        facts = replace(
            facts, adjustments=(adj(1, DONE + D, AdjustmentAction.AMEND, ("p1", "50.00")),)
        )
        result = compute_order(facts, program("0.1"))
        assert result.payable == Decimal("5.00")
        assert result.items[0].amended == Decimal("50.00")

    def test_decline_zeroes_and_reset_undoes(self) -> None:
        facts = done(order(line("100")))
        declined = replace(facts, adjustments=(adj(1, DONE + D, AdjustmentAction.DECLINE),))
        assert compute_order(declined, program()).payable == 0
        reset = replace(
            declined,
            adjustments=(*declined.adjustments, adj(2, DONE + 2 * D, AdjustmentAction.RESET)),
        )
        assert compute_order(reset, program()).payable == Decimal("10.00")

    def test_refusals_each_with_its_status_and_code(self) -> None:
        h = program("0.1", lock_days=5)
        facts = done(order(line("50.00", 2), line("10", product="p2")))
        cases: list[tuple[OrderFacts, Adjustment, type[errors.ProgramError]]] = [
            (facts, adj(1, DONE + 5 * D, AdjustmentAction.DECLINE), errors.Locked),
            (facts, adj(1, DONE, AdjustmentAction.AMEND), errors.LinesRequired),
            (facts, adj(1, DONE, AdjustmentAction.AMEND, ("p9", "1")), errors.UnknownProduct),
            (facts, adj(1, DONE, AdjustmentAction.AMEND, ("p1", "100.01")), errors.AmountAboveBase),
            (
                facts,
                adj(1, DONE, AdjustmentAction.AMEND, ("p1", "60"), ("p1", "41")),
                errors.AmountAboveBase,
            ),
            (facts, adj(1, DONE, AdjustmentAction.AMEND, ("p1", "1.001")), errors.AmountTooPrecise),
            (
                replace(
                    facts,
                    adjustments=tuple(adj(n, DONE, AdjustmentAction.RESET) for n in range(1, 101)),
                ),
                adj(101, DONE, AdjustmentAction.RESET),
                errors.TooManyAdjustments,
            ),
        ]
        for f, a, refusal in cases:
            with pytest.raises(refusal):
                check_adjustment(f, h, a)
        assert (errors.Locked.status_code, errors.Locked.code) == (409, "locked")
        assert errors.AmountAboveBase.status_code == errors.UnknownProduct.status_code == 422
        # the whole base may go, and the day before the lock is still open
        ok = adj(1, DONE + 5 * D - timedelta(microseconds=1), AdjustmentAction.AMEND, ("p1", "100"))
        assert check_adjustment(facts, h, ok) is ok

    @settings(max_examples=300, deadline=None)
    @given(
        items=lines_st,
        amends=st.lists(
            st.tuples(st.sampled_from(["p1", "p2", "p3"]), cents.map(lambda d: d * 3)),
            min_size=1,
            max_size=6,
        ),
    )
    def test_amend_caps_an_amend_never_takes_a_base_below_zero(
        self, items: list[LineItem], amends: list[tuple[str, Decimal]]
    ) -> None:
        h = program("0.1")
        facts = done(order(*items))
        left = {
            p: sum((i.base for i in items if i.product_id == p), Decimal(0))
            for p in {i.product_id for i in items}
        }
        for n, (product, amount) in enumerate(amends, 1):
            a = adj(
                n, DONE + n * timedelta(hours=1), AdjustmentAction.AMEND, (product, str(amount))
            )
            if product not in left:
                with pytest.raises(errors.UnknownProduct):
                    check_adjustment(facts, h, a)
            elif amount > left[product]:
                with pytest.raises(errors.AmountAboveBase):
                    check_adjustment(facts, h, a)
            else:
                check_adjustment(facts, h, a)
                facts = replace(facts, adjustments=(*facts.adjustments, a))
                left[product] -= amount
        result = compute_order(facts, h)
        for it, item in zip(items, result.items, strict=True):
            assert Decimal(0) <= item.amended <= it.base
            assert item.commission >= 0

    @settings(max_examples=300, deadline=None)
    @given(
        items=lines_st,
        rate=rates,
        lock_days=st.integers(0, 4),
        specs=st.lists(
            st.tuples(
                actions,
                st.sampled_from(["p1", "p2", "p3"]),
                cents,
                st.integers(-48, 120),  # hours from completion
            ),
            max_size=5,
        ),
        refund_specs=st.lists(
            st.tuples(st.sampled_from(["p1", "p2", "p3"]), cents, st.integers(-48, 120)),
            max_size=3,
        ),
        data=st.data(),
    )
    def test_the_ledger_equals_the_reference_whatever_the_arrival_order(
        self,
        items: list[LineItem],
        rate: str,
        lock_days: int,
        specs: list[tuple[AdjustmentAction, str, Decimal, int]],
        refund_specs: list[tuple[str, Decimal, int]],
        data: st.DataObject,
    ) -> None:
        h = program(rate, lock_days)
        lock = DONE + lock_days * D
        adjustments = [
            Adjustment(
                n,
                DONE + timedelta(hours=hours, seconds=n),
                action,
                REASON,
                ((AdjustmentLine(p, amount),) if action is AdjustmentAction.AMEND else ()),
            )
            for n, (action, p, amount, hours) in enumerate(specs, 1)
        ]
        refunds = [
            Refund(f"r{n}", DONE + timedelta(hours=hours), (RefundItem(p, amt),))
            for n, (p, amt, hours) in enumerate(refund_specs)
        ]
        # adjustments arrive in the order made (the API numbers them), refunds and the
        # completion in any order among them
        events: list[object] = ["complete", *refunds]
        order_of = data.draw(st.permutations(events))
        slots = sorted(
            data.draw(
                st.lists(
                    st.integers(0, len(order_of)),
                    min_size=len(adjustments),
                    max_size=len(adjustments),
                )
            )
        )
        arrival: list[object] = list(order_of)
        for offset, (slot, a) in enumerate(zip(slots, adjustments, strict=True)):
            arrival.insert(slot + offset, a)
        facts = order(*items)
        posted: dict[str, Decimal] = {}
        journal: list[LedgerTxn] = []
        for event in arrival:
            if event == "complete":
                facts = done(facts)
            elif isinstance(event, Refund):
                facts = replace(facts, refunds=(*facts.refunds, event))
            else:
                assert isinstance(event, Adjustment)
                facts = replace(facts, adjustments=(*facts.adjustments, event))
            journal += post_all(facts, h, posted)
        assert ledger_delta(facts, h, posted) == []
        before_lock = [a for a in adjustments if a.at < lock]
        counted = [r for r in refunds if r.occurred_at < lock]
        expected = reference_adjusted(tuple(items), Decimal(rate), before_lock, counted)
        assert sum(posted.values(), Decimal(0)) == compute_order(facts, h).payable == expected
        assert sum(balances(journal).values(), Decimal(0)) == 0
        for t in journal:
            if t.kind is TxnKind.ADJUSTMENT:
                assert t.reason == REASON.value
                assert t.amount != 0

    def test_a_step_that_changed_nothing_is_not_judged_again_in_another_context(self) -> None:
        # found by hypothesis: 2 x 0.01 at 90 %, amend 0.00, amend 0.02, a refund of 0.01, reset,
        # all before the completion. At completion the amend of 0.00 and the refund change
        # nothing and post nothing; judged again on the next call without the refund, the
        # amend of 0.00 seemed to pay 0.01 more.
        h = program("0.9", lock_days=1)
        adjustments = (
            adj(1, DONE + timedelta(seconds=1), AdjustmentAction.AMEND, ("p1", "0.00")),
            adj(2, DONE + timedelta(seconds=2), AdjustmentAction.AMEND, ("p1", "0.02")),
            adj(3, DONE + timedelta(hours=1, seconds=3), AdjustmentAction.RESET),
        )
        refund = Refund("r0", DONE + timedelta(hours=1), (RefundItem("p1", Decimal("0.01")),))
        facts = done(replace(order(line("0.01", 2)), adjustments=adjustments, refunds=(refund,)))
        posted: dict[str, Decimal] = {}
        journal = post_all(facts, h, posted)
        assert [(t.kind, t.amount) for t in journal] == [
            (TxnKind.COMMISSION, Decimal("0.02")),
            (TxnKind.ADJUSTMENT, Decimal("-0.02")),
            (TxnKind.ADJUSTMENT, Decimal("0.01")),
        ]
        assert ledger_delta(facts, h, posted) == []
        assert (
            sum(posted.values(), Decimal(0)) == compute_order(facts, h).payable == Decimal("0.01")
        )

    def test_before_completion_an_adjustment_changes_the_estimate_then_posts_its_own(self) -> None:
        h = program("0.1")
        facts = replace(
            order(line("100")),
            adjustments=(adj(1, DONE - D, AdjustmentAction.AMEND, ("p1", "40")),),
        )
        assert compute_order(facts, h).estimated == Decimal("6.00")
        # at completion: the gross commission, then the adjustment of its own with its reason
        txn, first = ledger_delta(done(facts), h, {})
        assert (txn.kind, txn.amount) == (TxnKind.COMMISSION, Decimal("10.00"))
        assert (first.kind, first.amount, first.reason) == (
            TxnKind.ADJUSTMENT,
            Decimal("-4.00"),
            "item_returned",
        )
        later = replace(
            done(facts),
            adjustments=(*facts.adjustments, adj(2, DONE + D, AdjustmentAction.DECLINE)),
        )
        posted = {txn.key: txn.amount, first.key: first.amount}
        (second,) = ledger_delta(later, h, posted)
        assert (second.kind, second.amount) == (TxnKind.ADJUSTMENT, Decimal("-6.00"))
