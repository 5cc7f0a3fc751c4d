"""Request and response models of the finance routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from services.commission.core.commission import AdjustmentReason
from services.commission.core.reconciliation import DayFigures
from services.commission.core.statements import StoreTotals
from shared.events import Currency, DecimalStr, PrincipalId, Text, UtcDatetime
from shared.money import fits_currency, fmt, from_minor


class SettlementTotals(BaseModel):
    currency: str
    affiliate_sales: str  # product amount of completed chargeable orders, shipping excluded
    orders_completed: int
    commission_payable: str  # gross commission of those orders
    reversed: str  # refunds' reversals of those orders (claw-backs included)
    net: str
    orders_open: int  # chargeable orders placed in the range, not completed yet
    estimated: str  # their commission, not payable yet


class Settlement(BaseModel):
    subject: str  # store:<id> | affiliate:<id>
    start: datetime
    end: datetime
    totals: list[SettlementTotals]


class LedgerLine(BaseModel):
    posting_id: int
    txn_id: int
    key: str
    kind: str
    store_id: str | None
    order_id: str | None
    account: str
    currency: str
    amount: str
    occurred_at: datetime
    reason: str | None = None  # an adjustment's reason code (docs/program-controls.md)

    @classmethod
    def of(cls, r: Any) -> LedgerLine:
        """A posting as the ledger page shows it."""
        return cls(
            posting_id=r.posting_id,
            txn_id=r.id,
            key=r.key,
            kind=r.kind,
            store_id=r.store_id,
            order_id=r.order_id,
            account=r.account,
            currency=r.currency,
            amount=str(from_minor(r.amount_minor, r.currency)),
            occurred_at=r.occurred_at,
            reason=r.reason,
        )


class LedgerPage(BaseModel):
    items: list[LedgerLine]
    next_cursor: int | None  # pass as ``cursor`` for the next page; None on the last page


class PayoutRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"affiliate_id": "aff-a", "up_to": "2026-03-31T23:59:59Z"}]
        },
    )

    affiliate_id: PrincipalId
    up_to: UtcDatetime


class PayoutView(BaseModel):
    payout_id: int
    affiliate_id: str
    up_to: datetime
    amounts: dict[str, str]  # currency → amount paid
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> PayoutView:
        return cls(
            payout_id=row.id,
            affiliate_id=row.affiliate_id,
            up_to=row.up_to,
            amounts=row.amounts,
            created_at=row.created_at,
        )


class StatementTotals(BaseModel):
    """What the ledger posted on the store's account in the period (later events land in the
    period they are posted in)."""

    currency: str
    orders_charged: int  # commission transactions posted in the period
    commission: str  # commission charged (owed by the store)
    refunds: int  # reversal transactions posted in the period (claw-backs included)
    reversed: str
    net: str

    @classmethod
    def of(cls, t: StoreTotals) -> StatementTotals:
        return cls(
            currency=t.currency,
            orders_charged=t.orders_charged,
            commission=str(t.commission),
            refunds=t.refunds,
            reversed=str(t.reversed),
            net=str(t.net),
        )


class Statement(BaseModel):
    store_id: str
    period: str  # YYYY-MM (UTC)
    start: datetime
    end: datetime
    closed: bool
    closed_at: datetime | None
    closed_by: str | None
    totals: list[StatementTotals]  # frozen at closing when closed, live otherwise


class ReconciliationDay(BaseModel):
    day: str  # YYYY-MM-DD (UTC)
    currency: str
    estimated_at_placement: str  # gross commission of chargeable orders placed that day
    became_payable: str  # commission posted that day (orders completed)
    cancelled: str  # gross commission of orders cancelled that day
    reversed: str  # reversals posted that day (refunds, claw-backs)
    adjusted: str  # adjustment transactions posted that day (signed, as credited)
    day_orders_payable: str  # of that day's estimate: orders completed since
    day_orders_cancelled: str  # … cancelled since
    day_orders_open: str  # … still placed
    day_orders_adjusted: str  # … taken off by reason-coded adjustments
    unexplained: str  # estimate − the four above: zero when the books agree

    @classmethod
    def of(cls, day: str, currency: str, f: DayFigures) -> ReconciliationDay:
        return cls(
            day=day,
            currency=currency,
            estimated_at_placement=fmt(f.estimated_at_placement, currency),
            became_payable=fmt(f.became_payable, currency),
            cancelled=fmt(f.cancelled, currency),
            reversed=fmt(f.reversed, currency),
            adjusted=fmt(f.adjusted, currency),
            day_orders_payable=fmt(f.day_orders_payable, currency),
            day_orders_cancelled=fmt(f.day_orders_cancelled, currency),
            day_orders_open=fmt(f.day_orders_open, currency),
            day_orders_adjusted=fmt(f.day_orders_adjusted, currency),
            unexplained=fmt(f.unexplained, currency),
        )


# -- payout runs ---------------------------------------------------------------------------------

#: a minimum payout: at most a billion major units
Minimum = DecimalStr


def _minimum(value: Any, currency: str | None) -> Any:
    if value < 0 or value > 1_000_000_000:
        raise PydanticCustomError("minimum_out_of_range", "a minimum is from 0 to 1000000000")
    if currency is not None and not fits_currency(value, currency):
        raise PydanticCustomError(
            "amount_too_precise",
            "{amount} has more decimals than {unit} allows",
            {"amount": str(value), "unit": currency},
        )
    return value


class PayoutSettingsRequest(BaseModel):
    """An affiliate's payout settings: IBAN (checksum) and BIC (shape) checked by schwifty;
    a refused field is named in the ``422`` (``errors[].loc``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "currency": "EUR",
                    "minimum": "50.00",
                    "method": "bank_transfer",
                    "iban": "DE89 3704 0044 0532 0130 00",
                    "bic": "COBADEFFXXX",
                    "account_holder": "Ada Affiliate",
                    "tax_id": "DE123456789",
                    "address": "2 Sample Road, 20095 Hamburg, Germany",
                }
            ]
        },
    )

    currency: Currency
    minimum: Minimum
    method: Literal["bank_transfer"]
    iban: Text = Field(max_length=64)
    bic: Text = Field(max_length=16)
    account_holder: Text = Field(min_length=1, max_length=70)
    tax_id: Text | None = Field(None, max_length=64)
    address: Text = Field(min_length=1, max_length=280)

    @field_validator("minimum")
    @classmethod
    def _check_minimum(cls, value: Any, info: ValidationInfo) -> Any:
        return _minimum(value, info.data.get("currency"))

    @field_validator("iban")
    @classmethod
    def _check_iban(cls, value: str) -> str:
        try:
            return str(IBAN(value).compact)
        except SchwiftyException as e:
            why = {"why": str(e)}
            raise PydanticCustomError("invalid_iban", "not a valid IBAN: {why}", why) from e

    @field_validator("bic")
    @classmethod
    def _check_bic(cls, value: str) -> str:
        try:
            return str(BIC(value).compact)
        except SchwiftyException as e:
            why = {"why": str(e)}
            raise PydanticCustomError("invalid_bic", "not a valid BIC: {why}", why) from e


