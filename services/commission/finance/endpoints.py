"""Routes of finance: settlements, statements, the reconciliation, payouts, the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.holds import HoldStatus
from services.commission.core.payouts import DEFAULT_MINIMUM
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
from services.commission.errors import Forbidden, InvalidAmount, NotFound
from services.commission.finance.documents import Payer
from services.commission.finance.schemas import (
    AffiliateEarnings,
    HoldRequest,
    HoldView,
    LedgerLine,
    LedgerPage,
    MinimumRequest,
    MinimumsView,
    NextPayout,
    PayoutRequest,
    PayoutRunRequest,
    PayoutRunView,
    PayoutSettingsRequest,
    PayoutSettingsView,
    PayoutView,
    ReconciliationDay,
    RunCarried,
    RunPayout,
    Settlement,
    SettlementTotals,
    Statement,
    StatementTotals,
)
from services.commission.finance.service import FinanceService
from shared.events import Currency, DecimalStr, IsoDate
from shared.http import errors
from shared.money import fits_currency, fmt, to_minor

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
    "/v1/affiliate/earnings",
    response_model=AffiliateEarnings,
    tags=["affiliate"],
    responses=errors(403),
)
async def affiliate_earnings(
    caller: Caller,
    session: Session,
    finance: Finance,
    request: Request,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> AffiliateEarnings:
    """The calling affiliate's earnings per currency (as its settlement), and
    ``next_payout``: what a payout run made now would pay it, or why it would carry it
    forward, and what is held back (``held_back``: not yet past the holding period)."""
    caller.require("affiliate")
    lo, hi = time_range(start, end)
    totals = await finance.settlement(session, lo, hi, affiliate_id=caller.id)
    settlement = _settlement(f"affiliate:{caller.id}", lo, hi, totals)
    nxt = await finance.next_payout(session, caller.id, _holding(request))
    return AffiliateEarnings(
        **settlement.model_dump(), next_payout=None if nxt is None else NextPayout(**nxt)
    )


def _holding(request: Request) -> timedelta:
    return timedelta(days=request.app.state.settings.payout_holding_days)


def _payer(request: Request) -> Payer:
    s = request.app.state.settings
    return Payer(s.payer_name, s.payer_iban, s.payer_bic, s.payer_address, s.payer_tax_id)


# -- payout settings, minimums, rates, runs ------------------------------------------------------


@router.put(
    "/v1/affiliate/payout-settings",
    response_model=PayoutSettingsView,
    tags=["affiliate"],
    responses=errors(403),
)
async def put_payout_settings(
    body: PayoutSettingsRequest, caller: Caller, session: Session, finance: Finance, audit: Audit
) -> PayoutSettingsView:
    """Set the calling affiliate's payout currency, minimum (never below the platform's for
    that currency) and bank details. The IBAN's checksum and the BIC's shape are checked: a
    refused field is named in the ``422`` (``error.errors[].loc``). Only the affiliate's own
    key: bank details are never set on an affiliate's behalf."""
    if caller.kind != "affiliate":
        raise Forbidden("payout settings are set with the affiliate's own key")
    before = await finance.payout_settings(session, caller.id)
    values = body.model_dump()
    values["minimum_minor"] = to_minor(values.pop("minimum"), body.currency)
    row = await finance.put_payout_settings(session, caller.id, values)
    view = PayoutSettingsView.of(row)
    await audit.record(
        "payout_settings.put",
        f"affiliate:{caller.id}/payout-settings",
        tenant=f"affiliate:{caller.id}",
        before=None if before is None else PayoutSettingsView.of(before).model_dump(mode="json"),
        after=view.model_dump(mode="json"),
    )
    return view


@router.get(
    "/v1/affiliate/payout-settings",
    response_model=PayoutSettingsView,
    tags=["affiliate"],
    responses=errors(403, (404, "No payout settings yet")),
)
async def get_payout_settings(
    caller: Caller, session: Session, finance: Finance
) -> PayoutSettingsView:
    caller.require("affiliate")
    row = await finance.payout_settings(session, caller.id)
    if row is None:
        raise NotFound("payout settings", affiliate_id=caller.id)
    return PayoutSettingsView.of(row)


