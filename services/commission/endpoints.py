"""Routes of the commission service: program settings, orders, ledger."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core import OpKind, ProgramHistory, compute_order, visible_clicks
from services.commission.principals import AdminService, Caller, Principal, Session
from services.commission.repository import CommissionRepository, PrincipalRepository
from services.commission.schemas import (
    MAX_BIGINT,
    AffiliateOrder,
    AffiliateOrdersPage,
    AttributionExplanation,
    CreateAffiliate,
    CreatedKey,
    CreatedStore,
    CreateFinanceUser,
    CreateStore,
    IdentPath,
    ItemView,
    JoinRequest,
    LedgerLine,
    LedgerPage,
    MainProductRequest,
    MainProductView,
    OperationView,
    OrderIdPath,
    OrderView,
    PayoutRequest,
    PayoutView,
    PrincipalIdPath,
    ProgramResponse,
    RateRequest,
    ReconciliationDay,
    RotatedSecret,
    RowIdPath,
    Settlement,
    SettlementTotals,
    Statement,
    StatementTotals,
    StoreIdPath,
    TimeFrom,
    TimeTo,
    WindowRequest,
)
from services.commission.service import CommissionService
from shared.csvsafe import csv_text
from shared.db import decode_cursor, encode_cursor
from shared.http import AllianceError, NotFound, errors
from shared.money import ZERO, fmt, from_minor
from shared.secrets import PrincipalKind

#: every route: a bearer key (401), a NUL or a malformed parameter (422), the database (503)
router = APIRouter(responses=errors(401, 422, 503))
#: program changes: the store's own key or the admin (403), a known store (404), the rules (409)
CHANGE = errors(403, (404, "No such store"), 409)


async def get_service(request: Request) -> CommissionService:
    service: CommissionService = request.app.state.service
    return service


Service = Annotated[CommissionService, Depends(get_service)]


async def get_admin(request: Request) -> AdminService:
    admin: AdminService = request.app.state.admin
    return admin


Admin = Annotated[AdminService, Depends(get_admin)]


def program_view(store_id: str, history: ProgramHistory, default_window: int) -> ProgramResponse:
    s = history.current()
    return ProgramResponse(
        store_id=store_id,
        state="joined" if s.joined else ("exited" if s.exited_at else "never_joined"),
        joined_at=s.joined_at if s.joined else None,
        exited_at=s.exited_at,
        exit_allowed_at=s.exit_allowed_at,
        rejoin_allowed_at=s.rejoin_allowed_at,
        default_rate=str(s.default_rate),
        category_rates={k: str(v) for k, v in s.category_rates.items()},
        main_products={k: (str(v) if v is not None else None) for k, v in s.main_products.items()},
        attribution_window_days=s.window_days or default_window,
        attribution_window_is_default=s.window_days is None,
    )


# -- admin ---------------------------------------------------------------------------------


@router.post(
    "/v1/admin/stores",
    status_code=201,
    response_model=CreatedStore,
    tags=["admin"],
    responses=errors(403, (409, "The store exists already")),
)
async def create_store(
    body: CreateStore, caller: Caller, session: Session, admin: Admin, service: Service
) -> CreatedStore:
    """Register a store (seller). Its API key and webhook secret are shown once."""
    caller.require("admin")
    keys = await admin.create(
        session, "store", body.store_id, body.name, service.clock.now(), body.landing_url_template
    )
    return CreatedStore(store_id=body.store_id, **keys)


@router.post(
    "/v1/admin/stores/{store_id}/rotate-secret",
    response_model=RotatedSecret,
    tags=["admin"],
    responses=errors(403, (404, "No such store")),
)
async def rotate_secret(
    store_id: StoreIdPath, caller: Caller, session: Session, admin: Admin, service: Service
) -> RotatedSecret:
    """A new webhook secret; the previous one keeps working until the next rotation."""
    caller.require("admin")
    secret = await admin.rotate_secret(session, store_id, service.clock.now())
    return RotatedSecret(store_id=store_id, webhook_secret=secret)


@router.post(
    "/v1/admin/affiliates",
    status_code=201,
    response_model=CreatedKey,
    tags=["admin"],
    responses=errors(403, (409, "The affiliate exists already")),
)
async def create_affiliate(
    body: CreateAffiliate, caller: Caller, session: Session, admin: Admin, service: Service
) -> CreatedKey:
    """Register an affiliate. Its API key is shown once."""
    caller.require("admin")
    now = service.clock.now()
    keys = await admin.create(session, "affiliate", body.affiliate_id, body.name, now)
    return CreatedKey(id=body.affiliate_id, **keys)


@router.post(
    "/v1/admin/finance-users",
    status_code=201,
    response_model=CreatedKey,
    tags=["admin"],
    responses=errors(403, (409, "The finance user exists already")),
)
async def create_finance_user(
    body: CreateFinanceUser, caller: Caller, session: Session, admin: Admin, service: Service
) -> CreatedKey:
    """Register a finance user. Its API key is shown once."""
    caller.require("admin")
    now = service.clock.now()
    keys = await admin.create(session, "finance", body.user_id, body.user_id, now)
    return CreatedKey(id=body.user_id, **keys)


_KEY_ROTATION: dict[str, PrincipalKind] = {
    "stores": "store",
    "affiliates": "affiliate",
    "finance-users": "finance",
}


@router.post(
    "/v1/admin/{kind}/{principal_id}/keys/rotate",
    response_model=CreatedKey,
    tags=["admin"],
    responses=errors(403, (404, "No such store, affiliate or finance user")),
)
async def rotate_key(
    kind: Literal["stores", "affiliates", "finance-users"],
    principal_id: PrincipalIdPath,
    caller: Caller,
    session: Session,
    admin: Admin,
    service: Service,
) -> CreatedKey:
    """A new API key for a store, affiliate or finance user, shown once; the old key stops
    working at once (a revocation: rotate and do not hand out the new key). The tracker
    learns an affiliate's new key through the directory within moments."""
    caller.require("admin")
    key = await admin.rotate_key(session, _KEY_ROTATION[kind], principal_id, service.clock.now())
    return CreatedKey(id=principal_id, api_key=key)


