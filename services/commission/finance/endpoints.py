"""Routes of finance: settlements, statements, the reconciliation, payouts, the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.holds import HoldStatus
from services.commission.csv_export import csv_chunks
from services.commission.deps import (
    MAX_BIGINT,
    Audit,
    Caller,
    Finance,
    PrincipalIdPath,
    RowIdPath,
    Session,
    StoreIdPath,
    TimeFrom,
    TimeTo,
    time_range,
)
from services.commission.errors import NotFound
from services.commission.finance.schemas import (
    HoldRequest,
    HoldView,
    LedgerLine,
    LedgerPage,
    PayoutRequest,
    PayoutView,
    ReconciliationDay,
    Settlement,
    SettlementTotals,
    Statement,
    StatementTotals,
)
from services.commission.finance.service import FinanceService
from shared.http import errors
from shared.money import fmt

#: every route: a bearer key (401), a NUL or a malformed parameter (422), the database (503)
#: a statement's month: exactly ``YYYY-MM``, years 2000 to 2100 (the core checks it:
#: ``invalid_period``; the schema states it)
PeriodPath = Annotated[
    str,
    Path(
        description="the statement's month (UTC), exactly `YYYY-MM`, years 2000 to 2100 "
        "(else 422 `invalid_period`)",
        json_schema_extra={"pattern": r"^[0-9]{4}-(0[1-9]|1[0-2])$", "examples": ["2026-01"]},
    ),
]

router = APIRouter(responses=errors(401, 422, 503))


def _settlement(subject: str, start: datetime, end: datetime, totals: dict[str, Any]) -> Settlement:
    return Settlement(
        subject=subject,
        start=start,
        end=end,
        totals=[
            SettlementTotals(
                currency=currency,
                affiliate_sales=fmt(t["affiliate_sales"], currency),
                orders_completed=t["orders_completed"],
                commission_payable=fmt(t["commission_payable"], currency),
                reversed=fmt(t["reversed"], currency),
                net=fmt(t["net"], currency),
                orders_open=t["orders_open"],
                estimated=fmt(t["estimated"], currency),
            )
            for currency, t in sorted(totals.items())
        ],
    )


@router.get(
    "/v1/settlements/stores/{store_id}",
    response_model=Settlement,
    tags=["finance"],
    responses=errors(403),
)
async def store_settlement(
    store_id: StoreIdPath,
    caller: Caller,
    session: Session,
    finance: Finance,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> Settlement:
    """What a store owes for orders completed in [from, to), per currency (finance, the store)."""
    caller.require_store(store_id)
    lo, hi = time_range(start, end)
    totals = await finance.settlement(session, lo, hi, store_id=store_id)
    return _settlement(f"store:{store_id}", lo, hi, totals)


@router.get(
    "/v1/settlements/affiliates/{affiliate_id}",
    response_model=Settlement,
    tags=["finance"],
    responses=errors((404, "Not the caller's affiliate")),
)
async def affiliate_settlement(
    affiliate_id: PrincipalIdPath,
    caller: Caller,
    session: Session,
    finance: Finance,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> Settlement:
    """What an affiliate earned on orders completed in [from, to), per currency (finance, the
    affiliate itself)."""
    if not caller.may_see_affiliate(affiliate_id):
        raise NotFound("affiliate", affiliate_id=affiliate_id)
    lo, hi = time_range(start, end)
    totals = await finance.settlement(session, lo, hi, affiliate_id=affiliate_id)
    return _settlement(f"affiliate:{affiliate_id}", lo, hi, totals)


@router.get(
    "/v1/affiliate/earnings", response_model=Settlement, tags=["affiliate"], responses=errors(403)
)
async def affiliate_earnings(
    caller: Caller,
    session: Session,
    finance: Finance,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> Settlement:
    """The calling affiliate's earnings per currency (as its settlement)."""
    caller.require("affiliate")
    lo, hi = time_range(start, end)
    totals = await finance.settlement(session, lo, hi, affiliate_id=caller.id)
    return _settlement(f"affiliate:{caller.id}", lo, hi, totals)


async def _statement(
    finance: FinanceService, session: AsyncSession, store_id: str, period: str
) -> Statement:
    s = await finance.statement(session, store_id, period)
    return Statement(
        store_id=store_id,
        period=period,
        start=s.start,
        end=s.end,
        closed=s.closed_at is not None,
        closed_at=s.closed_at,
        closed_by=s.closed_by,
        totals=[
            StatementTotals(**t) if isinstance(t, dict) else StatementTotals.of(t) for t in s.totals
        ],
    )