class PayoutSettingsView(BaseModel):
    affiliate_id: str
    currency: str
    minimum: str
    method: str
    iban: str
    bic: str
    account_holder: str
    tax_id: str | None
    address: str
    updated_at: datetime

    @classmethod
    def of(cls, r: Any) -> PayoutSettingsView:
        return cls(
            affiliate_id=r.affiliate_id,
            currency=r.currency,
            minimum=str(from_minor(r.minimum_minor, r.currency)),
            method=r.method,
            iban=r.iban,
            bic=r.bic,
            account_holder=r.account_holder,
            tax_id=r.tax_id,
            address=r.address,
            updated_at=r.updated_at,
        )


class MinimumRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"minimum": "25"}]})

    minimum: Minimum

    @field_validator("minimum")
    @classmethod
    def _check_minimum(cls, value: Any) -> Any:
        return _minimum(value, None)


class MinimumsView(BaseModel):
    default: str  # the platform minimum of every currency not listed
    minimums: dict[str, str]  # currency → platform minimum


class PayoutRunRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"up_to": "2026-03-31T23:59:59Z", "currency": "EUR"}]},
    )

    up_to: UtcDatetime
    #: only affiliates paid in this currency (default: every affiliate)
    currency: Currency | None = None


class RunPayout(BaseModel):
    id: int
    affiliate_id: str
    currency: str
    amount: str
    source_amounts: dict[str, str]  # currency earned → amount taken from the balance
    fx_rate: dict[str, str] | None  # "EUR/USD" → rate, for each conversion
    conversions: list[dict[str, str]]  # pair, rate, from, to
    rounding: str

    @classmethod
    def of(cls, r: Any) -> RunPayout:
        d = r.detail
        return cls(
            id=r.id,
            affiliate_id=r.affiliate_id,
            currency=d["currency"],
            amount=d["amount"],
            source_amounts=d["source_amounts"],
            fx_rate=d["fx_rate"],
            conversions=d["conversions"],
            rounding=d["rounding"],
        )


