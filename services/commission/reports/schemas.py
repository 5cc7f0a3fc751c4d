"""Response models of the seller reports."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from services.commission.core.reports import (
    VISITOR_SKETCH_ERROR,
    VISITOR_SKETCH_LOG2M,
    Granularity,
)

#: how exact distinct visitors are: what the API documents on each such field
VISITORS_BOUND = (
    "Distinct visitors: exact over a single day; over more than one day (a range, a week or "
    "a month) estimated from per-day HyperLogLog sketches (log2m "
    f"{VISITOR_SKETCH_LOG2M}): relative standard error {VISITOR_SKETCH_ERROR:.3%}, within "
    f"{3 * VISITOR_SKETCH_ERROR:.1%} of the exact count for 99.7% of ranges (exact up to 320 "
    "visitors, the sketches' explicit form)."
)


class Period(BaseModel):
    store_id: str
    first_day: date
    last_day: date


class TrafficTotals(BaseModel):
    affiliate_clicks: int
    suspicious_clicks: int
    affiliate_visitors: int = Field(description=VISITORS_BOUND)


class MoneyTotals(BaseModel):
    currency: str
    orders: int  # affiliate orders placed in range, not cancelled
    cancelled_orders: int
    affiliate_sales: str  # product amount, shipping excluded
    commission_estimated: str  # open orders
    commission_payable: str  # completed orders, net of refunds


class Dashboard(Period):
    traffic: TrafficTotals
    totals: list[MoneyTotals]


class TrafficPoint(BaseModel):
    bucket: date  # first day of the bucket (a first week or month may start before from)
    affiliate_clicks: int
    suspicious_clicks: int
    page_views: int
    affiliate_page_views: int
    affiliate_visitors: int = Field(description=VISITORS_BOUND)
    store_visitors: int = Field(description=VISITORS_BOUND)
    affiliate_share: Decimal | None  # affiliate visitors / store visitors; None: no visitors


class TrafficReport(Period):
    granularity: Granularity
    total: TrafficPoint  # over the whole range (visitors distinct over it)
    series: list[TrafficPoint]


class OrdersPoint(BaseModel):
    bucket: date
    totals: list[MoneyTotals]


class OrdersReport(Period):
    granularity: Granularity
    series: list[OrdersPoint]


class RefundTotalsView(BaseModel):
    currency: str
    refunded_orders: int
    refund_amount: str
    commission_reversed: str


class RefundsPoint(BaseModel):
    bucket: date
    totals: list[RefundTotalsView]


class RefundsReport(Period):
    granularity: Granularity
    totals: list[RefundTotalsView]
    series: list[RefundsPoint]


class TransactionView(BaseModel):
    type: Literal["order", "refund", "adjustment"]
    at: datetime
    store_id: str
    order_id: str
    refund_id: str | None
    product_id: str
    title: str
    quantity: int | None
    currency: str
    amount: str  # line amount (shipping excluded) or amount refunded
    commission: str  # the line's commission, or minus what the refund reverses
    status: str  # the order's status
    affiliate_id: str | None
    rule: str | None = None  # how the order was attributed: last_click | coupon
    #: a refund reported at or after the order's locking date: ``locked`` (reverses nothing)
    reversal_skipped: str | None = None
    #: an adjustment's reason (``amount``: what an amend lowered the base by; ``commission``:
    #: what its ledger transaction credited, 0 before the order completed)
    reason: str | None = None


class TransactionsPage(Period):
    items: list[TransactionView]
    next_cursor: str | None  # pass as ``cursor`` for the next page; None on the last page


class ProductPerformance(BaseModel):
    product_id: str
    title: str
    currency: str
    orders: int
    units: int
    affiliate_sales: str
    commission: str  # net of refunds


class HotProducts(Period):
    by: str
    items: list[ProductPerformance]


class MainProductReport(BaseModel):
    product_id: str
    rate: str | None  # its own rate; None: the category or default rate applies
    effective_rate: str
    performance: list[ProductPerformance]  # per currency; empty: no affiliate order in range


class MainProducts(Period):
    items: list[MainProductReport]