@router.get(
    "/v1/statements/{store_id}/{period}",
    response_model=Statement,
    tags=["finance"],
    responses=errors(403),
)
async def get_statement(
    store_id: StoreIdPath, period: PeriodPath, caller: Caller, session: Session, finance: Finance
) -> Statement:
    """A store's monthly statement: frozen once closed, live while open."""
    caller.require_store(store_id)
    return await _statement(finance, session, store_id, period)


@router.post(
    "/v1/statements/{store_id}/{period}/close",
    response_model=Statement,
    tags=["finance"],
    responses=errors(403, (409, "The month is not over yet")),
)
async def close_statement(
    store_id: StoreIdPath,
    period: PeriodPath,
    caller: Caller,
    session: Session,
    finance: Finance,
    audit: Audit,
) -> Statement:
    """Freeze a month's statement (finance). Events that arrive later post into the open
    period and never change it. Closing again returns the statement as first closed."""
    caller.require("finance")
    current = await _statement(finance, session, store_id, period)
    if not current.closed:
        frozen = [t.model_dump(mode="json") for t in current.totals]
        await finance.close_statement(session, store_id, period, caller.actor, frozen)
        closed = await _statement(finance, session, store_id, period)
        await audit.record(
            "statement.close",
            f"store:{store_id}/statement/{period}",
            tenant=f"store:{store_id}",
            before=current.model_dump(mode="json"),
            after=closed.model_dump(mode="json"),
        )
        return closed
    return current  # closed already: nothing changed


@router.get(
    "/v1/reconciliation",
    response_model=list[ReconciliationDay],
    tags=["finance"],
    responses=errors(403),
)
async def reconciliation(
    caller: Caller,
    session: Session,
    finance: Finance,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> list[ReconciliationDay]:
    """Per day and currency: commission estimated at placement, what became payable, what was
    cancelled or reversed, and the day's estimate explained by what became of its orders."""
    caller.require("finance")
    lo, hi = time_range(start, end)
    return [ReconciliationDay.of(*day) for day in await finance.reconciliation(session, lo, hi)]


@router.post(
    "/v1/payouts",
    response_model=PayoutView,
    status_code=201,
    tags=["finance"],
    responses={
        200: {"model": PayoutView, "description": "Already made with this Idempotency-Key"},
        **errors(403, (409, "Nothing to pay, or the key was used for another payout")),
    },
)
async def create_payout(
    body: PayoutRequest,
    caller: Caller,
    session: Session,
    finance: Finance,
    request: Request,
    audit: Audit,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=200)],
) -> Response:
    """Pay an affiliate's net payable balance up to a time (finance), once per key. Only
    commission whose order completed more than the holding period ago is payable (with
    ``ALLIANCE_PAYOUT_REQUIRES_LOCK``, only that of orders past their locking date); a claw-back
    larger than the balance is not paid and carries forward."""
    caller.require("finance")
    settings = request.app.state.settings
    holding = timedelta(days=settings.payout_holding_days)
    row, created = await finance.pay(
        session,
        idempotency_key,
        body.affiliate_id,
        body.up_to,
        holding,
        requires_lock=settings.payout_requires_lock,
    )
    view = PayoutView.of(row).model_dump(mode="json")
    if created:  # a replay with the same key changes nothing: no second entry
        await audit.record(
            "payout.create",
            f"payout:{view['payout_id']}",
            tenant=f"affiliate:{body.affiliate_id}",
            before=None,
            after={**view, "idempotency_key": idempotency_key},
        )
    return JSONResponse(view, status_code=201 if created else 200)


@router.get(
    "/v1/payouts/{payout_id}",
    response_model=PayoutView,
    tags=["finance"],
    responses=errors((404, "No such payout, or not the caller's")),
)
async def get_payout(
    payout_id: RowIdPath, caller: Caller, session: Session, finance: Finance
) -> PayoutView:
    row = await finance.payout(session, payout_id)
    if row is None or not caller.may_see_affiliate(row.affiliate_id):
        raise NotFound("payout", payout_id=payout_id)
    return PayoutView.of(row)


async def _ledger_csv(pages: AsyncIterator[list[Any]]) -> AsyncIterator[list[dict[str, Any]]]:
    async for page in pages:
        yield [LedgerLine.of(r).model_dump(mode="json") for r in page]