@router.put(
    "/v1/finance/payout-minimums/{currency}",
    response_model=MinimumsView,
    tags=["finance"],
    responses=errors(403),
)
async def put_payout_minimum(
    currency: Annotated[Currency, Path(description="ISO 4217 code")],
    body: MinimumRequest,
    caller: Caller,
    session: Session,
    finance: Finance,
    audit: Audit,
) -> MinimumsView:
    """Set the platform minimum payout of a currency (finance); an affiliate's own minimum
    below it is raised to it. Unset currencies have the default, 10.00."""
    caller.require("finance")
    if not fits_currency(body.minimum, currency):
        raise InvalidAmount(f"{body.minimum} has more decimals than {currency} allows")
    before = await finance.minimums(session)
    await finance.put_minimum(session, currency, body.minimum)
    after = await finance.minimums(session)
    await audit.record(
        "payout_minimum.put",
        f"payout-minimum/{currency}",
        tenant=None,
        before={c: str(v) for c, v in before.items()},
        after={c: str(v) for c, v in after.items()},
    )
    return MinimumsView(
        default=str(DEFAULT_MINIMUM), minimums={c: str(v) for c, v in after.items()}
    )


@router.get(
    "/v1/finance/payout-minimums",
    response_model=MinimumsView,
    tags=["finance"],
    responses=errors(403),
)
async def get_payout_minimums(caller: Caller, session: Session, finance: Finance) -> MinimumsView:
    caller.require("finance")
    found = await finance.minimums(session)
    return MinimumsView(
        default=str(DEFAULT_MINIMUM), minimums={c: str(v) for c, v in found.items()}
    )


DayPath = Annotated[IsoDate, Path(description="the UTC day the rates are for, `YYYY-MM-DD`")]


@router.put(
    "/v1/finance/fx-rates/{day}",
    response_model=dict[str, str],
    tags=["finance"],
    responses=errors(403),
)
async def put_fx_rates(
    day: DayPath,
    body: Annotated[
        dict[str, DecimalStr],
        Body(examples=[{"EUR/USD": "1.0843", "GBP/USD": "1.2710"}], max_length=500),
    ],
    caller: Caller,
    session: Session,
    finance: Finance,
    audit: Audit,
) -> dict[str, str]:
    """Record the day's exchange rates (finance): ``"EUR/USD": "1.0843"`` means one EUR buys
    1.0843 USD; a payout run up to that day converts an affiliate's EUR balance into USD at
    it. Pairs not given keep their rate; a bad pair or rate is ``422 invalid_fx_rate``.
    Returns every rate of the day."""
    caller.require("finance")
    before = await finance.rates(session, day)
    after = await finance.put_rates(session, day, body)
    await audit.record(
        "fx_rates.put",
        f"fx-rates/{day.isoformat()}",
        tenant=None,
        before={k: str(v) for k, v in before.items()},
        after={k: str(v) for k, v in after.items()},
    )
    return {k: str(v) for k, v in after.items()}


@router.get(
    "/v1/finance/fx-rates/{day}",
    response_model=dict[str, str],
    tags=["finance"],
    responses=errors(403),
)
async def get_fx_rates(
    day: DayPath, caller: Caller, session: Session, finance: Finance
) -> dict[str, str]:
    caller.require("finance")
    return {k: str(v) for k, v in (await finance.rates(session, day)).items()}


async def _run_view(finance: FinanceService, session: AsyncSession, run_id: int) -> PayoutRunView:
    data = await finance.run_view(session, run_id)
    if data is None:
        raise NotFound("payout run", run_id=run_id)
    r = data.run
    return PayoutRunView(
        id=r.id,
        up_to=r.up_to,
        currency=r.currency,
        created_at=r.created_at,
        created_by=r.created_by,
        finished_at=r.finished_at,
        payouts=[RunPayout.of(p) for p in data.payouts],
        carried=[RunCarried.of(c) for c in data.carried],
    )


