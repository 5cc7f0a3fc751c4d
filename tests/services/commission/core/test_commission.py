"""Commission maths, program rules and ledger postings of the pure core."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
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
from services.commission.core.errors import InvalidRate, InvalidWindow, ProgramError
from services.commission.core.ledger import LedgerTxn, balances, ledger_delta
from services.commission.core.program import (
    DEFAULT_RATE,
    MAX_MAIN_PRODUCTS,
    OpKind,
    ProgramHistory,
    ProgramOp,
)
from shared.policy import ExitPolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
D = timedelta(days=1)


def joined(rate: str = "0.06", at: datetime = T0) -> ProgramHistory:
    return ProgramHistory().append(ProgramOp(OpKind.JOIN, at, rate=Decimal(rate)))


def order(*items: LineItem, **kw: object) -> OrderFacts:
    fields: dict[str, object] = {"affiliate_id": "aff-a", "placed_at": T0 + 20 * D}
    fields.update(kw)
    return OrderFacts("o1", "s1", "USD", items=items, **fields)  # type: ignore[arg-type]


def line(
    price: str, qty: int = 1, ship: str = "0", product: str = "p1", cat: str = "c1"
) -> LineItem:
    return LineItem(product, cat, qty, Decimal(price), Decimal(ship))


class TestProgramRules:
    def test_join_without_rate_defaults_to_six_percent(self) -> None:
        h = ProgramHistory().append(ProgramOp(OpKind.JOIN, T0))
        assert h.current().default_rate == DEFAULT_RATE == Decimal("0.06")

    def test_exit_before_15_days_is_refused_with_the_date(self) -> None:
        with pytest.raises(ProgramError) as err:
            joined().append(ProgramOp(OpKind.EXIT, T0 + 15 * D - timedelta(seconds=1)))
        assert err.value.code == "exit_too_early"
        assert err.value.details["exit_allowed_at"] == (T0 + 15 * D).isoformat()

    def test_exit_at_exactly_15_days_is_allowed(self) -> None:
        h = joined().append(ProgramOp(OpKind.EXIT, T0 + 15 * D))
        assert not h.current().joined

    def test_rejoin_within_15_days_of_exit_is_refused(self) -> None:
        h = joined().append(ProgramOp(OpKind.EXIT, T0 + 20 * D))
        with pytest.raises(ProgramError) as err:
            h.append(ProgramOp(OpKind.JOIN, T0 + 34 * D))
        assert err.value.code == "rejoin_too_early"
        assert err.value.details["rejoin_allowed_at"] == (T0 + 35 * D).isoformat()
        assert h.append(ProgramOp(OpKind.JOIN, T0 + 35 * D)).current().joined

    def test_a_program_sets_its_own_attribution_window_of_1_to_30_days(self) -> None:
        h = joined().append(ProgramOp(OpKind.ATTRIBUTION_WINDOW, T0 + D, days=7))
        assert h.current().window_days == 7
        assert h.state_at(T0).window_days is None  # the deployment's default before
        for days in (0, 31, -1):
            with pytest.raises(InvalidWindow) as err:
                h.append(ProgramOp(OpKind.ATTRIBUTION_WINDOW, T0 + 2 * D, days=days))
            assert (err.value.code, err.value.status_code) == ("invalid_window", 422)
        for days in (1, 30):
            assert h.append(ProgramOp(OpKind.ATTRIBUTION_WINDOW, T0 + 2 * D, days=days))
        reset = h.append(ProgramOp(OpKind.ATTRIBUTION_WINDOW, T0 + 2 * D))
        assert reset.current().window_days is None
        with pytest.raises(ProgramError, match="not in the program"):
            ProgramHistory().append(ProgramOp(OpKind.ATTRIBUTION_WINDOW, T0, days=7))

    def test_double_join_and_exit_when_out_are_refused(self) -> None:
        with pytest.raises(ProgramError, match="already"):
            joined().append(ProgramOp(OpKind.JOIN, T0 + D))
        with pytest.raises(ProgramError, match="not in the program"):
            ProgramHistory().append(ProgramOp(OpKind.EXIT, T0))

    @pytest.mark.parametrize("rate", ["-0.01", "0.91", "NaN"])
    def test_rate_outside_zero_to_ninety_percent_is_refused(self, rate: str) -> None:
        with pytest.raises(InvalidRate):
            joined().append(ProgramOp(OpKind.DEFAULT_RATE, T0 + D, rate=Decimal(rate)))

    def test_sixty_first_main_product_is_refused(self) -> None:
        h = joined()
        for n in range(MAX_MAIN_PRODUCTS):
            h = h.append(ProgramOp(OpKind.MAIN_PRODUCT, T0 + D, key=f"p{n}", rate=Decimal("0.1")))
        with pytest.raises(ProgramError) as err:
            h.append(ProgramOp(OpKind.MAIN_PRODUCT, T0 + D, key="p-extra"))
        assert err.value.code == "too_many_main_products"
        # re-setting an existing main product is not a 61st
        h.append(ProgramOp(OpKind.MAIN_PRODUCT, T0 + D, key="p0", rate=Decimal("0.2")))

    def test_rate_precedence_main_then_category_then_default(self) -> None:
        h = (
            joined("0.05")
            .append(ProgramOp(OpKind.CATEGORY_RATE, T0 + D, key="c2", rate=Decimal("0.08")))
            .append(ProgramOp(OpKind.MAIN_PRODUCT, T0 + D, key="p3", rate=Decimal("0.12")))
        )
        s = h.current()
        assert s.rate_for("p1", "c1") == Decimal("0.05")
        assert s.rate_for("p2", "c2") == Decimal("0.08")
        assert s.rate_for("p3", "c2") == Decimal("0.12")

    def test_rates_are_versioned_by_effective_time(self) -> None:
        h = joined("0.05").append(ProgramOp(OpKind.DEFAULT_RATE, T0 + 10 * D, rate=Decimal("0.1")))
        assert h.state_at(T0 + 10 * D - timedelta(seconds=1)).default_rate == Decimal("0.05")
        assert h.state_at(T0 + 10 * D).default_rate == Decimal("0.1")


class TestCommission:
    def test_base_excludes_shipping_and_floors_at_zero(self) -> None:
        assert line("20.00", 2, "3.50").base == Decimal("36.50")
        assert line("3.00", 1, "7.50").base == Decimal(0)

    def test_half_up_rounding_to_the_cent(self) -> None:
        r = compute_order(order(line("0.50")), joined("0.05"))
        assert r.items[0].commission == Decimal("0.03")  # 0.025 rounds up

    def test_cancelled_pays_nothing(self) -> None:
        r = compute_order(order(line("40"), status=OrderStatus.CANCELLED), joined())
        assert (r.commission, r.estimated, r.payable) == (Decimal(0),) * 3

    def test_placed_is_estimated_completed_is_payable(self) -> None:
        placed = compute_order(order(line("100")), joined())
        done = compute_order(order(line("100"), status=OrderStatus.COMPLETED), joined())
        assert (placed.estimated, placed.payable) == (Decimal("6.00"), Decimal(0))
        assert (done.estimated, done.payable) == (Decimal(0), Decimal("6.00"))

    def test_organic_and_out_of_program_orders_are_not_chargeable(self) -> None:
        assert not compute_order(order(line("10"), affiliate_id=None), joined()).chargeable
        assert not compute_order(order(line("10"), placed_at=T0 - D), joined()).chargeable

    def test_exit_policy_click_in_program(self) -> None:
        h = joined().append(ProgramOp(OpKind.EXIT, T0 + 20 * D))
        o = order(line("10"), placed_at=T0 + 22 * D, click_at=T0 + 19 * D)
        assert not compute_order(o, h).chargeable
        assert compute_order(o, h, ExitPolicy.CLICK_IN_PROGRAM).chargeable

    def test_refunds_of_a_line_reverse_their_rounded_total_capped(self) -> None:
        refunds = (
            Refund("r1", T0 + 21 * D, (RefundItem("p1", Decimal("30")),)),
            Refund("r2", T0 + 22 * D, (RefundItem("p1", Decimal("30")),)),
        )
        r = compute_order(order(line("50"), refunds=refunds), joined("0.05"))
        assert r.items[0].commission == Decimal("2.50")
        assert r.items[0].reversed == Decimal("2.50")  # 1.50 + 1.50 capped at 2.50
        assert r.net == 0

    @pytest.mark.parametrize("as_refunds", [1, 100], ids=["one_refund", "a_refund_each"])
    def test_a_refund_reversal_is_rounded_on_the_line_total_not_per_item(
        self, as_refunds: int
    ) -> None:
        items = [RefundItem("p1", Decimal("0.50")) for _ in range(100)]
        per = len(items) // as_refunds
        refunds = tuple(
            Refund(f"r{n:03}", T0 + 21 * D, tuple(items[n * per : (n + 1) * per]))
            for n in range(as_refunds)
        )
        r = compute_order(order(line("1000"), refunds=refunds), joined("0.01"))
        assert r.items[0].commission == Decimal("10.00")
        # the commission on 50.00 at 1%, not 100 × round(0.005) = 1.00
        assert r.items[0].reversed == Decimal("0.50")


# ---------------------------------------------------------------------------------------------
# Ledger property tests: whatever order the facts arrive in, duplicated or not, the postings
# balance and add up to an independent reference computation.
# ---------------------------------------------------------------------------------------------

cents = st.integers(0, 50_000).map(lambda c: Decimal(c).scaleb(-2))
rates = st.sampled_from(["0", "0.03", "0.05", "0.06", "0.075", "0.125", "0.9"])
lines_st = st.lists(
    st.builds(
        lambda p, price, qty, ship: LineItem(p, "c1", qty, price, ship),
        st.sampled_from(["p1", "p2", "p3"]),
        cents,
        st.integers(1, 5),
        cents.map(lambda d: d / 10),
    ),
    min_size=1,
    max_size=4,
)


def reference_net(items: tuple[LineItem, ...], rate: Decimal, refunds: list[Refund]) -> Decimal:
    """Net commission computed from the rules as stated, independently of the core."""

    def r(x: Decimal) -> Decimal:
        return (x * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    total = Decimal(0)
    for idx, li in enumerate(items):
        commission = r(max(Decimal(0), li.unit_price * li.quantity - li.shipping_fee))
        # refund items go to the first line of their product unless it is the only one
        same = [i for i, x in enumerate(items) if x.product_id == li.product_id]
        refunded = Decimal(0)
        for refund in sorted(refunds, key=lambda f: (f.occurred_at, f.refund_id)):
            for ri in refund.items:
                if ri.product_id != li.product_id:
                    continue
                left = ri.amount
                for pos, j in enumerate(same):
                    base = max(
                        Decimal(0), items[j].unit_price * items[j].quantity - items[j].shipping_fee
                    )
                    take = left if pos == len(same) - 1 else min(left, base)
                    if j == idx and take > 0:
                        refunded += take
                    left -= take
        # the line's refunded total is rounded once, never each refund item
        total += commission - min(commission, r(refunded))
    return total


@settings(max_examples=300, deadline=None)
@given(
    items=lines_st,
    rate=rates,
    refund_specs=st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3", "p9"]), cents), max_size=4),
    data=st.data(),
)
def test_ledger_equals_reference_under_any_order_and_duplication(
    items: list[LineItem], rate: str, refund_specs: list[tuple[str, Decimal]], data: st.DataObject
) -> None:
    program = joined(rate)
    refunds = [
        Refund(f"r{n}", T0 + (21 + n) * D, (RefundItem(p, amt),))
        for n, (p, amt) in enumerate(refund_specs)
    ]
    events: list[object] = ["complete", *refunds]
    arrival = data.draw(
        st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=3)))
    )

    facts = order(*items)
    posted: dict[str, Decimal] = {}
    journal: list[LedgerTxn] = []
    for event in arrival:
        if event == "complete":
            facts = replace(facts, status=OrderStatus.COMPLETED)
        elif isinstance(event, Refund) and event not in facts.refunds:
            facts = replace(facts, refunds=(*facts.refunds, event))
        for txn in ledger_delta(facts, program, posted):
            assert txn.key not in posted
            assert sum(p.amount for p in txn.postings) == 0
            posted[txn.key] = txn.amount
            journal.append(txn)
    assert ledger_delta(facts, program, posted) == []

    expected = reference_net(tuple(items), Decimal(rate), refunds)
    assert sum(posted.values(), Decimal(0)) == expected
    assert compute_order(facts, program).payable == expected
    assert sum(balances(journal).values(), Decimal(0)) == 0


#: many small refund items (sub-cent commissions each), over several refunds
small_amounts = st.integers(1, 200).map(lambda c: Decimal(c).scaleb(-2))


class TestRefundRounding:
    @settings(max_examples=300, deadline=None)
    @given(
        price=cents,
        qty=st.integers(1, 5),
        rate=rates,
        refunds=st.lists(st.lists(small_amounts, min_size=1, max_size=30), max_size=8),
    )
    def test_a_line_never_reverses_more_than_it_was_charged_nor_other_than_its_rounded_total(
        self, price: Decimal, qty: int, rate: str, refunds: list[list[Decimal]]
    ) -> None:
        facts = order(
            line(str(price), qty),
            refunds=tuple(
                Refund(f"r{n}", T0 + (21 + n) * D, tuple(RefundItem("p1", a) for a in amounts))
                for n, amounts in enumerate(refunds)
            ),
            status=OrderStatus.COMPLETED,
        )
        (item,) = compute_order(facts, joined(rate)).items
        refunded = sum((a for amounts in refunds for a in amounts), Decimal(0))
        rounded = (refunded * Decimal(rate)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert item.reversed <= item.commission
        assert item.reversed == min(item.commission, rounded)
        # and the ledger posts exactly that, refund by refund
        posted: dict[str, Decimal] = {}
        for txn in ledger_delta(facts, joined(rate), posted):
            posted[txn.key] = txn.amount
        assert sum(posted.values(), Decimal(0)) == item.commission - item.reversed