# -- program -------------------------------------------------------------------------------


async def _program_change(
    store_id: str,
    kind: OpKind,
    caller: Principal,
    session: AsyncSession,
    service: CommissionService,
    admin: AdminService,
    rate: Decimal | None = None,
    key: str | None = None,
    days: int | None = None,
) -> ProgramResponse:
    caller.require_store_owner(store_id)  # finance reads programs but never changes them
    if await PrincipalRepository(session).get("store", store_id) is None:
        raise NotFound("store", store_id=store_id)
    actor = f"{caller.kind}:{caller.id}"
    await service.change_program(session, store_id, kind, actor, key=key, rate=rate, days=days)
    if kind in (OpKind.JOIN, OpKind.EXIT, OpKind.ATTRIBUTION_WINDOW):
        await admin.publish_store(session, store_id, service.clock.now())
    return program_view(store_id, await service.program(session, store_id), admin.default_window)


@router.post(
    "/v1/stores/{store_id}/program/join",
    response_model=ProgramResponse,
    tags=["program"],
    responses=CHANGE,
)
async def join(
    store_id: StoreIdPath,
    body: JoinRequest,
    caller: Caller,
    session: Session,
    service: Service,
    admin: Admin,
) -> ProgramResponse:
    """The store joins the program (default rate 6% unless given)."""
    return await _program_change(
        store_id, OpKind.JOIN, caller, session, service, admin, body.default_rate
    )


@router.post(
    "/v1/stores/{store_id}/program/exit",
    response_model=ProgramResponse,
    tags=["program"],
    responses=CHANGE,
)
async def exit_program(
    store_id: StoreIdPath, caller: Caller, session: Session, service: Service, admin: Admin
) -> ProgramResponse:
    """The store leaves the program (no earlier than 15 days after joining)."""
    return await _program_change(store_id, OpKind.EXIT, caller, session, service, admin)


