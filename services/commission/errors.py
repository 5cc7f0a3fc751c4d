"""Business errors of the commission service's shells (routes and services): one base class,
one subclass per case, each carrying its HTTP status and machine code (polar's
``PolarError``). The pure core's own refusals are :mod:`services.commission.core.errors`,
shaped the same way; both are answered with the one error body of :mod:`shared.http`."""

from __future__ import annotations

from typing import Any, ClassVar

from shared.http import AllianceError


class CommissionError(AllianceError):
    """A refusal of the commission service: ``status_code`` and ``code`` are the class's."""

    status_code: int = 400
    code: str = "bad_request"
    default_message: ClassVar[str] = "the request was refused"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(
            type(self).status_code, type(self).code, message or self.default_message, **details
        )


class Unauthorized(CommissionError):
    status_code = 401
    code = "unauthorized"
    default_message = "a valid API key is required"


class Forbidden(CommissionError):
    status_code = 403
    code = "forbidden"
    default_message = "this key may not see that"


class NotFound(CommissionError):
    status_code = 404
    code = "not_found"

    def __init__(self, what: str, **details: Any) -> None:
        super().__init__(f"{what} not found", **details)


class AlreadyExists(CommissionError):
    status_code = 409
    code = "already_exists"


class BadCursor(CommissionError):
    status_code = 422
    code = "bad_cursor"
    default_message = "cursor is not one this API gave"


class EmptyTimeRange(CommissionError):
    status_code = 422
    code = "empty_range"
    default_message = "from must be before to"


class PeriodNotOver(CommissionError):
    status_code = 409
    code = "period_not_over"
    default_message = "a month can be closed once it is over"


class IdempotencyKeyReused(CommissionError):
    status_code = 409
    code = "idempotency_key_reused"
    default_message = "this key was used for another payout"


class NothingToFile(CommissionError):
    status_code = 409
    code = "nothing_to_file"
    default_message = "the run has no EUR payout: a pain.001 file would be empty (use csv)"


class NotARunPayout(CommissionError):
    status_code = 409
    code = "not_a_run_payout"
    default_message = "invoices are made for the payouts of payout runs"


class InvalidAmount(CommissionError):
    status_code = 422
    code = "amount_too_precise"
