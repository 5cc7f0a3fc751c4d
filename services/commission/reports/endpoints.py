"""Seller reports (`/v1/stores/{store_id}/reports/...`, the store's key, finance or admin).

Every report takes ``from`` and ``to`` as UTC dates, both included (default: the 90 days up
to today); series take ``granularity=day|week|month``. Money is per currency, as decimal
strings in the currency's minor unit. Definitions: :mod:`services.commission.reports.repository`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from services.commission.core.commission import AdjustmentReason
from services.commission.core.reports import (
    DEFAULT_DAYS,
    MAX_DAYS,
    DayRange,
    Granularity,
    OrderTotals,
    TrafficRow,
    TransactionFilter,
    buckets,
    share,
)
from services.commission.csv_export import csv_chunks
from services.commission.deps import FIRST_DAY, LAST_DAY, Caller, Reports, Session, StoreIdPath
from services.commission.errors import BadCursor
from services.commission.program.schemas import OperationView
from services.commission.reports.schemas import (
    Dashboard,
    HotProducts,
    MainProductReport,
    MainProducts,
    MoneyTotals,
    OrdersPoint,
    OrdersReport,
    ProductPerformance,
    RefundsPoint,
    RefundsReport,
    RefundTotalsView,
    TrafficPoint,
    TrafficReport,
    TrafficTotals,
    TransactionsPage,
    TransactionView,
)
from services.commission.reports.service import (
    RefundTotals,
    Transaction,
    transaction_after,
    transaction_cursor,
)
from shared.events import IsoDate
from shared.http import errors
from shared.money import fmt, from_minor

T = TypeVar("T")
V = TypeVar("V")

#: the store's key, finance or admin (else 401/403); a bad range or parameter is 422
router = APIRouter(
    prefix="/v1/stores/{store_id}/reports",
    tags=["reports"],
    responses=errors(401, 403, 422, 503),
)

_DAYS = (
    f"ISO 8601 date `YYYY-MM-DD`, {FIRST_DAY} to {LAST_DAY} (else 422 `date_out_of_range`); "
    "a bare number such as `0` is refused (422 `date_not_iso`). A report covers at most "
    f"{MAX_DAYS} days (else 422 `range_too_long`), `from` not after `to` (else 422 "
    "`empty_range`)"
)


def _report_day(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise PydanticCustomError(
            "date_out_of_range", f"a report's day is from {FIRST_DAY} to {LAST_DAY}"
        )
    return day


#: a report's first or last day: ISO 8601 only, from FIRST_DAY to LAST_DAY
ReportDay = Annotated[IsoDate, AfterValidator(_report_day)]
From = Annotated[
    ReportDay | None,
    Query(
        alias="from",
        description=f"first UTC day (included; default {DEFAULT_DAYS - 1} days before `to`). "
        + _DAYS,
    ),
]
To = Annotated[
    ReportDay | None,
    Query(
        alias="to",
        description=f"last UTC day (included; default today). {_DAYS}",
    ),
]
Grain = Annotated[Granularity, Query()]


@dataclass(frozen=True)
class Scope:
    """The store a report is about (the caller may see it) and its range of days."""

    store_id: str
    days: DayRange

    def period(self) -> dict[str, Any]:
        return {"store_id": self.store_id, "first_day": self.days.first, "last_day": self.days.last}


async def report_scope(
    store_id: StoreIdPath, caller: Caller, reports: Reports, start: From = None, end: To = None
) -> Scope:
    caller.require_store(store_id)
    return Scope(store_id, reports.days(start, end))


InScope = Annotated[Scope, Depends(report_scope)]


def _money_totals(o: OrderTotals) -> MoneyTotals:
    return MoneyTotals(
        currency=o.currency,
        orders=o.orders,
        cancelled_orders=o.cancelled_orders,
        affiliate_sales=fmt(o.affiliate_sales, o.currency),
        commission_estimated=fmt(o.commission_estimated, o.currency),
        commission_payable=fmt(o.commission_payable, o.currency),
    )


@router.get("/dashboard", response_model=Dashboard)
async def dashboard(scope: InScope, session: Session, reports: Reports) -> Dashboard:
    """Affiliate clicks and visitors, affiliate orders and sales, commission estimated and
    payable, for orders placed and clicks made in the range. Affiliate visitors are exact
    over a single day; over more days, estimated from per-day HyperLogLog sketches with a
    relative standard error of 1.625% (`affiliate_visitors` in the schema states the bound)."""
    t, totals = await reports.dashboard(session, scope.store_id, scope.days)
    return Dashboard(
        **scope.period(),
        traffic=TrafficTotals(
            affiliate_clicks=t.clicks,
            suspicious_clicks=t.suspicious_clicks,
            affiliate_visitors=t.affiliate_visitors,
        ),
        totals=[_money_totals(o) for o in totals],
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
    reports: Reports,
    granularity: Grain = Granularity.DAY,
) -> TrafficReport:
    """Affiliate clicks (suspicious apart), page views and affiliate page views, affiliate and
    store visitors and the affiliate share, per bucket; empty buckets are zeros. Visitors are
    exact for a day; for a week, a month or the whole range, estimated from per-day
    HyperLogLog sketches (relative standard error 1.625%; the schema states the bound)."""
    r = scope.days
    total, series = await reports.traffic(session, scope.store_id, r, granularity)
    return TrafficReport(
        **scope.period(),
        granularity=granularity,
        total=_traffic_point(r.first, total),
        series=[_traffic_point(b, series.get(b, TrafficRow())) for b in buckets(r, granularity)],
    )


@router.get("/orders", response_model=OrdersReport)
async def orders_report(
    scope: InScope,
    session: Session,
    reports: Reports,
    granularity: Grain = Granularity.DAY,
) -> OrdersReport:
    """Affiliate orders, their amount (shipping excluded) and commission estimated and payable,
    per bucket of placement day and currency."""
    r = scope.days
    rows = await reports.order_totals(session, scope.store_id, r, granularity)
    return OrdersReport(
        **scope.period(),
        granularity=granularity,
        series=[
            OrdersPoint(bucket=b, totals=t)
            for b, t in _per_bucket(r, granularity, rows, _money_totals)
        ],
    )


def _refund_view(t: RefundTotals) -> RefundTotalsView:
    return RefundTotalsView(
        currency=t.currency,
        refunded_orders=t.refunded_orders,
        refund_amount=fmt(t.refund_amount, t.currency),
        commission_reversed=fmt(t.commission_reversed, t.currency),
    )


@router.get("/refunds", response_model=RefundsReport)
async def refunds_report(
    scope: InScope,
    session: Session,
    reports: Reports,
    granularity: Grain = Granularity.DAY,
) -> RefundsReport:
    """Refunds of affiliate orders made in range: orders refunded, amount refunded, commission
    reversed (what the ledger claws back, or takes off the estimate of an open order)."""
    r = scope.days
    totals, series = await reports.refund_totals(session, scope.store_id, r, granularity)
    return RefundsReport(
        **scope.period(),
        granularity=granularity,
        totals=[_refund_view(t) for t in totals],
        series=[
            RefundsPoint(bucket=b, totals=t)
            for b, t in _per_bucket(r, granularity, series, _refund_view)
        ],
    )


def _transaction_view(t: Transaction) -> TransactionView:
    return TransactionView(
        type="order" if t.type == "order" else "adjustment" if t.type == "adjustment" else "refund",
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
        rule=t.rule,
        reversal_skipped=t.reversal_skipped,
        reason=t.reason,
    )


async def _transactions_csv(
    pages: AsyncIterator[list[Transaction]],
) -> AsyncIterator[list[dict[str, Any]]]:
    async for page in pages:
        yield [_transaction_view(t).model_dump(mode="json") for t in page]


@router.get(
    "/transactions",
    response_model=TransactionsPage,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV of all"}},
)
async def transactions_report(
    scope: InScope,
    request: Request,
    session: Session,
    reports: Reports,
    product_id: str | None = None,
    keyword: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    order_id: str | None = None,
    type: Annotated[Literal["order", "refund", "adjustment"] | None, Query()] = None,
    reason: Annotated[
        AdjustmentReason | None,
        Query(description="only adjustments with this reason (docs/program-controls.md)"),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            description="the previous page's `next_cursor`, unchanged (one this report did "
            "not give is 422 `bad_cursor`)"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    """Affiliate order lines and refund lines, newest first, filtered by product, keyword
    (in the product title, case-insensitive), order and type. Keyset pagination (stable when
    rows are added meanwhile). ``Accept: text/csv`` streams every matching row as CSV."""
    store_id, r = scope.store_id, scope.days
    f = TransactionFilter(
        product_id, keyword, order_id, type, reason.value if reason is not None else None
    )
    try:
        after = transaction_after(cursor) if cursor else None
    except (ValueError, OverflowError):  # naive or out of range: not ours
        raise BadCursor("cursor is not one this report gave") from None
    if "text/csv" in request.headers.get("accept", ""):
        # every cell neutralised against formula injection (titles are the store's own text)
        pages = _transactions_csv(reports.transaction_pages(store_id, r, f, after))
        return StreamingResponse(
            csv_chunks(list(TransactionView.model_fields), pages),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="transactions-{store_id}-'
                f'{r.first}-{r.last}.csv"'
            },
        )
    rows = await reports.transactions(session, store_id, r, f, after, limit)
    page = TransactionsPage(
        **scope.period(),
        items=[_transaction_view(t) for t in rows],
        next_cursor=transaction_cursor(rows[-1]) if len(rows) == limit else None,
    )
    return JSONResponse(page.model_dump(mode="json"))


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
    reports: Reports,
    by: Annotated[Literal["sales", "orders", "commission"], Query()] = "sales",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> HotProducts:
    """The store's top products to affiliates in range, by sales, orders or commission."""
    rows = await reports.product_performance(
        session, scope.store_id, scope.days, order_by=by, limit=limit
    )
    return HotProducts(**scope.period(), by=by, items=[_performance(row) for row in rows])


@router.get("/main-products", response_model=MainProducts)
async def main_products(scope: InScope, session: Session, reports: Reports) -> MainProducts:
    """The main products with their rate and their affiliate performance in range."""
    state, rows = await reports.main_products(session, scope.store_id, scope.days)
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
    scope: InScope, session: Session, reports: Reports
) -> list[OperationView]:
    """The operation record of the range (every program change: actor, time, before, after)."""
    return [
        OperationView.of(r) for r in await reports.operations(session, scope.store_id, scope.days)
    ]