@router.get(
    "/v1/stores/{store_id}/program",
    response_model=ProgramResponse,
    tags=["program"],
    responses=errors(403),
)
async def get_program(
    store_id: StoreIdPath, caller: Caller, session: Session, service: Service, admin: Admin
) -> ProgramResponse:
    caller.require_store(store_id)
    return program_view(store_id, await service.program(session, store_id), admin.default_window)


@router.put(
    "/v1/stores/{store_id}/rates/default",
    response_model=ProgramResponse,
    tags=["program"],
    responses=CHANGE,
)
async def set_default_rate(
    store_id: StoreIdPath,
    body: RateRequest,
    caller: Caller,
    session: Session,
    service: Service,
    admin: Admin,
) -> ProgramResponse:
    return await _program_change(
        store_id, OpKind.DEFAULT_RATE, caller, session, service, admin, body.rate
    )


@router.put(
    "/v1/stores/{store_id}/attribution-window",
    response_model=ProgramResponse,
    tags=["program"],
    responses=CHANGE,
)
async def set_attribution_window(
    store_id: StoreIdPath,
    body: WindowRequest,
    caller: Caller,
    session: Session,
    service: Service,
    admin: Admin,
) -> ProgramResponse:
    """The program's own attribution window (1 to 30 days), for orders placed from now on."""
    return await _program_change(
        store_id, OpKind.ATTRIBUTION_WINDOW, caller, session, service, admin, days=body.days
    )


@router.delete(
    "/v1/stores/{store_id}/attribution-window",
    response_model=ProgramResponse,
    tags=["program"],
    responses=CHANGE,
)
async def delete_attribution_window(
    store_id: StoreIdPath, caller: Caller, session: Session, service: Service, admin: Admin
) -> ProgramResponse:
    """Back to the deployment's default window, for orders placed from now on."""
    return await _program_change(
        store_id, OpKind.ATTRIBUTION_WINDOW, caller, session, service, admin
    )


@router.get(
    "/v1/stores/{store_id}/orders/{order_id}",
    response_model=OrderView,
    tags=["orders"],
    responses=errors((404, "No such order of this store, or not the caller's")),
)
async def get_order(
    store_id: StoreIdPath, order_id: OrderIdPath, caller: Caller, session: Session, service: Service
) -> OrderView:
    """An order of a store (an order number names an order only within its store): its
    status, attribution and commission per item. For the store, the order's attributed
    affiliate, finance or admin; anyone else gets 404, as for an order that does not exist."""
    if not caller.may_see_store(store_id) and caller.kind != "affiliate":
        raise NotFound("order", store_id=store_id, order_id=order_id)
    row, result = await service.order_commission(session, store_id, order_id)
    if not (caller.may_see_store(row.store_id) or caller.may_see_affiliate(row.affiliate_id)):
        raise NotFound("order", store_id=store_id, order_id=order_id)
    currency = row.currency or "USD"
    items: list[ItemView] = []
    if result is not None:
        for line, item in zip(row.items, result.items, strict=True):
            items.append(
                ItemView(
                    product_id=item.product_id,
                    category_id=line.get("category_id"),
                    quantity=line["quantity"],
                    unit_price=line["unit_price"],
                    shipping_fee=line["shipping_fee"],
                    base=fmt(item.base, currency),
                    rate=str(item.rate),
                    commission=fmt(item.commission, currency),
                    reversed=fmt(item.reversed, currency),
                    net=fmt(item.net, currency),
                )
            )

    def total(attr: str) -> str:
        return fmt(getattr(result, attr) if result else ZERO, currency)

    return OrderView(
        order_id=row.order_id,
        store_id=row.store_id,
        status=row.status,
        currency=row.currency,
        placed_at=row.placed_at,
        affiliate_id=row.affiliate_id,
        click_id=row.click_id,
        attribution_decided=row.attribution_revision >= 0,
        attributed=row.affiliate_id is not None,
        chargeable=bool(result and result.chargeable),
        estimated=total("estimated"),
        payable=total("payable"),
        commission=total("commission"),
        reversed=total("reversed"),
        net=total("net"),
        items=items,
    )


