"""Partner approval in the pure core: the status transitions against a table written from the
rules, the tracker's standing rules, and the commission of a banned affiliate's orders against
a brute-force reference (a ban counts for orders placed while it is in force)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.commission.core.commission import LineItem, OrderFacts, OrderStatus, compute_order
from services.commission.core.errors import InvalidTransition, PartnerBanned, ReasonRequired
from services.commission.core.partners import PartnerAction, PartnerReason, decide
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp
from shared.partners import (
    ClickSuspicion,
    Enrollment,
    PartnerStatus,
    click_suspicion,
    may_promote,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)
P, A, R, B = (
    PartnerStatus.PENDING,
    PartnerStatus.APPROVED,
    PartnerStatus.REJECTED,
    PartnerStatus.BANNED,
)
STATUSES: list[PartnerStatus | None] = [None, P, A, R, B]
WHY = PartnerReason.FRAUD

#: the rules as docs/partners.md states them, one cell per (status, action): the status after,
#: or the refusal's code ("same": nothing changes). ``apply`` depends on the enrollment.
TABLE: dict[tuple[PartnerStatus | None, PartnerAction], PartnerStatus | str] = {
    (None, PartnerAction.APPROVE): A,
    (P, PartnerAction.APPROVE): A,
    (A, PartnerAction.APPROVE): "same",
    (R, PartnerAction.APPROVE): A,
    (B, PartnerAction.APPROVE): A,
    (None, PartnerAction.REJECT): "invalid_transition",
    (P, PartnerAction.REJECT): R,
    (A, PartnerAction.REJECT): R,
    (R, PartnerAction.REJECT): "same",
    (B, PartnerAction.REJECT): "invalid_transition",
    (None, PartnerAction.BAN): B,
    (P, PartnerAction.BAN): B,
    (A, PartnerAction.BAN): B,
    (R, PartnerAction.BAN): B,
    (B, PartnerAction.BAN): "same",
}


def applied(status: PartnerStatus | None, enrollment: Enrollment) -> PartnerStatus | str:
    if status is B:
        return "partner_banned"
    if enrollment is Enrollment.OPEN:  # approved at once (a pending one too)
        return "same" if status is A else A
    return "same" if status in (P, A) else P


class TestTransitions:
    @pytest.mark.parametrize("enrollment", list(Enrollment))
    @pytest.mark.parametrize("action", list(PartnerAction))
    @pytest.mark.parametrize("status", STATUSES)
    def test_every_status_and_action_follows_the_table(
        self, status: PartnerStatus | None, action: PartnerAction, enrollment: Enrollment
    ) -> None:
        want = (
            applied(status, enrollment) if action is PartnerAction.APPLY else TABLE[status, action]
        )
        if want in ("invalid_transition", "partner_banned"):
            with pytest.raises((InvalidTransition, PartnerBanned)) as refused:
                decide(status, action, enrollment, WHY)
            assert refused.value.code == want
            return
        move = decide(status, action, enrollment, WHY)
        assert move.before is status
        assert move.after is (status if want == "same" else want)
        assert move.changed is (want != "same")

    @pytest.mark.parametrize("action", [PartnerAction.REJECT, PartnerAction.BAN])
    def test_reject_and_ban_need_a_reason(self, action: PartnerAction) -> None:
        with pytest.raises(ReasonRequired) as refused:
            decide(P, action, Enrollment.APPROVAL)
        assert (refused.value.status_code, refused.value.code) == (422, "reason_required")

    def test_approve_and_apply_need_no_reason(self) -> None:
        assert decide(P, PartnerAction.APPROVE, Enrollment.APPROVAL).after is A
        assert decide(None, PartnerAction.APPLY, Enrollment.APPROVAL).after is P

    @pytest.mark.parametrize("enrollment", list(Enrollment))
    @pytest.mark.parametrize("action", list(PartnerAction))
    @pytest.mark.parametrize("status", STATUSES)
    def test_the_same_action_twice_changes_nothing_the_second_time(
        self, status: PartnerStatus | None, action: PartnerAction, enrollment: Enrollment
    ) -> None:
        try:
            first = decide(status, action, enrollment, WHY)
        except (InvalidTransition, PartnerBanned):
            return
        second = decide(first.after, action, enrollment, WHY)
        assert (second.after, second.changed, second.op) == (first.after, False, None)

    @pytest.mark.parametrize("action", list(PartnerAction))
    @pytest.mark.parametrize("status", STATUSES)
    def test_only_entering_or_leaving_banned_is_a_program_operation(
        self, status: PartnerStatus | None, action: PartnerAction
    ) -> None:
        try:
            move = decide(status, action, Enrollment.APPROVAL, WHY)
        except (InvalidTransition, PartnerBanned):
            return
        if move.changed and move.after is B:
            assert move.op is OpKind.BAN
        elif move.changed and status is B:
            assert move.op is OpKind.UNBAN
        else:
            assert move.op is None


class TestStanding:
    @pytest.mark.parametrize("enrollment", list(Enrollment))
    @pytest.mark.parametrize("status", STATUSES)
    def test_who_may_promote_and_why_a_click_is_suspicious(
        self, status: PartnerStatus | None, enrollment: Enrollment
    ) -> None:
        # the reference: banned never; open: anyone else; approval: approved only
        want = status is not B and (enrollment is Enrollment.OPEN or status is A)
        assert may_promote(enrollment, status) is want
        reason = click_suspicion(enrollment, status)
        if status is B:
            assert reason is ClickSuspicion.BANNED
        else:
            assert reason is (None if want else ClickSuspicion.NOT_APPROVED)


def item() -> LineItem:
    return LineItem("p1", None, 1, Decimal("100.00"), Decimal(0))


def facts(affiliate: str, placed_at: datetime) -> OrderFacts:
    return OrderFacts(
        "o1",
        "s1",
        "USD",
        affiliate_id=affiliate,
        placed_at=placed_at,
        items=(item(),),
        status=OrderStatus.COMPLETED,
        status_at=placed_at + S,
    )


class TestBannedAffiliatesOrders:
    def test_bans_and_enrollment_change_out_of_the_program_too(self) -> None:
        h = ProgramHistory().append(
            ProgramOp(OpKind.ENROLLMENT, T0, enrollment=Enrollment.APPROVAL)
        )
        h = h.append(ProgramOp(OpKind.BAN, T0 + S, key="a"))
        state = h.current()
        assert (state.joined, state.enrollment, state.banned) == (
            False,
            Enrollment.APPROVAL,
            frozenset({"a"}),
        )
        assert h.append(ProgramOp(OpKind.UNBAN, T0 + 2 * S, key="a")).current().banned == set()

    def test_an_order_placed_at_the_ban_instant_pays_nothing_one_before_pays(self) -> None:
        h = ProgramHistory().append(ProgramOp(OpKind.JOIN, T0, rate=Decimal("0.1")))
        h = h.append(ProgramOp(OpKind.BAN, T0 + 10 * S, key="a"))
        assert compute_order(facts("a", T0 + 9 * S), h).net == Decimal("10.00")
        assert compute_order(facts("a", T0 + 10 * S), h).net == Decimal(0)
        assert compute_order(facts("b", T0 + 10 * S), h).net == Decimal("10.00")

    @settings(max_examples=300, deadline=None)
    @given(
        ops=st.lists(
            st.tuples(st.integers(1, 100), st.sampled_from(["a", "b"]), st.booleans()),
            max_size=12,
        ),
        placed=st.integers(0, 110),
        affiliate=st.sampled_from(["a", "b"]),
    )
    def test_commission_follows_the_ban_in_force_at_placement(
        self, ops: list[tuple[int, str, bool]], placed: int, affiliate: str
    ) -> None:
        h = ProgramHistory().append(ProgramOp(OpKind.JOIN, T0, rate=Decimal("0.1")))
        for at, who, ban in sorted(ops, key=lambda o: o[0]):
            h = h.append(ProgramOp(OpKind.BAN if ban else OpKind.UNBAN, T0 + at * S, key=who))
        # the reference: the last ban or unban of the affiliate at or before placement decides
        mine = [
            ban
            for at, who, ban in sorted(ops, key=lambda o: o[0])
            if who == affiliate and at <= placed
        ]
        banned = bool(mine) and mine[-1]
        got = compute_order(facts(affiliate, T0 + placed * S), h)
        assert got.net == (Decimal(0) if banned else Decimal("10.00"))
