"""Routes of orders: an order and its commission, why it went to whom, an affiliate's
orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.commission.core.commission import OrderCommission, visible_clicks
from services.commission.deps import (
    Caller,
    OrderIdPath,
    Orders,
    Session,
    StoreIdPath,
    TimeFrom,
    TimeTo,
    time_range,
)
from services.commission.errors import BadCursor, NotFound
from services.commission.orders.schemas import (
    AffiliateOrder,
    AffiliateOrdersPage,
    AttributionExplanation,
    ItemView,
    OrderView,
)
from shared.db import decode_cursor, encode_cursor
from shared.http import errors
from shared.money import ZERO, fmt

#: every route: a bearer key (401), a NUL or a malformed parameter (422), the database (503)
router = APIRouter(responses=errors(401, 422, 503))


def _items(
    row_items: list[dict[str, str]], result: OrderCommission, currency: str
) -> list[ItemView]:
    return [
        ItemView(
            product_id=item.product_id,
            category_id=line.get("category_id"),
            quantity=int(line["quantity"]),
            unit_price=line["unit_price"],
            shipping_fee=line["shipping_fee"],
            base=fmt(item.base, currency),
            rate=str(item.rate),
            commission=fmt(item.commission, currency),
            reversed=fmt(item.reversed, currency),
            net=fmt(item.net, currency),
        )
        for line, item in zip(row_items, result.items, strict=True)
    ]


@router.get(
    "/v1/stores/{store_id}/orders/{order_id}",
    response_model=OrderView,
    tags=["orders"],
    responses=errors((404, "No such order of this store, or not the caller's")),
)
async def get_order(
    store_id: StoreIdPath, order_id: OrderIdPath, caller: Caller, session: Session, orders: Orders
) -> OrderView:
    """An order of a store (an order number names an order only within its store): its
    status, attribution and commission per item. For the store, the order's attributed
    affiliate, finance or admin; anyone else gets 404, as for an order that does not exist."""
    if not caller.may_see_store(store_id) and caller.kind != "affiliate":
        raise NotFound("order", store_id=store_id, order_id=order_id)
    row, result = await orders.order_commission(session, store_id, order_id)
    if not (caller.may_see_store(row.store_id) or caller.may_see_affiliate(row.affiliate_id)):
        raise NotFound("order", store_id=store_id, order_id=order_id)
    currency = row.currency or "USD"

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
        rule=row.attribution.get("rule") if row.attribution else None,
        coupon_code=row.attribution.get("coupon_code") if row.attribution else None,
        attribution_decided=row.attribution_revision >= 0,
        attributed=row.affiliate_id is not None,
        chargeable=bool(result and result.chargeable),
        estimated=total("estimated"),
        payable=total("payable"),
        commission=total("commission"),
        reversed=total("reversed"),
        net=total("net"),
        items=_items(row.items, result, currency) if result is not None else [],
    )


@router.get(
    "/v1/stores/{store_id}/orders/{order_id}/attribution",
    response_model=AttributionExplanation,
    tags=["orders"],
    responses=errors((404, "No such order or decision, or not the caller's")),
)
async def explain_order(
    store_id: StoreIdPath, order_id: OrderIdPath, caller: Caller, session: Session, orders: Orders
) -> AttributionExplanation:
    """Why the order went to whom: the decision, the winning click, every other click of the
    buyer that was considered and why it lost, and the window. For the order's store, its
    attributed affiliate, finance or admin, each seeing only what is theirs: the store sees
    its own clicks in full and of the buyer's clicks on other stores only that they exist and
    why they lost; an affiliate sees its own clicks in full and the others unnamed."""
    row = await orders.order_row(session, store_id, order_id)
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
        coupon_code=data.get("coupon_code"),
        placed_at=data["placed_at"],
        window_start=data["window_start"],
        window_end=data["window_end"],
        considered=considered,
    )


@router.get(
    "/v1/affiliate/orders",
    response_model=AffiliateOrdersPage,
    tags=["affiliate"],
    responses=errors(403),
)
async def affiliate_orders(
    caller: Caller,
    session: Session,
    orders: Orders,
    start: TimeFrom = None,
    end: TimeTo = None,
    status: Annotated[str | None, Query(pattern="^(placed|completed|cancelled)$")] = None,
    cursor: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AffiliateOrdersPage:
    """The calling affiliate's orders with estimated versus settled commission."""
    caller.require("affiliate")
    lo, hi = time_range(start, end)
    try:
        after = decode_cursor(cursor, 2) if cursor else None
    except ValueError:
        raise BadCursor() from None
    found = await orders.affiliate_orders(
        session,
        caller.id,
        start=lo,
        end=hi,
        status=status,
        after=(after[0], after[1]) if after else None,
        limit=limit,
    )
    items = [
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
        for f, r in found
    ]
    return AffiliateOrdersPage(
        items=items,
        next_cursor=encode_cursor([found[-1][0].store_id, found[-1][0].order_id])
        if len(found) == limit
        else None,
    )
