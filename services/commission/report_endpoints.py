"""Seller reports (`/v1/stores/{store_id}/reports/...`, the store's key, finance or admin).

Every report takes ``from`` and ``to`` as UTC dates, both included (default: the 90 days up
to today); series take ``granularity=day|week|month``. Money is per currency, as decimal
strings in the currency's minor unit. Definitions: :mod:`services.commission.reports`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.commission.endpoints import Service, operations
from services.commission.principals import Caller, Session
from services.commission.reports import (
    OrderTotals,
    RefundTotals,
    ReportRepository,
    TrafficRow,
    Transaction,
    TransactionFilter,
    refund_totals,
    transaction_after,
    transaction_cursor,
    transactions,
)
from services.commission.reports_core import (
    DayRange,
    Granularity,
    RangeError,
    buckets,
    day_range,
    share,
)
from services.commission.schemas import FIRST_DAY, LAST_DAY, OperationView, StoreIdPath
from shared.csvsafe import SafeCsv
from shared.http import AllianceError, errors
from shared.money import fmt, from_minor

T = TypeVar("T")
V = TypeVar("V")

#: the store's key, finance or admin (else 401/403); a bad range or parameter is 422
router = APIRouter(
    prefix="/v1/stores/{store_id}/reports",
    tags=["reports"],
    responses=errors(401, 403, 422, 503),
)

From = Annotated[
    date | None,
    Query(alias="from", ge=FIRST_DAY, le=LAST_DAY, description="first UTC day (included)"),
]
To = Annotated[
    date | None,
    Query(alias="to", ge=FIRST_DAY, le=LAST_DAY, description="last UTC day (included)"),
]
Grain = Annotated[Granularity, Query()]


def _range(request: Request, first: date | None, last: date | None) -> DayRange:
    today = request.app.state.service.clock.now().date()
    try:
        return day_range(first, last, today)
    except RangeError as exc:
        raise AllianceError(422, exc.code, str(exc)) from None


@dataclass(frozen=True)
class Scope:
    """The store a report is about (the caller may see it) and its range of days."""

    store_id: str
    days: DayRange

    def period(self) -> dict[str, Any]:
        return {"store_id": self.store_id, "first_day": self.days.first, "last_day": self.days.last}


async def report_scope(
    store_id: StoreIdPath, request: Request, caller: Caller, start: From = None, end: To = None
) -> Scope:
    caller.require_store(store_id)
    return Scope(store_id, _range(request, start, end))


InScope = Annotated[Scope, Depends(report_scope)]


class Period(BaseModel):
    store_id: str
    first_day: date
    last_day: date


class TrafficTotals(BaseModel):
    affiliate_clicks: int
    suspicious_clicks: int
    affiliate_visitors: int


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


@router.get("/dashboard", response_model=Dashboard)
async def dashboard(
    scope: InScope,
    session: Session,
) -> Dashboard:
    """Affiliate clicks and visitors, affiliate orders and sales, commission estimated and
    payable, for orders placed and clicks made in the range."""
    store_id, r = scope.store_id, scope.days
    repo = ReportRepository(session)
    t = await repo.traffic_total(store_id, r, store_visitors=False)
    return Dashboard(
        **scope.period(),
        traffic=TrafficTotals(
            affiliate_clicks=t.clicks,
            suspicious_clicks=t.suspicious_clicks,
            affiliate_visitors=t.affiliate_visitors,
        ),
        totals=[_money_totals(o) for _, o in await repo.order_totals(store_id, r)],
    )


def _money_totals(o: OrderTotals) -> MoneyTotals:
    return MoneyTotals(
        currency=o.currency,
        orders=o.orders,
        cancelled_orders=o.cancelled_orders,
        affiliate_sales=fmt(o.affiliate_sales, o.currency),
        commission_estimated=fmt(o.commission_estimated, o.currency),
        commission_payable=fmt(o.commission_payable, o.currency),
    )


def _per_bucket(
    r: DayRange,
    granularity: Granularity,
    rows: Iterable[tuple[date | None, T]],
    view: Callable[[T], V],
) -> list[tuple[date, list[V]]]:
    """Every bucket of the range in order, each with the views of its rows (empty: none)."""
    by_bucket: dict[date | None, list[V]] = {}
    for b, row in rows:
        by_bucket.setdefault(b, []).append(view(row))
    return [(b, by_bucket.get(b, [])) for b in buckets(r, granularity)]


class TrafficPoint(BaseModel):
    bucket: date  # first day of the bucket (a first week or month may start before from)
    affiliate_clicks: int
    suspicious_clicks: int
    page_views: int
    affiliate_page_views: int
    affiliate_visitors: int
    store_visitors: int
    affiliate_share: Decimal | None  # affiliate visitors / store visitors; None: no visitors


class TrafficReport(Period):
    granularity: Granularity
    total: TrafficPoint  # over the whole range (visitors distinct over it)
    series: list[TrafficPoint]


def _traffic_point(bucket: date, t: TrafficRow) -> TrafficPoint:
    return TrafficPoint(
        bucket=bucket,
        affiliate_clicks=t.clicks,
        suspicious_clicks=t.suspicious_clicks,
        page_views=t.page_views,
        affiliate_page_views=t.affiliate_page_views,
        affiliate_visitors=t.affiliate_visitors,
        store_visitors=t.store_visitors,
        affiliate_share=share(t.affiliate_visitors, t.store_visitors),
    )


@router.get("/traffic", response_model=TrafficReport)
async def traffic(
    scope: InScope,
    session: Session,
    granularity: Grain = Granularity.DAY,
) -> TrafficReport:
    """Affiliate clicks (suspicious apart), page views and affiliate page views, affiliate and
    store visitors and the affiliate share, per bucket; empty buckets are zeros."""
    store_id, r = scope.store_id, scope.days
    repo = ReportRepository(session)
    series = await repo.traffic_series(store_id, r, granularity)
    return TrafficReport(
        **scope.period(),
        granularity=granularity,
        total=_traffic_point(r.first, await repo.traffic_total(store_id, r)),
        series=[_traffic_point(b, series.get(b, TrafficRow())) for b in buckets(r, granularity)],
    )


class OrdersPoint(BaseModel):
    bucket: date
    totals: list[MoneyTotals]


class OrdersReport(Period):
    granularity: Granularity
    series: list[OrdersPoint]


@router.get("/orders", response_model=OrdersReport)
async def orders_report(
    scope: InScope,
    session: Session,
    granularity: Grain = Granularity.DAY,
) -> OrdersReport:
    """Affiliate orders, their amount (shipping excluded) and commission estimated and payable,
    per bucket of placement day and currency."""
    store_id, r = scope.store_id, scope.days
    rows = await ReportRepository(session).order_totals(store_id, r, granularity)
    return OrdersReport(
        **scope.period(),
        granularity=granularity,
        series=[
            OrdersPoint(bucket=b, totals=t)
            for b, t in _per_bucket(r, granularity, rows, _money_totals)
        ],
    )


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


@router.get("/refunds", response_model=RefundsReport)
async def refunds_report(
    scope: InScope,
    session: Session,
    service: Service,
    granularity: Grain = Granularity.DAY,
) -> RefundsReport:
    """Refunds of affiliate orders made in range: orders refunded, amount refunded, commission
    reversed (what the ledger claws back, or takes off the estimate of an open order)."""
    store_id, r = scope.store_id, scope.days

    def view(t: RefundTotals) -> RefundTotalsView:
        return RefundTotalsView(
            currency=t.currency,
            refunded_orders=t.refunded_orders,
            refund_amount=fmt(t.refund_amount, t.currency),
            commission_reversed=fmt(t.commission_reversed, t.currency),
        )

    totals, series = await refund_totals(session, store_id, r, granularity, service.policy)
    return RefundsReport(
        **scope.period(),
        granularity=granularity,
        totals=[view(t) for t in totals],
        series=[
            RefundsPoint(bucket=b, totals=t) for b, t in _per_bucket(r, granularity, series, view)
        ],
    )


class TransactionView(BaseModel):
    type: Literal["order", "refund"]
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


class TransactionsPage(Period):
    items: list[TransactionView]
    next_cursor: str | None  # pass as ``cursor`` for the next page; None on the last page


@router.get(
    "/transactions",
    response_model=TransactionsPage,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV of all"}},
)
async def transactions_report(
    scope: InScope,
    request: Request,
    session: Session,
    service: Service,
    product_id: str | None = None,
    keyword: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    order_id: str | None = None,
    type: Annotated[Literal["order", "refund"] | None, Query()] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    """Affiliate order lines and refund lines, newest first, filtered by product, keyword
    (in the product title, case-insensitive), order and type. Keyset pagination (stable when
    rows are added meanwhile). ``Accept: text/csv`` streams every matching row as CSV."""
    store_id, r = scope.store_id, scope.days
    f = TransactionFilter(product_id, keyword, order_id, type)
    try:
        after = transaction_after(cursor) if cursor else None
        if after is not None:
            after = (after[0].astimezone(UTC), *after[1:])  # naive or out of range: not ours
    except (ValueError, OverflowError):
        raise AllianceError(422, "bad_cursor", "cursor is not one this report gave") from None
    if "text/csv" in request.headers.get("accept", ""):
        # every cell neutralised against formula injection (titles are the store's own text)
        doc = SafeCsv(list(TransactionView.model_fields))
        while rows := await transactions(session, store_id, r, f, after, 2000, service.policy):
            doc.add_all(_transaction_view(t).model_dump(mode="json") for t in rows)
            after = (rows[-1].at, rows[-1].type, rows[-1].order_id, rows[-1].seq)
        return Response(
            doc.text(),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="transactions-{store_id}-'
                f'{r.first}-{r.last}.csv"'
            },
        )
    rows = await transactions(session, store_id, r, f, after, limit, service.policy)
    page = TransactionsPage(
        **scope.period(),
        items=[_transaction_view(t) for t in rows],
        next_cursor=transaction_cursor(rows[-1]) if len(rows) == limit else None,
    )
    return JSONResponse(page.model_dump(mode="json"))


def _transaction_view(t: Transaction) -> TransactionView:
    return TransactionView(
        type="order" if t.type == "order" else "refund",
        at=t.at,
        store_id=t.store_id,
        order_id=t.order_id,
        refund_id=t.refund_id,
        product_id=t.product_id,
        title=t.title,
        quantity=t.quantity,
        currency=t.currency,
        amount=fmt(t.amount, t.currency),
        commission=fmt(t.commission, t.currency),
        status=t.status,
        affiliate_id=t.affiliate_id,
    )


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


def _performance(row: Any) -> ProductPerformance:
    cur = row.currency
    return ProductPerformance(
        product_id=row.product_id,
        title=row.title,
        currency=cur,
        orders=int(row.orders),
        units=int(row.units),
        affiliate_sales=fmt(from_minor(int(row.sales), cur), cur),
        commission=fmt(from_minor(int(row.commission), cur), cur),
    )


@router.get("/hot-products", response_model=HotProducts)
async def hot_products(
    scope: InScope,
    session: Session,
    by: Annotated[Literal["sales", "orders", "commission"], Query()] = "sales",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> HotProducts:
    """The store's top products to affiliates in range, by sales, orders or commission."""
    store_id, r = scope.store_id, scope.days
    rows = await ReportRepository(session).product_performance(
        store_id, r, order_by=by, limit=limit
    )
    return HotProducts(
        **scope.period(),
        by=by,
        items=[_performance(row) for row in rows],
    )