@router.get(
    "/v1/stores/{store_id}/orders/{order_id}/attribution",
    response_model=AttributionExplanation,
    tags=["orders"],
    responses=errors((404, "No such order or decision, or not the caller's")),
)
async def explain_order(
    store_id: StoreIdPath, order_id: OrderIdPath, caller: Caller, session: Session, service: Service
) -> AttributionExplanation:
    """Why the order went to whom: the decision, the winning click, every other click of the
    buyer that was considered and why it lost, and the window. For the order's store, its
    attributed affiliate, finance or admin, each seeing only what is theirs: the store sees
    its own clicks in full and of the buyer's clicks on other stores only that they exist and
    why they lost; an affiliate sees its own clicks in full and the others unnamed."""
    row = await CommissionRepository(session).order_row(store_id, order_id)
    as_affiliate = caller.kind == "affiliate" and row is not None and caller.id == row.affiliate_id
    if row is None or not (caller.may_see_store(row.store_id) or as_affiliate):
        raise NotFound("order", store_id=store_id, order_id=order_id)
    if row.attribution is None:
        raise NotFound("attribution decision", store_id=store_id, order_id=order_id)
    data = dict(row.attribution)
    considered = visible_clicks(data.get("considered", []), caller.kind, caller.id, store_id)
    return AttributionExplanation(
        order_id=order_id,
        store_id=row.store_id,
        rule=data["rule"],
        revision=data["revision"],
        decided_at=data["occurred_at"],
        affiliate_id=data.get("affiliate_id"),
        click_id=data.get("click_id"),
        click_at=data.get("click_at"),
        sub_id=data.get("sub_id"),
        placed_at=data["placed_at"],
        window_start=data["window_start"],
        window_end=data["window_end"],
        considered=considered,
    )


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """``[from, to)``, by default from 1970 to now (both are UTC: :data:`TimeFrom`)."""
    end = end or datetime.now(UTC)
    start = start or datetime(1970, 1, 1, tzinfo=UTC)
    if start >= end:
        raise AllianceError(422, "empty_range", "from must be before to")
    return start, end


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
    service: Service,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> Settlement:
    """What a store owes for orders completed in [from, to), per currency (finance, the store)."""
    caller.require_store(store_id)
    lo, hi = _range(start, end)
    totals = await service.settlement(session, lo, hi, store_id=store_id)
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
    service: Service,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> Settlement:
    """What an affiliate earned on orders completed in [from, to), per currency (finance, the
    affiliate itself)."""
    if not caller.may_see_affiliate(affiliate_id):
        raise NotFound("affiliate", affiliate_id=affiliate_id)
    lo, hi = _range(start, end)
    totals = await service.settlement(session, lo, hi, affiliate_id=affiliate_id)
    return _settlement(f"affiliate:{affiliate_id}", lo, hi, totals)


