"""Routes of the commission service: program settings, orders, ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.commission.core import OpKind, ProgramHistory
from services.commission.principals import AdminService, Caller, Session
from services.commission.repository import CommissionRepository
from services.commission.schemas import (
    ItemView,
    JoinRequest,
    LedgerLine,
    OrderView,
    ProgramResponse,
    RateRequest,
)
from services.commission.service import CommissionService
from shared.http import NotFound
from shared.money import ZERO, fmt, from_minor

router = APIRouter()


def get_service(request: Request) -> CommissionService:
    service: CommissionService = request.app.state.service
    return service


Service = Annotated[CommissionService, Depends(get_service)]


def get_admin(request: Request) -> AdminService:
    admin: AdminService = request.app.state.admin
    return admin


Admin = Annotated[AdminService, Depends(get_admin)]


def program_view(store_id: str, history: ProgramHistory) -> ProgramResponse:
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
    )


@router.post("/v1/stores/{store_id}/program/join", response_model=ProgramResponse, tags=["program"])
async def join(
    store_id: str, body: JoinRequest, session: Session, service: Service
) -> ProgramResponse:
    """The store joins the program (default rate 6% unless given)."""
    await service.change_program(
        session, store_id, OpKind.JOIN, f"store:{store_id}", rate=body.default_rate
    )
    return program_view(store_id, await service.program(session, store_id))


@router.post("/v1/stores/{store_id}/program/exit", response_model=ProgramResponse, tags=["program"])
async def exit_program(store_id: str, session: Session, service: Service) -> ProgramResponse:
    """The store leaves the program (no earlier than 15 days after joining)."""
    await service.change_program(session, store_id, OpKind.EXIT, f"store:{store_id}")
    return program_view(store_id, await service.program(session, store_id))


@router.get("/v1/stores/{store_id}/program", response_model=ProgramResponse, tags=["program"])
async def get_program(store_id: str, session: Session, service: Service) -> ProgramResponse:
    return program_view(store_id, await service.program(session, store_id))


@router.put("/v1/stores/{store_id}/rates/default", response_model=ProgramResponse, tags=["program"])
async def set_default_rate(
    store_id: str, body: RateRequest, session: Session, service: Service
) -> ProgramResponse:
    await service.change_program(
        session, store_id, OpKind.DEFAULT_RATE, f"store:{store_id}", rate=body.rate
    )
    return program_view(store_id, await service.program(session, store_id))


@router.get("/v1/orders/{order_id}", response_model=OrderView, tags=["orders"])
async def get_order(order_id: str, caller: Caller, session: Session, service: Service) -> OrderView:
    """An order's status, attribution and commission per item (finance, the order's store or
    its attributed affiliate)."""
    row, result = await service.order_commission(session, order_id)
    if not (
        caller.may_see_store(row.store_id)
        or (caller.kind == "affiliate" and caller.id == row.affiliate_id)
    ):
        raise NotFound("order", order_id=order_id)
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


@router.get("/v1/ledger", response_model=list[LedgerLine], tags=["ledger"])
async def get_ledger(caller: Caller, session: Session, limit: int = 1000) -> list[LedgerLine]:
    """Ledger postings, oldest first (finance)."""
    caller.require("finance")
    rows = await CommissionRepository(session).ledger(min(max(limit, 1), 10_000))
    return [
        LedgerLine(
            txn_id=r.id,
            key=r.key,
            kind=r.kind,
            order_id=r.order_id,
            account=r.account,
            currency=r.currency,
            amount=str(from_minor(r.amount_minor, r.currency)),
            occurred_at=r.occurred_at,
        )
        for r in rows
    ]