class RunCarried(BaseModel):
    affiliate_id: str
    #: no_payout_settings | nothing_payable | below_minimum | fx_rate_missing
    why: str
    currency: str | None  # the payout currency, when set
    balance: str | None  # the payable balance in it (converted), when known
    minimum: str | None
    payable: dict[str, str]  # per currency earned
    held: dict[str, dict[str, str]]  # reason → currency → amount held back
    missing_rates: list[str]

    @classmethod
    def of(cls, r: Any) -> RunCarried:
        d = r.detail
        return cls(
            affiliate_id=r.affiliate_id,
            why=r.why,
            currency=r.currency,
            balance=r.balance,
            minimum=d["minimum"],
            payable=d["payable"],
            held=d["held"],
            missing_rates=d["missing_rates"],
        )


class PayoutRunView(BaseModel):
    id: int
    up_to: datetime
    currency: str | None
    created_at: datetime
    created_by: str
    finished_at: datetime | None  # None: stopped half-way (post the same key again to resume)
    payouts: list[RunPayout]
    carried: list[RunCarried]


class NextPayout(BaseModel):
    """What a payout run made now would do for the affiliate."""

    will_pay: bool
    currency: str | None
    amount: str | None  # what it would pay (or the balance it carries), in ``currency``
    #: why it would not pay: no_payout_settings | nothing_payable | below_minimum |
    #: fx_rate_missing
    why_not: str | None
    minimum: str | None
    payable: dict[str, str]
    held_back: dict[str, dict[str, str]]  # reason (holding_period) → currency → amount


class AffiliateEarnings(Settlement):
    next_payout: NextPayout | None  # None: nothing earned, nothing held


class HoldRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "affiliate_id": "aff-7",
                    "store_id": "acme",
                    "reason": "fraud",
                    "note": "self-referrals under review",
                }
            ]
        },
    )

    affiliate_id: PrincipalId
    store_id: PrincipalId | None = Field(None, description="none: every store")
    reason: AdjustmentReason
    note: Text | None = Field(None, max_length=1000)


class HoldView(BaseModel):
    hold_id: int
    affiliate_id: str
    store_id: str | None
    reason: str
    note: str | None
    status: str  # active | released | voided
    created_at: datetime
    created_by: str
    ended_at: datetime | None
    ended_by: str | None
    #: of a void: the orders reversed (declined, reason fraud) and those locked (unchanged)
    reversed_orders: list[str] = Field(default_factory=list)
    locked_orders: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, r: Any) -> HoldView:
        return cls(
            hold_id=r.id,
            affiliate_id=r.affiliate_id,
            store_id=r.store_id,
            reason=r.reason,
            note=r.note,
            status=r.status,
            created_at=r.created_at,
            created_by=r.created_by,
            ended_at=r.ended_at,
            ended_by=r.ended_by,
        )