@router.get(
    "/v1/affiliate/orders",
    response_model=AffiliateOrdersPage,
    tags=["affiliate"],
    responses=errors(403),
)
async def affiliate_orders(
    caller: Caller,
    session: Session,
    service: Service,
    start: TimeFrom = None,
    end: TimeTo = None,
    status: Annotated[str | None, Query(pattern="^(placed|completed|cancelled)$")] = None,
    cursor: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AffiliateOrdersPage:
    """The calling affiliate's orders with estimated versus settled commission."""
    caller.require("affiliate")
    lo, hi = _range(start, end)
    try:
        after = tuple(decode_cursor(cursor, 2)) if cursor else None
    except ValueError:
        raise AllianceError(422, "bad_cursor", "cursor is not one this API gave") from None
    repo = CommissionRepository(session)
    keys = await repo.affiliate_order_ids(
        caller.id,
        start=lo,
        end=hi,
        status=status,
        after=(after[0], after[1]) if after else None,
        limit=limit,
    )
    facts = await repo.order_facts(keys)
    programs = await repo.programs({f.store_id for f in facts.values()})
    items = []
    for key in keys:
        f = facts[key]
        r = compute_order(f, programs[f.store_id], service.policy)
        items.append(
            AffiliateOrder(
                order_id=f.order_id,
                store_id=f.store_id,
                placed_at=f.placed_at,
                status=f.status.value,
                currency=f.currency,
                chargeable=r.chargeable,
                affiliate_sales=fmt(r.sales if r.chargeable else ZERO, f.currency),
                estimated=fmt(r.estimated, f.currency),
                settled=fmt(r.payable, f.currency),
                reversed=fmt(r.reversed, f.currency),
            )
        )
    return AffiliateOrdersPage(
        items=items, next_cursor=encode_cursor(list(keys[-1])) if len(keys) == limit else None
    )


@router.get(
    "/v1/affiliate/earnings", response_model=Settlement, tags=["affiliate"], responses=errors(403)
)
async def affiliate_earnings(
    caller: Caller,
    session: Session,
    service: Service,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> Settlement:
    """The calling affiliate's earnings per currency (as its settlement)."""
    caller.require("affiliate")
    lo, hi = _range(start, end)
    totals = await service.settlement(session, lo, hi, affiliate_id=caller.id)
    return _settlement(f"affiliate:{caller.id}", lo, hi, totals)


_PERIOD = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII digits only (\d takes any script's)


def _period(period: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a ``YYYY-MM`` month, exactly that form, years 2000 to 2100."""
    match = _PERIOD.fullmatch(period)
    year, month = (int(match[1]), int(match[2])) if match else (0, 0)
    if not (2000 <= year <= 2100 and 1 <= month <= 12):
        raise AllianceError(
            422, "invalid_period", "a period is YYYY-MM, a year from 2000 to 2100", period=period
        )
    start = datetime(year, month, 1, tzinfo=UTC)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


async def _statement(store_id: str, period: str, session: AsyncSession) -> Statement:
    start, end = _period(period)
    repo = CommissionRepository(session)
    row = await repo.statement(store_id, period)
    if row is not None:
        totals = [StatementTotals(**t) for t in row.totals]
        return Statement(
            store_id=store_id,
            period=period,
            start=start,
            end=end,
            closed=True,
            closed_at=row.closed_at,
            closed_by=row.closed_by,
            totals=totals,
        )
    sums: dict[str, dict[str, int]] = {}
    for currency, kind, count, minor in await repo.store_postings_by_kind(store_id, start, end):
        t = sums.setdefault(currency, {"commission": 0, "orders": 0, "reversal": 0, "refunds": 0})
        if kind == "commission":
            t["commission"] -= minor  # the store's side is negative: it owes
            t["orders"] += count
        elif kind == "reversal":
            t["reversal"] += minor
            t["refunds"] += count
    totals = [
        StatementTotals(
            currency=c,
            orders_charged=t["orders"],
            commission=str(from_minor(t["commission"], c)),
            refunds=t["refunds"],
            reversed=str(from_minor(t["reversal"], c)),
            net=str(from_minor(t["commission"] - t["reversal"], c)),
        )
        for c, t in sorted(sums.items())
    ]
    return Statement(
        store_id=store_id,
        period=period,
        start=start,
        end=end,
        closed=False,
        closed_at=None,
        closed_by=None,
        totals=totals,
    )


@router.get(
    "/v1/statements/{store_id}/{period}",
    response_model=Statement,
    tags=["finance"],
    responses=errors(403),
)
async def get_statement(
    store_id: StoreIdPath, period: str, caller: Caller, session: Session, service: Service
) -> Statement:
    """A store's monthly statement: frozen once closed, live while open."""
    caller.require_store(store_id)
    return await _statement(store_id, period, session)


@router.post(
    "/v1/statements/{store_id}/{period}/close",
    response_model=Statement,
    tags=["finance"],
    responses=errors(403, (409, "The month is not over yet")),
)
async def close_statement(
    store_id: StoreIdPath, period: str, caller: Caller, session: Session, service: Service
) -> Statement:
    """Freeze a month's statement (finance). Events that arrive later post into the open
    period and never change it. Closing again returns the statement as first closed."""
    caller.require("finance")
    _, end = _period(period)
    now = service.clock.now()
    if now < end:
        raise AllianceError(
            409, "period_not_over", "a month can be closed once it is over", ends_at=end.isoformat()
        )
    current = await _statement(store_id, period, session)
    if not current.closed:
        totals = [t.model_dump(mode="json") for t in current.totals]
        await CommissionRepository(session).close_statement(
            store_id, period, now, f"{caller.kind}:{caller.id}", totals
        )
    return await _statement(store_id, period, session)


@router.get(
    "/v1/reconciliation",
    response_model=list[ReconciliationDay],
    tags=["finance"],
    responses=errors(403),
)
async def reconciliation(
    caller: Caller,
    session: Session,
    service: Service,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> list[ReconciliationDay]:
    """Per day and currency: commission estimated at placement, what became payable, what was
    cancelled or reversed, and the day's estimate explained by what became of its orders."""
    caller.require("finance")
    lo, hi = _range(start, end)
    days = await service.reconciliation(session, lo, hi)
    out = []
    for (day, currency), r in days.items():
        explained = r["day_orders_payable"] + r["day_orders_cancelled"] + r["day_orders_open"]
        out.append(
            ReconciliationDay(
                day=day,
                currency=currency,
                **{k: fmt(v, currency) for k, v in r.items()},
                unexplained=fmt(r["estimated_at_placement"] - explained, currency),
            )
        )
    return out


def _payout_view(row: Any) -> PayoutView:
    return PayoutView(
        payout_id=row.id,
        affiliate_id=row.affiliate_id,
        up_to=row.up_to,
        amounts=row.amounts,
        created_at=row.created_at,
    )


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
    service: Service,
    request: Request,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=200)],
) -> Response:
    """Pay an affiliate's net payable balance up to a time (finance), once per key. Only
    commission whose order completed more than the holding period ago is payable; a claw-back
    larger than the balance is not paid and carries forward."""
    caller.require("finance")
    holding = timedelta(days=request.app.state.settings.payout_holding_days)
    row, created = await service.pay(
        session, idempotency_key, body.affiliate_id, body.up_to, holding
    )
    return JSONResponse(
        _payout_view(row).model_dump(mode="json"), status_code=201 if created else 200
    )


@router.get(
    "/v1/payouts/{payout_id}",
    response_model=PayoutView,
    tags=["finance"],
    responses=errors((404, "No such payout, or not the caller's")),
)
async def get_payout(payout_id: RowIdPath, caller: Caller, session: Session) -> PayoutView:
    row = await CommissionRepository(session).payout(payout_id)
    if row is None or not caller.may_see_affiliate(row.affiliate_id):
        raise NotFound("payout", payout_id=payout_id)
    return _payout_view(row)


def _ledger_line(r: Any) -> LedgerLine:
    return LedgerLine(
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
    )


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
    account: str | None = None,
    start: TimeFrom = None,
    end: TimeTo = None,
    cursor: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """Ledger postings in posting order (finance), optionally of one account and posted in
    [from, to). Keyset pagination: pass ``next_cursor`` back as ``cursor``. With
    ``Accept: text/csv`` every matching posting is streamed as CSV."""
    caller.require("finance")
    repo = CommissionRepository(session)
    if "text/csv" in request.headers.get("accept", ""):
        rows: list[LedgerLine] = []
        after = cursor
        while batch := await repo.ledger(
            account=account, start=start, end=end, after=after, limit=5000
        ):
            rows += [_ledger_line(r) for r in batch]
            after = batch[-1].posting_id
        return Response(csv_of(rows), media_type="text/csv")
    batch = await repo.ledger(account=account, start=start, end=end, after=cursor, limit=limit)
    items = [_ledger_line(r) for r in batch]
    page = LedgerPage(
        items=items, next_cursor=items[-1].posting_id if len(items) == limit else None
    )
    return JSONResponse(page.model_dump(mode="json"))


def csv_of(lines: list[LedgerLine]) -> str:
    """The ledger lines as CSV, every cell neutralised against formula injection (negative
    amounts too: ``'-1.50``; :mod:`shared.csvsafe`)."""
    return csv_text(list(LedgerLine.model_fields), (ln.model_dump(mode="json") for ln in lines))


@router.get(
    "/v1/stores/{store_id}/operations",
    response_model=list[OperationView],
    tags=["program"],
    responses=errors(403),
)
async def operations(
    store_id: StoreIdPath,
    caller: Caller,
    session: Session,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> list[OperationView]:
    """The operation record: every program change with actor, time, before and after."""
    caller.require_store(store_id)
    rows = await CommissionRepository(session).operations(store_id, start, end)
    return [
        OperationView(
            id=r.id,
            kind=r.kind,
            at=r.at,
            key=r.key,
            rate=str(r.rate.normalize()) if r.rate is not None else None,
            days=r.days,
            actor=r.actor,
            before=r.before,
            after=r.after,
        )
        for r in rows
    ]


@router.get(
    "/v1/stores/{store_id}/main-products",
    response_model=list[MainProductView],
    tags=["program"],
    responses=errors(403),
)
async def main_products(
    store_id: StoreIdPath, caller: Caller, session: Session, service: Service
) -> list[MainProductView]:
    """The store's main products (at most 60) and their own rates, if any."""
    caller.require_store(store_id)
    state = (await service.program(session, store_id)).current()
    return [
        MainProductView(
            product_id=p,
            rate=str(r) if r is not None else None,
            effective_rate=str(state.rate_for(p, None)),
        )
        for p, r in sorted(state.main_products.items())
    ]


@router.put(
    "/v1/stores/{store_id}/rates/categories/{category_id}",
    response_model=ProgramResponse,
    tags=["program"],
    responses=CHANGE,
)
async def set_category_rate(
    store_id: StoreIdPath,
    category_id: IdentPath,
    body: RateRequest,
    caller: Caller,
    session: Session,
    service: Service,
    admin: Admin,
) -> ProgramResponse:
    """The rate of a category, from now on (orders placed before keep theirs)."""
    return await _program_change(
        store_id, OpKind.CATEGORY_RATE, caller, session, service, admin, body.rate, category_id
    )


@router.delete(
    "/v1/stores/{store_id}/rates/categories/{category_id}",
    response_model=ProgramResponse,
    tags=["program"],
    responses=CHANGE,
)
async def delete_category_rate(
    store_id: StoreIdPath,
    category_id: IdentPath,
    caller: Caller,
    session: Session,
    service: Service,
    admin: Admin,
) -> ProgramResponse:
    """The category falls back to the default rate from now on."""
    return await _program_change(
        store_id, OpKind.CATEGORY_RATE, caller, session, service, admin, None, category_id
    )


@router.put(
    "/v1/stores/{store_id}/main-products/{product_id}",
    response_model=ProgramResponse,
    tags=["program"],
    responses=CHANGE,
)
async def set_main_product(
    store_id: StoreIdPath,
    product_id: IdentPath,
    body: MainProductRequest,
    caller: Caller,
    session: Session,
    service: Service,
    admin: Admin,
) -> ProgramResponse:
    """Make a product a main product (at most 60), with a rate of its own if given."""
    return await _program_change(
        store_id, OpKind.MAIN_PRODUCT, caller, session, service, admin, body.rate, product_id
    )


@router.delete(
    "/v1/stores/{store_id}/main-products/{product_id}",
    response_model=ProgramResponse,
    tags=["program"],
    responses=CHANGE,
)
async def delete_main_product(
    store_id: StoreIdPath,
    product_id: IdentPath,
    caller: Caller,
    session: Session,
    service: Service,
    admin: Admin,
) -> ProgramResponse:
    return await _program_change(
        store_id, OpKind.UNMAIN_PRODUCT, caller, session, service, admin, None, product_id
    )
