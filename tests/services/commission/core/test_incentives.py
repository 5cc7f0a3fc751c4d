"""The incentive rules (new-buyer bonus, performance tiers, caps) against brute-force
references in exact fractions, and as settings of a store's versioned program."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

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
from services.commission.core.errors import InvalidCaps, InvalidRate, InvalidTiers, NotJoined
from services.commission.core.incentives import (
    MAX_TIERS,
    CapClaim,
    Caps,
    Incentives,
    MonthSale,
    NewBuyerSetting,
    Tier,
    TierSetting,
    capped_reversal,
    capped_tier_bonus,
    check_setting,
    line_rate,
    month_end,
    month_of,
    month_settled,
    month_start,
    qualifying_sales,
    setting_json,
    setting_of,
    share_caps,
    tier_bonus,
    tier_bonus_key,
    tier_progress,
    tier_reached,
)
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp

T0 = datetime(2026, 3, 1, tzinfo=UTC)
C = Decimal("0.01")

cents = st.integers(min_value=0, max_value=500_000).map(lambda n: Decimal(n) * C)
positive_cents = st.integers(min_value=1, max_value=500_000).map(lambda n: Decimal(n) * C)
rates = st.integers(min_value=0, max_value=900).map(lambda n: Decimal(n) / 1000)


def half_up(x: Fraction) -> Decimal:
    """Round a non-negative exact fraction half-up to cents."""
    cents_ = (x * 100 * 2 + 1) // 2
    return Decimal(int(cents_)) * C


@st.composite
def claims(draw: st.DrawFn) -> list[CapClaim]:
    n = draw(st.integers(min_value=0, max_value=12))
    out = []
    for i in range(n):
        commission = draw(cents)
        reversed_ = draw(st.integers(min_value=0, max_value=int(commission * 100))) * C
        # few distinct instants: ties by completion time are broken by the order id
        at = T0 + timedelta(hours=draw(st.integers(min_value=0, max_value=3)))
        out.append(CapClaim(f"o{i:02d}", at, commission, reversed_))
    return out


def reference_paid(
    claims_: list[CapClaim], per_order: Decimal | None, per_month: Decimal | None
) -> dict[str, Fraction]:
    """Brute force: order i pays min(S_i, M) − min(S_{i−1}, M), S the running sum of each
    order's commission clamped to the per-order cap."""
    ordered = sorted(claims_, key=lambda c: (c.completed_at, c.order_id))
    out: dict[str, Fraction] = {}
    running = Fraction(0)
    for c in ordered:
        own = Fraction(c.commission)
        if per_order is not None:
            own = min(own, Fraction(per_order))
        before, running = running, running + own
        if per_month is None:
            out[c.order_id] = own
        else:
            m = Fraction(per_month)
            out[c.order_id] = min(running, m) - min(before, m)
    return out


optional_cap = st.none() | positive_cents


