"""Coupon codes in the pure attribution rule: the three policies, a code's validity at
placement (start included, end excluded, from its registration to its deletion), and
properties against the click-only rule (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.attribution.core import (
    DEFAULT_WINDOW,
    Click,
    Coupon,
    CouponHistory,
    CouponVersion,
    OrderRef,
    Policies,
    Verdict,
    coupon_for,
    decide,
    explain,
    ineligibility,
)
from shared.coupons import CouponPolicy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
D = timedelta(days=1)
ORDER = OrderRef("o1", "s1", "v1", T0, "anna10")
ANNA = Coupon("ANNA10", "aff-anna")


def click(cid: str, at: datetime, **kw: object) -> Click:
    fields: dict[str, object] = {"store_id": "s1", "visitor_id": "v1", "affiliate_id": "aff-a"}
    fields.update(kw)
    return Click(click_id=cid, occurred_at=at, **fields)  # type: ignore[arg-type]


class TestPolicies:
    def test_off_clicks_only_even_with_a_valid_code(self) -> None:
        c = click("c1", T0 - D)
        d = decide(ORDER, [c], DEFAULT_WINDOW, CouponPolicy.OFF, ANNA)
        assert (d.rule, d.affiliate_id, d.coupon) == ("last_click", "aff-a", None)
        assert decide(ORDER, [], DEFAULT_WINDOW, CouponPolicy.OFF, ANNA).rule == "organic"

    def test_coupon_wins_over_a_later_click(self) -> None:
        c = click("c1", T0)
        d = decide(ORDER, [c], DEFAULT_WINDOW, CouponPolicy.COUPON_WINS, ANNA)
        assert (d.rule, d.affiliate_id, d.click, d.coupon) == ("coupon", "aff-anna", None, ANNA)

    def test_click_wins_keeps_the_eligible_click(self) -> None:
        c = click("c1", T0 - 3 * D)
        d = decide(ORDER, [c], DEFAULT_WINDOW, CouponPolicy.CLICK_WINS, ANNA)
        assert (d.rule, d.affiliate_id, d.coupon) == ("last_click", "aff-a", None)

    def test_click_wins_falls_back_to_the_code_without_an_eligible_click(self) -> None:
        stale = click("c1", T0 - 16 * D)  # outside the window
        bot = click("c2", T0 - D, suspicious=True)
        other = click("c3", T0 - D, store_id="s2")
        d = decide(ORDER, [stale, bot, other], DEFAULT_WINDOW, CouponPolicy.CLICK_WINS, ANNA)
        assert (d.rule, d.affiliate_id) == ("coupon", "aff-anna")

    def test_no_valid_code_is_the_click_rule_whatever_the_policy(self) -> None:
        c = click("c1", T0 - D)
        for policy in CouponPolicy:
            assert decide(ORDER, [c], DEFAULT_WINDOW, policy, None).affiliate_id == "aff-a"
            assert decide(ORDER, [], DEFAULT_WINDOW, policy, None).rule == "organic"

    def test_the_window_is_reported_for_a_coupon_decision(self) -> None:
        d = decide(ORDER, [], DEFAULT_WINDOW, CouponPolicy.COUPON_WINS, ANNA)
        assert (d.window_start, d.window_end) == (T0 - DEFAULT_WINDOW, T0)


class TestExplain:
    def test_eligible_clicks_lose_to_the_code_the_others_keep_their_reason(self) -> None:
        late, early = click("c1", T0 - D), click("c2", T0 - 2 * D)
        after, bot = click("c3", T0 + D), click("c4", T0 - D, suspicious=True)
        decision, verdicts = explain(
            ORDER, [late, early, after, bot], DEFAULT_WINDOW, CouponPolicy.COUPON_WINS, ANNA
        )
        assert decision.rule == "coupon"
        assert {c.click_id: v for c, v in verdicts} == {
            "c1": Verdict.COUPON_WON,
            "c2": Verdict.COUPON_WON,
            "c3": Verdict.AFTER_ORDER,
            "c4": Verdict.SUSPICIOUS,
        }

    def test_click_wins_explains_as_before(self) -> None:
        late, early = click("c1", T0 - D), click("c2", T0 - 2 * D)
        _, verdicts = explain(ORDER, [late, early], DEFAULT_WINDOW, CouponPolicy.CLICK_WINS, ANNA)
        assert [v for _, v in verdicts] == [Verdict.WON, Verdict.EARLIER]


class TestValidity:
    """Start included, end excluded; a code counts from its registration to its deletion."""

    history = CouponHistory(
        "ANNA10",
        (
            CouponVersion(T0 - 10 * D, "aff-anna", T0 - 5 * D, T0 + 5 * D),
            CouponVersion(T0 + 2 * D, "aff-anna", None, T0 + 3 * D),  # validity shortened
            CouponVersion(T0 + 20 * D, None),  # deleted
            CouponVersion(T0 + 30 * D, "aff-bob"),  # registered again, to another affiliate
        ),
    )

    def test_before_registration_nothing(self) -> None:
        assert self.history.valid_at(T0 - 11 * D) is None

    def test_valid_from_is_included(self) -> None:
        assert self.history.valid_at(T0 - 5 * D) == ANNA
        assert self.history.valid_at(T0 - 5 * D - timedelta(microseconds=1)) is None

    def test_valid_to_is_excluded(self) -> None:
        assert self.history.valid_at(T0 + 2 * D - timedelta(microseconds=1)) == ANNA
        # from T0+2d the shortened registration is in force: valid until T0+3d, excluded
        assert self.history.valid_at(T0 + 3 * D - timedelta(microseconds=1)) == ANNA
        assert self.history.valid_at(T0 + 3 * D) is None

    def test_a_deleted_code_is_valid_for_nothing_from_its_deletion(self) -> None:
        assert self.history.valid_at(T0 + 20 * D) is None
        assert self.history.valid_at(T0 + 25 * D) is None

    def test_a_code_registered_again_names_its_new_owner(self) -> None:
        assert self.history.valid_at(T0 + 30 * D) == Coupon("ANNA10", "aff-bob")

    def test_with_version_keeps_time_order_and_is_idempotent(self) -> None:
        v = CouponVersion(T0, "aff-anna")
        h = CouponHistory("X").with_version(CouponVersion(T0 + D, None))
        assert h is not None
        h2 = h.with_version(v)
        assert h2 is not None
        assert [x.effective_at for x in h2.versions] == [T0, T0 + D]
        assert h2.with_version(v) is None

    def test_the_code_is_matched_in_any_case_and_only_on_its_store(self) -> None:
        codes = {("s1", "ANNA10"): CouponHistory("ANNA10", (CouponVersion(T0 - D, "aff-anna"),))}
        assert coupon_for(ORDER, codes) == ANNA
        assert coupon_for(OrderRef("o1", "s1", "v1", T0, "AnNa10"), codes) == ANNA
        assert coupon_for(OrderRef("o1", "s2", "v1", T0, "ANNA10"), codes) is None
        assert coupon_for(OrderRef("o1", "s1", "v1", T0, "BOB5"), codes) is None
        assert coupon_for(OrderRef("o1", "s1", "v1", T0), codes) is None


class TestPolicyHistory:
    def test_the_policy_in_force_at_placement(self) -> None:
        p = Policies()
        assert p.at(T0) is CouponPolicy.OFF
        p1 = p.with_change(T0, CouponPolicy.COUPON_WINS)
        assert p1 is not None
        p2 = p1.with_change(T0 + D, CouponPolicy.OFF)
        assert p2 is not None
        assert p2.at(T0 - timedelta(microseconds=1)) is CouponPolicy.OFF
        assert p2.at(T0) is CouponPolicy.COUPON_WINS  # from its effective time, included
        assert p2.at(T0 + D) is CouponPolicy.OFF

    def test_a_change_that_changes_nothing_is_not_recorded(self) -> None:
        assert Policies().with_change(T0, CouponPolicy.OFF) is None
        p = Policies().with_change(T0, CouponPolicy.CLICK_WINS)
        assert p is not None
        assert p.with_change(T0, CouponPolicy.OFF) is None  # already one at that time
        assert p.with_change(T0 + D, CouponPolicy.CLICK_WINS) is None


# -- properties against the click-only rule ---------------------------------------------------

clicks = st.lists(
    st.builds(
        Click,
        click_id=st.from_regex(r"c[0-9]{1,3}", fullmatch=True),
        store_id=st.sampled_from(["s1", "s2"]),
        visitor_id=st.sampled_from(["v1", "v2"]),
        affiliate_id=st.sampled_from(["a1", "a2", "aff-anna"]),
        occurred_at=st.integers(-20 * 86_400, 2 * 86_400).map(lambda s: T0 + timedelta(seconds=s)),
        suspicious=st.booleans(),
    ),
    max_size=30,
)
coupons = st.one_of(st.none(), st.builds(Coupon, st.just("ANNA10"), st.sampled_from(["a1", "b"])))
policies = st.sampled_from(list(CouponPolicy))


def eligible(cs: list[Click]) -> bool:
    return any(ineligibility(c, ORDER, DEFAULT_WINDOW) is None for c in cs)


@given(clicks, coupons)
def test_off_is_the_click_only_rule(cs: list[Click], coupon: Coupon | None) -> None:
    assert decide(ORDER, cs, DEFAULT_WINDOW, CouponPolicy.OFF, coupon) == decide(ORDER, cs)


@given(clicks, policies)
def test_without_a_valid_code_every_policy_is_the_click_only_rule(
    cs: list[Click], policy: CouponPolicy
) -> None:
    assert decide(ORDER, cs, DEFAULT_WINDOW, policy, None) == decide(ORDER, cs)


@given(clicks, st.sampled_from(["a1", "b"]))
def test_coupon_wins_with_a_valid_code_always_goes_to_its_owner(
    cs: list[Click], owner: str
) -> None:
    d = decide(ORDER, cs, DEFAULT_WINDOW, CouponPolicy.COUPON_WINS, Coupon("ANNA10", owner))
    assert (d.rule, d.affiliate_id, d.click) == ("coupon", owner, None)


@given(clicks, coupons)
def test_click_wins_is_the_click_rule_when_a_click_is_eligible_else_the_code(
    cs: list[Click], coupon: Coupon | None
) -> None:
    d = decide(ORDER, cs, DEFAULT_WINDOW, CouponPolicy.CLICK_WINS, coupon)
    if eligible(cs) or coupon is None:
        assert d == decide(ORDER, cs)
    else:
        assert (d.rule, d.affiliate_id, d.coupon) == ("coupon", coupon.affiliate_id, coupon)


@given(clicks, policies, coupons)
def test_explain_agrees_with_decide_and_no_click_wins_against_a_code(
    cs: list[Click], policy: CouponPolicy, coupon: Coupon | None
) -> None:
    decision, verdicts = explain(ORDER, cs, DEFAULT_WINDOW, policy, coupon)
    assert decision == decide(
        ORDER, {c.click_id: c for c in cs}.values(), DEFAULT_WINDOW, policy, coupon
    )
    won = [c for c, v in verdicts if v is Verdict.WON]
    if decision.coupon is not None:
        assert won == []
        assert all(
            (v is Verdict.COUPON_WON) == (ineligibility(c, ORDER, DEFAULT_WINDOW) is None)
            for c, v in verdicts
        )
    else:
        assert all(v is not Verdict.COUPON_WON for _, v in verdicts)
        assert won == ([decision.click] if decision.click else [])


versions = st.lists(
    st.builds(
        CouponVersion,
        effective_at=st.integers(-10, 10).map(lambda d: T0 + d * D),
        affiliate_id=st.one_of(st.none(), st.sampled_from(["a1", "a2"])),
        valid_from=st.one_of(st.none(), st.integers(-10, 10).map(lambda d: T0 + d * D)),
        valid_to=st.one_of(st.none(), st.integers(-10, 10).map(lambda d: T0 + d * D)),
    ),
    max_size=6,
    unique_by=lambda v: v.effective_at,
)


@given(versions, st.integers(-12, 12).map(lambda h: T0 + h * D + timedelta(hours=h % 3 * 8)))
def test_validity_equals_a_brute_force_reference(vs: list[CouponVersion], when: datetime) -> None:
    history = CouponHistory("ANNA10", tuple(sorted(vs, key=lambda v: v.effective_at)))
    in_force = [v for v in vs if v.effective_at <= when]
    latest = max(in_force, key=lambda v: v.effective_at) if in_force else None
    expected = (
        Coupon("ANNA10", latest.affiliate_id)
        if latest is not None
        and latest.affiliate_id is not None
        and (latest.valid_from is None or latest.valid_from <= when)
        and (latest.valid_to is None or when < latest.valid_to)
        else None
    )
    assert history.valid_at(when) == expected
