"""The rules' refusals, pure: each case is a class carrying its HTTP status and machine code
(as :class:`services.commission.errors.CommissionError` does for the shells), so that the
service answers them without a translation table and the core imports no framework."""

from __future__ import annotations

from typing import Any, ClassVar


class ProgramError(Exception):
    """A program or ledger rule refused an operation (409 unless the case says otherwise)."""

    status_code: ClassVar[int] = 409
    code: ClassVar[str] = "refused"
    default_message: ClassVar[str] = "the rules refuse this operation"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        self.details = details


class InvalidRate(ProgramError):
    status_code = 422
    code = "invalid_rate"


class InvalidWindow(ProgramError):
    status_code = 422
    code = "invalid_window"


class InvalidLockPeriod(ProgramError):
    status_code = 422
    code = "invalid_lock_period"


class InvalidTiers(ProgramError):
    status_code = 422
    code = "invalid_tiers"


class InvalidCaps(ProgramError):
    status_code = 422
    code = "invalid_caps"


class InvalidCouponCode(ProgramError):
    status_code = 422
    code = "invalid_coupon_code"
    default_message = "a coupon code is 1 to 64 letters, digits, '_' or '-'"


class InvalidValidity(ProgramError):
    status_code = 422
    code = "invalid_validity"
    default_message = "valid_from must be before valid_to"


class CouponTaken(ProgramError):
    code = "coupon_taken"
    default_message = "the code belongs to another affiliate: delete it first"


class AlreadyJoined(ProgramError):
    code = "already_joined"
    default_message = "the store is already in the program"


class RejoinTooEarly(ProgramError):
    code = "rejoin_too_early"
    default_message = "a store may not rejoin within 15 days of exiting"


class NotJoined(ProgramError):
    code = "not_joined"
    default_message = "the store is not in the program"


class ExitTooEarly(ProgramError):
    code = "exit_too_early"
    default_message = "a store may exit no earlier than 15 days after joining"


class TooManyMainProducts(ProgramError):
    code = "too_many_main_products"


class OutOfOrder(ProgramError):
    code = "out_of_order"
    default_message = "program operations must be in time order"


class NothingToPay(ProgramError):
    code = "nothing_to_pay"
    default_message = "the affiliate has no positive payable balance"


class FxRateMissing(ProgramError):
    code = "fx_rate_missing"
    default_message = "no exchange rate is recorded for a conversion the run needs"


class InvalidFxRate(ProgramError):
    status_code = 422
    code = "invalid_fx_rate"
    default_message = "a rate is keyed 'AAA/BBB' (two ISO 4217 codes) and is a positive decimal"


class InvalidPeriod(ProgramError):
    status_code = 422
    code = "invalid_period"
    default_message = "a period is YYYY-MM, a year from 2000 to 2100"


class RangeError(ProgramError):
    """A report range that cannot be served."""

    status_code = 422


class OutOfRange(RangeError):
    code = "out_of_range"
    default_message = "to must be before the year 9999"


class EmptyRange(RangeError):
    code = "empty_range"
    default_message = "from must not be after to"


class RangeTooLong(RangeError):
    code = "range_too_long"


class QueryTooShort(ProgramError):
    status_code = 422
    code = "query_too_short"
    default_message = "q must hold at least 3 letters or digits in a row"


class Locked(ProgramError):
    code = "locked"
    default_message = "the order's commission is locked: nothing changes it any more"


class TooManyAdjustments(ProgramError):
    code = "too_many_adjustments"
    default_message = "an order takes at most 100 adjustments"


class LinesRequired(ProgramError):
    status_code = 422
    code = "lines_required"
    default_message = "an amend names the lines it lowers"


class UnknownProduct(ProgramError):
    status_code = 422
    code = "unknown_product"
    default_message = "the order holds no line of this product"


class AmountAboveBase(ProgramError):
    status_code = 422
    code = "amount_above_base"
    default_message = "an amend may not lower a line's commission base below zero"


class AmountTooPrecise(ProgramError):
    status_code = 422
    code = "amount_too_precise"
    default_message = "the amount has more decimals than its currency allows"


# -- partner approval (core/partners.py) --


class PartnerBanned(ProgramError):
    code = "partner_banned"
    default_message = "the store banned this affiliate: it cannot apply"


class InvalidTransition(ProgramError):
    code = "invalid_transition"
    default_message = "this decision does not apply to the partner's status"


class ReasonRequired(ProgramError):
    status_code = 422
    code = "reason_required"
    default_message = "a rejection or a ban needs a reason"