class MainProductReport(BaseModel):
    product_id: str
    rate: str | None  # its own rate; None: the category or default rate applies
    effective_rate: str
    performance: list[ProductPerformance]  # per currency; empty: no affiliate order in range


class MainProducts(Period):
    items: list[MainProductReport]


@router.get("/main-products", response_model=MainProducts)
async def main_products(
    scope: InScope,
    session: Session,
    service: Service,
) -> MainProducts:
    """The main products with their rate and their affiliate performance in range."""
    store_id, r = scope.store_id, scope.days
    state = (await service.program(session, store_id)).current()
    rows = await ReportRepository(session).product_performance(
        store_id, r, products=sorted(state.main_products)
    )
    perf: dict[str, list[ProductPerformance]] = {}
    for row in rows:
        perf.setdefault(row.product_id, []).append(_performance(row))
    return MainProducts(
        **scope.period(),
        items=[
            MainProductReport(
                product_id=p,
                rate=str(rate) if rate is not None else None,
                effective_rate=str(state.rate_for(p, None)),
                performance=perf.get(p, []),
            )
            for p, rate in sorted(state.main_products.items())
        ],
    )


@router.get("/operations", response_model=list[OperationView])
async def operations_report(
    scope: InScope, caller: Caller, session: Session
) -> list[OperationView]:
    """The operation record of the range (every program change: actor, time, before, after)."""
    r = scope.days
    return await operations(scope.store_id, caller, session, r.start, r.end)