class TestCaps:
    @given(claims(), optional_cap, optional_cap)
    @settings(max_examples=300)
    def test_each_order_pays_what_the_brute_force_sharing_gives(
        self, cs: list[CapClaim], po: Decimal | None, pm: Decimal | None
    ) -> None:
        got = share_caps(cs, "USD", po, pm)
        ref = reference_paid(cs, po, pm)
        assert {k: Fraction(v.commission) for k, v in got.items()} == ref

    @given(claims(), optional_cap, optional_cap)
    def test_the_sum_paid_never_exceeds_the_month_cap_nor_an_order_its_own(
        self, cs: list[CapClaim], po: Decimal | None, pm: Decimal | None
    ) -> None:
        got = share_caps(cs, "USD", po, pm)
        if pm is not None:
            assert sum((c.commission for c in got.values()), Decimal(0)) <= pm
        for claim in cs:
            paid = got[claim.order_id]
            assert Decimal(0) <= paid.commission <= claim.commission
            assert paid.commission + paid.cut == claim.commission
            if po is not None:
                assert paid.commission <= po

    @given(claims(), optional_cap, optional_cap, st.randoms(use_true_random=False))
    def test_the_sharing_is_the_same_whatever_order_the_claims_arrive_in(
        self,
        cs: list[CapClaim],
        po: Decimal | None,
        pm: Decimal | None,
        rnd: random.Random,
    ) -> None:
        shuffled = list(cs)
        rnd.shuffle(shuffled)
        assert share_caps(shuffled, "USD", po, pm) == share_caps(cs, "USD", po, pm)

    @given(claims(), optional_cap, optional_cap)
    def test_an_orders_figures_depend_only_on_the_orders_completed_before_it(
        self, cs: list[CapClaim], po: Decimal | None, pm: Decimal | None
    ) -> None:
        # a worker that saw only the month's first k orders posts what the full replay gives
        ordered = sorted(cs, key=lambda c: (c.completed_at, c.order_id))
        full = share_caps(cs, "USD", po, pm)
        for k in range(len(ordered) + 1):
            prefix = share_caps(ordered[:k], "USD", po, pm)
            assert all(prefix[o] == full[o] for o in prefix)

    @given(claims(), optional_cap, optional_cap)
    def test_refunds_reverse_the_refunded_share_of_what_was_paid_and_never_more(
        self, cs: list[CapClaim], po: Decimal | None, pm: Decimal | None
    ) -> None:
        got = share_caps(cs, "USD", po, pm)
        for claim in cs:
            paid = got[claim.order_id]
            assert Decimal(0) <= paid.reversed <= paid.commission
            if claim.commission > 0:
                share = Fraction(paid.commission) * Fraction(claim.reversed)
                expected = half_up(share / Fraction(claim.commission))
                assert paid.reversed == min(paid.commission, expected)

    @given(claims(), optional_cap, optional_cap)
    def test_a_full_refund_of_a_capped_order_reverses_exactly_what_was_paid(
        self, cs: list[CapClaim], po: Decimal | None, pm: Decimal | None
    ) -> None:
        refunded = [CapClaim(c.order_id, c.completed_at, c.commission, c.commission) for c in cs]
        for paid in share_caps(refunded, "USD", po, pm).values():
            assert paid.reversed == paid.commission
            assert paid.net == 0

    def test_a_worked_month_of_three_orders_under_both_caps(self) -> None:
        cs = [
            CapClaim("b", T0 + timedelta(hours=1), Decimal("7.00")),
            CapClaim("a", T0 + timedelta(hours=1), Decimal("3.00"), Decimal("1.50")),
            CapClaim("c", T0, Decimal("4.00")),
        ]
        got = share_caps(cs, "USD", Decimal("5.00"), Decimal("10.00"))
        # c first (earliest), then a before b (same instant, by id)
        assert [(o, got[o].commission, got[o].cut, got[o].reversed) for o in "cab"] == [
            ("c", Decimal("4.00"), Decimal("0.00"), Decimal(0)),
            ("a", Decimal("3.00"), Decimal("0.00"), Decimal("1.50")),
            ("b", Decimal("3.00"), Decimal("4.00"), Decimal(0)),
        ]

    def test_a_partial_refund_of_a_capped_order_reverses_its_share_rounded_half_up(self) -> None:
        # 10.00 commission capped to 5.00; a refund reversing 3.33 of it reverses 1.665 → 1.67
        assert capped_reversal(Decimal("5.00"), Decimal("10.00"), Decimal("3.33"), "USD") == (
            Decimal("1.67")
        )

    def test_a_tier_bonus_takes_only_what_the_months_orders_left_of_the_cap(self) -> None:
        assert capped_tier_bonus(Decimal("30.00"), Decimal("980.00"), Decimal("1000.00")) == (
            Decimal("20.00")
        )
        assert capped_tier_bonus(Decimal("30.00"), Decimal("1000.00"), Decimal("1000.00")) == 0
        assert capped_tier_bonus(Decimal("30.00"), Decimal("1000.00"), None) == Decimal("30.00")


@st.composite
def tier_tables(draw: st.DrawFn) -> tuple[Tier, ...]:
    starts = sorted(draw(st.sets(cents, max_size=6)))
    return tuple(Tier(s, draw(rates)) for s in starts)


