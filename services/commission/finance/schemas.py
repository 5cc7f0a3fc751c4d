"""Request and response models of the finance routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.commission.core.commission import AdjustmentReason
from services.commission.core.reconciliation import DayFigures
from services.commission.core.statements import StoreTotals
from shared.events import PrincipalId, Text, UtcDatetime
from shared.money import fmt, from_minor


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
    reason: str | None = None  # an adjustment's reason code (README, Program controls)

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