@router.post(
    "/v1/finance/payout-runs",
    response_model=PayoutRunView,
    status_code=201,
    tags=["finance"],
    responses={
        200: {"model": PayoutRunView, "description": "Made (or resumed) with this key already"},
        **errors(
            403,
            (
                409,
                "A rate the run needs is missing (fx_rate_missing), or the key was used for "
                "another run",
            ),
        ),
    },
)
async def create_payout_run(
    body: PayoutRunRequest,
    caller: Caller,
    session: Session,
    finance: Finance,
    request: Request,
    audit: Audit,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=200)],
) -> Response:
    """Pay every affiliate whose payable balance up to ``up_to`` reaches its minimum, in its
    payout currency (finance), once per key; carry the others forward with why. Each
    affiliate's payout (one ledger transaction) commits on its own with the record that its
    step is done: a run stopped half-way resumes when the same key is posted again, and pays
    nobody twice. No rate for a conversion: ``409 fx_rate_missing``, nothing paid."""
    caller.require("finance")
    run_id, created = await finance.run_payouts(
        idempotency_key,
        body.up_to,
        body.currency,
        _holding(request),
        caller.actor,
        audit=lambda s: replace(audit, session=s),
    )
    worker = getattr(request.app.state, "webhook_worker", None)
    if worker is not None:  # the run's payouts made deliveries due, in transactions of their own
        worker.poke()
    view = await _run_view(finance, session, run_id)
    return JSONResponse(view.model_dump(mode="json"), status_code=201 if created else 200)


@router.get(
    "/v1/finance/payout-runs/{run_id}",
    response_model=PayoutRunView,
    tags=["finance"],
    responses=errors(403, (404, "No such run")),
)
async def get_payout_run(
    run_id: RowIdPath, caller: Caller, session: Session, finance: Finance
) -> PayoutRunView:
    caller.require("finance")
    return await _run_view(finance, session, run_id)


@router.get(
    "/v1/finance/payout-runs/{run_id}/payment-file",
    tags=["finance"],
    response_class=Response,
    responses={
        200: {
            "content": {"application/xml": {}, "text/csv": {}},
            "description": "pain.001.001.03 XML (the run's EUR payouts) or CSV (all payouts)",
        },
        **errors(403, (404, "No such run"), (409, "No EUR payout to put in a pain.001 file")),
    },
)
async def payment_file(
    run_id: RowIdPath,
    caller: Caller,
    session: Session,
    finance: Finance,
    request: Request,
    format: Annotated[Literal["pain.001", "csv"], Query()] = "pain.001",
) -> Response:
    """The run's payment file (finance): ``pain.001`` is an ISO 20022 pain.001.001.03 SEPA
    credit-transfer file of its EUR payouts, validated against the standard's XSD before it is
    sent; ``csv`` lists every payout (other rails)."""
    caller.require("finance")
    found = await finance.payment_file(session, run_id, format, _payer(request))
    if found is None:
        raise NotFound("payout run", run_id=run_id)
    content, media = found
    ext = "xml" if format == "pain.001" else "csv"
    name = f"alliance-payout-run-{run_id}.{ext}"
    return Response(
        content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get(
    "/v1/payouts/{payout_id}/invoice.pdf",
    tags=["finance", "affiliate"],
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "The self-billing invoice"},
        **errors((404, "No such payout, or not the caller's"), (409, "Not a run's payout")),
    },
)
async def payout_invoice(
    payout_id: RowIdPath, caller: Caller, session: Session, finance: Finance, request: Request
) -> Response:
    """The self-billing invoice of a run's payout as a PDF (the payee affiliate, finance):
    payer and payee with their tax ids, the period, the orders summarised by store, the
    adjustments, and the currency conversion."""
    row = await finance.payout(session, payout_id)
    if row is None or not caller.may_see_affiliate(row.affiliate_id):
        raise NotFound("payout", payout_id=payout_id)
    pdf = await finance.invoice(session, row, _payer(request))
    name = f"alliance-self-billing-{payout_id}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


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