class TestTiers:
    @given(tier_tables(), cents)
    @settings(max_examples=300)
    def test_the_bonus_is_the_highest_reached_tiers_rate_times_all_the_sales(
        self, tiers: tuple[Tier, ...], sales: Decimal
    ) -> None:
        reached = [t for t in tiers if sales >= t.start]
        best = max(reached, key=lambda t: t.start) if reached else None
        assert tier_reached(tiers, sales) == best
        expected = half_up(Fraction(sales) * Fraction(best.extra_rate)) if best else Decimal(0)
        assert tier_bonus(tiers, sales, "USD") == expected

    def test_the_threshold_counts_sales_amounts_not_items_or_orders(self) -> None:
        month = [
            MonthSale("o1", T0, Decimal("600.00")),
            MonthSale("o2", T0 + timedelta(days=3), Decimal("500.00"), Decimal("200.00")),
            MonthSale("o3", T0 - timedelta(seconds=1), Decimal("5000.00")),  # February
        ]
        sales = qualifying_sales(month, "2026-03")
        assert sales == Decimal("900.00")  # 600 + (500 − 200 refunded); February's not counted
        tiers = (Tier(Decimal("1000.00"), Decimal("0.02")),)
        assert tier_bonus(tiers, sales, "USD") == 0
        month.append(MonthSale("o4", T0 + timedelta(days=30), Decimal("100.00")))
        assert tier_bonus(tiers, qualifying_sales(month, "2026-03"), "USD") == Decimal("20.00")

    def test_the_month_settles_once_over_and_every_order_of_it_locked(self) -> None:
        end = month_end("2026-03")
        assert end == datetime(2026, 4, 1, tzinfo=UTC)
        assert month_end("2026-12") == datetime(2027, 1, 1, tzinfo=UTC)
        locks = end + timedelta(days=59)
        month = [MonthSale("o1", T0, Decimal(1), locks_at=locks)]
        assert not month_settled("2026-03", month, end - timedelta(microseconds=1))
        assert not month_settled("2026-03", month, locks - timedelta(microseconds=1))
        assert month_settled("2026-03", month, locks)
        assert not month_settled("2026-03", [MonthSale("o1", T0, Decimal(1))], locks)

    def test_the_standing_names_the_tier_reached_the_next_and_the_capped_bonus(self) -> None:
        tiers = (Tier(Decimal("100.00"), Decimal("0.02")), Tier(Decimal("1000.00"), C * 4))
        locks = month_end("2026-03") + timedelta(days=1)
        month = [MonthSale("o1", T0, Decimal("1200.00"), Decimal("150.00"), locks)]
        p = tier_progress("USD", tiers, month, "2026-03", locks, Decimal("30.00"), Decimal(50))
        assert (p.orders, p.sales, p.tier, p.next_tier) == (1, Decimal("1050.00"), tiers[1], None)
        assert (p.bonus, p.capped_bonus, p.settled) == (Decimal("42.00"), Decimal(20), True)
        none = tier_progress("USD", tiers, [], "2026-03", T0)
        assert (none.tier, none.next_tier, none.settled) == (None, tiers[0], False)
        assert none.bonus == none.capped_bonus == 0

    def test_month_and_key_are_utc_calendar_months(self) -> None:
        from datetime import timezone

        assert month_of(datetime(2026, 4, 1, 1, tzinfo=timezone(timedelta(hours=2)))) == "2026-03"
        assert tier_bonus_key("s", "a", "2026-03", "USD") == "tier_bonus:s:a:2026-03:USD"
        assert month_start("2026-03") == T0


class TestNewBuyer:
    def test_a_new_buyers_order_earns_the_extra_rate_on_each_line(self) -> None:
        inc = Incentives(new_buyer_rate=Decimal("0.02"))
        assert line_rate(Decimal("0.06"), inc, True) == Decimal("0.08")
        assert line_rate(Decimal("0.06"), inc, False) == Decimal("0.06")
        assert line_rate(Decimal("0.9"), Incentives(Decimal("0.5")), True) == 1