@router.get(
    "/v1/ledger",
    response_model=LedgerPage,
    tags=["ledger"],
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV of all"},
        **errors(403),
    },
)
async def get_ledger(
    request: Request,
    caller: Caller,
    session: Session,
    finance: Finance,
    account: str | None = None,
    start: TimeFrom = None,
    end: TimeTo = None,
    cursor: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_BIGINT,
            description="the last `posting_id` of the previous page (0: from the first "
            "posting); keyset pages, stable under concurrent inserts",
        ),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """Ledger postings in posting order (finance), optionally of one account and posted in
    [from, to). Keyset pagination: pass ``next_cursor`` back as ``cursor``. With
    ``Accept: text/csv`` every matching posting is streamed as CSV."""
    caller.require("finance")
    if "text/csv" in request.headers.get("accept", ""):
        # every cell neutralised against formula injection (negative amounts too: ``'-1.50``)
        pages = finance.ledger_pages(account=account, start=start, end=end, after=cursor)
        return StreamingResponse(
            csv_chunks(list(LedgerLine.model_fields), _ledger_csv(pages)), media_type="text/csv"
        )
    batch = await finance.ledger(
        session, account=account, start=start, end=end, after=cursor, limit=limit
    )
    items = [LedgerLine.of(r) for r in batch]
    page = LedgerPage(
        items=items, next_cursor=items[-1].posting_id if len(items) == limit else None
    )
    return JSONResponse(page.model_dump(mode="json"))


@router.post(
    "/v1/finance/holds",
    response_model=HoldView,
    status_code=201,
    tags=["finance"],
    responses=errors(403),
)
async def place_hold(
    body: HoldRequest, caller: Caller, session: Session, finance: Finance, audit: Audit
) -> HoldView:
    """Hold an affiliate's commissions on a store (or every store) while fraud is reviewed
    (finance or the admin): posted but not payable (order views show ``held`` with the hold's
    id and ``payable`` 0.00; payouts leave them out) until released or voided;
    ``commission.held``."""
    caller.require("finance")
    row = await finance.place_hold(
        session, body.affiliate_id, body.store_id, body.reason.value, body.note, caller.actor
    )
    view = HoldView.of(row)
    await audit.record(
        "hold.place",
        f"hold:{row.id}",
        tenant=f"affiliate:{body.affiliate_id}",
        before=None,
        after=view.model_dump(mode="json"),
    )
    return view


@router.get(
    "/v1/finance/holds", response_model=list[HoldView], tags=["finance"], responses=errors(403)
)
async def list_holds(
    caller: Caller,
    session: Session,
    finance: Finance,
    affiliate_id: str | None = None,
    status: Annotated[str | None, Query(pattern="^(active|released|voided)$")] = None,
) -> list[HoldView]:
    """Holds, newest first (at most 1,000), optionally of one affiliate or status."""
    caller.require("finance")
    return [HoldView.of(r) for r in await finance.list_holds(session, affiliate_id, status)]


async def _end_hold(
    hold_id: int, status: HoldStatus, caller: Any, session: Any, finance: Any, audit: Any
) -> HoldView:
    caller.require("finance")
    row, reversed_, locked = await finance.end_hold(session, hold_id, status, caller.actor)
    view = HoldView.of(row)
    view.reversed_orders = [f"{s}/{o}" for s, o in reversed_]
    view.locked_orders = [f"{s}/{o}" for s, o in locked]
    await audit.record(
        f"hold.{'release' if status is HoldStatus.RELEASED else 'void'}",
        f"hold:{hold_id}",
        tenant=f"affiliate:{row.affiliate_id}",
        before={"status": "active"},
        after=view.model_dump(mode="json"),
    )
    return view


@router.post(
    "/v1/finance/holds/{hold_id}/release",
    response_model=HoldView,
    tags=["finance"],
    responses=errors(403, (404, "No such hold"), (409, "hold_not_active")),
)
async def release_hold(
    hold_id: RowIdPath, caller: Caller, session: Session, finance: Finance, audit: Audit
) -> HoldView:
    """End the hold: its commissions are payable again, nothing lost (``commission.released``)."""
    return await _end_hold(hold_id, HoldStatus.RELEASED, caller, session, finance, audit)


@router.post(
    "/v1/finance/holds/{hold_id}/void",
    response_model=HoldView,
    tags=["finance"],
    responses=errors(403, (404, "No such hold"), (409, "hold_not_active")),
)
async def void_hold(
    hold_id: RowIdPath, caller: Caller, session: Session, finance: Finance, audit: Audit
) -> HoldView:
    """End the hold reversing its commissions: each held order before its lock is declined
    with reason ``fraud`` (an adjustment of its own); the locked ones are listed in
    ``locked_orders`` and nothing changes them."""
    return await _end_hold(hold_id, HoldStatus.VOIDED, caller, session, finance, audit)
