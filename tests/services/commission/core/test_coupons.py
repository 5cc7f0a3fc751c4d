"""Coupon codes and the coupon policy in the program rules: a code's shape, validity and
owner, and which program states accept the changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.commission.core.errors import (
    CouponTaken,
    InvalidCouponCode,
    InvalidValidity,
    NotJoined,
)
from services.commission.core.program import (
    Coupon,
    OpKind,
    ProgramHistory,
    ProgramOp,
    check_coupon,
    coupon_json,
)
from shared.coupons import CouponPolicy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
D = timedelta(days=1)


class TestCodes:
    @pytest.mark.parametrize("code", ["A", "anna10", "ANNA-10_x", "9" * 64])
    def test_a_code_of_the_shape_is_stored_upper_case(self, code: str) -> None:
        assert check_coupon(Coupon(code, "aff"), None).code == code.upper()

    @pytest.mark.parametrize("code", ["", "a b", "anna10!", "ä", "x" * 65, "a\x00", "a/b"])
    def test_any_other_code_is_refused_with_its_code(self, code: str) -> None:
        with pytest.raises(InvalidCouponCode) as refused:
            check_coupon(Coupon(code, "aff"), None)
        assert (refused.value.status_code, refused.value.code) == (422, "invalid_coupon_code")

    def test_valid_from_must_be_before_valid_to(self) -> None:
        for end in (T0, T0 - D):
            with pytest.raises(InvalidValidity) as refused:
                check_coupon(Coupon("A", "aff", T0, end), None)
            assert refused.value.status_code == 422
        assert check_coupon(Coupon("A", "aff", T0, T0 + D), None).valid_to == T0 + D
        assert check_coupon(Coupon("A", "aff", None, T0), None).valid_from is None

    def test_a_code_names_one_affiliate_until_deleted(self) -> None:
        existing = Coupon("ANNA10", "aff-anna")
        with pytest.raises(CouponTaken) as refused:
            check_coupon(Coupon("anna10", "aff-bob"), existing)
        assert (refused.value.status_code, refused.value.code) == (409, "coupon_taken")
        # the owner may change the validity
        again = check_coupon(Coupon("anna10", "aff-anna", T0), existing)
        assert again == Coupon("ANNA10", "aff-anna", T0)

    def test_the_record_keeps_a_code_or_nothing(self) -> None:
        assert coupon_json(None) == {}
        assert coupon_json(Coupon("A", "aff", T0)) == {
            "code": "A",
            "affiliate_id": "aff",
            "valid_from": T0.isoformat(),
            "valid_to": None,
        }


class TestProgramStates:
    joined = ProgramHistory((ProgramOp(OpKind.JOIN, T0),))

    def test_the_policy_is_off_until_set_then_versioned(self) -> None:
        assert self.joined.current().coupon_policy is CouponPolicy.OFF
        h = self.joined.append(
            ProgramOp(OpKind.COUPON_POLICY, T0 + D, policy=CouponPolicy.COUPON_WINS)
        )
        assert h.state_at(T0 + D - timedelta(microseconds=1)).coupon_policy is CouponPolicy.OFF
        assert h.state_at(T0 + D).coupon_policy is CouponPolicy.COUPON_WINS

    def test_policy_and_codes_need_the_program_deletion_does_not(self) -> None:
        out = ProgramHistory()
        with pytest.raises(NotJoined):
            out.append(ProgramOp(OpKind.COUPON_POLICY, T0, policy=CouponPolicy.CLICK_WINS))
        with pytest.raises(NotJoined):
            out.append(ProgramOp(OpKind.COUPON, T0, "A", coupon=Coupon("A", "aff")))
        assert out.append(ProgramOp(OpKind.DELETE_COUPON, T0, "A")).current().joined is False

    def test_codes_leave_the_program_state_unchanged(self) -> None:
        h = self.joined.append(ProgramOp(OpKind.COUPON, T0 + D, "A", coupon=Coupon("A", "a")))
        assert h.current() == self.joined.current()