class TestSettings:
    @pytest.mark.parametrize(
        ("setting", "error"),
        [
            (NewBuyerSetting(Decimal("0.91")), InvalidRate),
            (NewBuyerSetting(Decimal("-0.01")), InvalidRate),
            (TierSetting("USD", (Tier(Decimal("1.001"), Decimal("0.01")),)), InvalidTiers),
            (TierSetting("XXX", ()), InvalidTiers),
            (
                TierSetting(
                    "USD", (Tier(Decimal(10), Decimal("0.01")), Tier(Decimal(10), Decimal("0.02")))
                ),
                InvalidTiers,
            ),
            (
                TierSetting("USD", tuple(Tier(Decimal(i), C) for i in range(MAX_TIERS + 1))),
                InvalidTiers,
            ),
            (Caps({"USD": Decimal(0)}), InvalidCaps),
            (Caps({}, {"JPY": Decimal("1.5")}), InvalidCaps),
            (Caps({"usd": Decimal(5)}), InvalidCaps),
        ],
    )
    def test_the_rules_refuse_a_malformed_setting(self, setting: object, error: type) -> None:
        with pytest.raises(error):
            check_setting(setting)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "setting",
        [
            NewBuyerSetting(Decimal("0.02")),
            TierSetting("EUR", (Tier(Decimal(0), C), Tier(Decimal("1000.00"), Decimal("0.02")))),
            Caps({"USD": Decimal("5.00")}, {"USD": Decimal("1000.00"), "JPY": Decimal(900)}),
        ],
    )
    def test_a_setting_is_stored_and_read_back_unchanged(self, setting: object) -> None:
        assert setting_of(setting_json(setting)) == setting  # type: ignore[arg-type]

    def test_incentives_are_versioned_like_rates(self) -> None:
        later = T0 + timedelta(days=1)
        tiers = (Tier(Decimal("1000.00"), Decimal("0.02")),)
        with pytest.raises(NotJoined):
            ProgramHistory().append(
                ProgramOp(OpKind.NEW_BUYER, T0, incentive=NewBuyerSetting(Decimal("0.02")))
            )
        history = ProgramHistory(
            (
                ProgramOp(OpKind.JOIN, T0),
                ProgramOp(OpKind.NEW_BUYER, later, incentive=NewBuyerSetting(Decimal("0.02"))),
                ProgramOp(OpKind.TIERS, later, incentive=TierSetting("USD", tiers)),
                ProgramOp(OpKind.CAPS, later, incentive=Caps({"USD": Decimal("5.00")})),
                ProgramOp(OpKind.TIERS, later, incentive=TierSetting("EUR", tiers)),
                ProgramOp(OpKind.TIERS, later, incentive=TierSetting("EUR", ())),
            )
        )
        assert history.state_at(T0).incentives == Incentives()
        now = history.state_at(later).incentives
        assert now.new_buyer_rate == Decimal("0.02")
        assert now.tiers == {"USD": tiers}
        assert now.caps == Caps({"USD": Decimal("5.00")})


line_st = st.builds(
    lambda price, qty, ship, product: LineItem(product, None, qty, price, ship),
    st.integers(0, 100_000).map(lambda n: Decimal(n) * C),
    st.integers(1, 5),
    st.integers(0, 2_000).map(lambda n: Decimal(n) * C),
    st.sampled_from(["p1", "p2", "p3"]),
)


class TestNewBuyerInTheCommission:
    @given(
        st.lists(line_st, min_size=1, max_size=4),
        rates,
        rates,
        st.booleans(),
        st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3"]), cents), max_size=3),
    )
    @settings(max_examples=300)
    def test_each_line_pays_its_rate_plus_the_bonus_in_force_at_placement(
        self,
        items: list[LineItem],
        rate: Decimal,
        extra: Decimal,
        new_buyer: bool,
        refund_specs: list[tuple[str, Decimal]],
    ) -> None:
        placed = T0 + timedelta(days=1)
        history = ProgramHistory(
            (
                ProgramOp(OpKind.JOIN, T0, rate=rate),
                ProgramOp(OpKind.NEW_BUYER, T0, incentive=NewBuyerSetting(extra)),
                # raised after placement: does not count for the order
                ProgramOp(OpKind.NEW_BUYER, placed, incentive=NewBuyerSetting(Decimal("0.9"))),
            )
        )
        refunds = tuple(
            Refund(f"r{n}", placed, (RefundItem(p, amount),))
            for n, (p, amount) in enumerate(refund_specs)
        )
        facts = OrderFacts(
            "o1",
            "s1",
            "USD",
            placed - timedelta(seconds=1),
            tuple(items),
            OrderStatus.COMPLETED,
            placed,
            affiliate_id="a1",
            refunds=refunds,
            new_buyer=new_buyer,
        )
        got = compute_order(facts, history)
        paid_rate = min(Fraction(1), Fraction(rate) + (Fraction(extra) if new_buyer else 0))
        for item, li in zip(got.items, items, strict=True):
            assert item.rate == rate
            assert item.bonus_rate == (min(Decimal(1), rate + extra) - rate if new_buyer else 0)
            assert item.commission == half_up(Fraction(li.base) * paid_rate)
        # refunds of a product reverse at the same combined rate, capped at the commission
        without = compute_order(replace(facts, new_buyer=False), history)
        assert without.items == tuple(replace(i, bonus_rate=Decimal(0)) for i in without.items)
        if not new_buyer:
            assert got == without
        assert got.net >= without.net
