"""Routes of orders: an order and its commission, why it went to whom, an affiliate's
orders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response

from services.commission.core.commission import (
    AdjustmentLine,
    OrderCommission,
    OrderFacts,
    visible_clicks,
)
from services.commission.core.holds import holding
from services.commission.core.incentives import Tier
from services.commission.deps import (
    Audit,
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
    AdjustmentRequest,
    AdjustmentView,
    AffiliateOrder,
    AffiliateOrdersPage,
    AttributionExplanation,
    BatchAdjustmentRequest,
    BatchAdjustmentResponse,
    BatchItemResult,
    ItemView,
    OrderView,
    TierProgressView,
    TierStanding,
)
from services.commission.orders.service import AdjustmentAsk
from shared.db import decode_cursor, encode_cursor
from shared.events import Ident
from shared.http import errors
from shared.money import ZERO, fmt

#: every route: a bearer key (401), a NUL or a malformed parameter (422), the database (503)
router = APIRouter(responses=errors(401, 422, 503))


def _tier(t: Tier | None) -> dict[str, str] | None:
    return None if t is None else {"from": str(t.start), "extra_rate": str(t.extra_rate)}


@router.get(
    "/v1/stores/{store_id}/incentives/tier-progress",
    response_model=TierProgressView,
    tags=["program"],
    responses=errors(403),
)
async def tier_progress(
    store_id: StoreIdPath,
    affiliate_id: Annotated[Ident, Query(description="the affiliate")],
    month: Annotated[
        str,
        Query(
            pattern=r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$",
            description="a calendar month (UTC), YYYY-MM, from 1970-01 to 2999-12",
        ),
    ],
    caller: Caller,
    session: Session,
    orders: Orders,
) -> TierProgressView:
    """An affiliate's standing in the store's performance tiers for a month, per currency of
    the tiers in force at the month's end: qualifying sales (sales amounts, not items or
    orders), the tier reached and the next, the bonus before and after the month's cap, and
    whether the month has settled (over, every order of it locked). For the store, finance,
    the admin and the affiliate itself."""
    if not (caller.kind == "affiliate" and caller.id == affiliate_id):
        caller.require_store(store_id)
    standings = await orders.tier_progress(session, store_id, affiliate_id, month)
    return TierProgressView(
        store_id=store_id,
        affiliate_id=affiliate_id,
        month=month,
        currencies=[
            TierStanding(
                currency=p.currency,
                orders=p.orders,
                qualifying_sales=fmt(p.sales, p.currency),
                tier=_tier(p.tier),
                next_tier=_tier(p.next_tier),
                bonus=fmt(p.bonus, p.currency),
                capped_bonus=fmt(p.capped_bonus, p.currency),
                settled=p.settled,
            )
            for p in standings
        ],
    )


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
            bonus_rate=str(item.bonus_rate),
            commission=fmt(item.commission, currency),
            reversed=fmt(item.reversed, currency),
            net=fmt(item.net, currency),
            amended=fmt(item.amended, currency),
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
    row, facts, result = await orders.order_commission(session, store_id, order_id)
    hold = holding(
        await orders.holds(session, [row.affiliate_id] if row.affiliate_id else []),
        row.store_id,
        row.affiliate_id,
    )
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
        new_buyer=bool(row.new_buyer),
        attribution_decided=row.attribution_revision >= 0,
        attributed=row.affiliate_id is not None,
        chargeable=bool(result and result.chargeable),
        estimated=total("estimated"),
        payable=fmt(ZERO, currency) if hold is not None else total("payable"),
        held=hold is not None,
        hold_id=hold.hold_id if hold is not None else None,
        commission=total("commission"),
        capped=total("capped"),
        reversed=total("reversed"),
        net=total("net"),
        items=_items(row.items, result, currency) if result is not None else [],
        **_controls(facts, result, orders.clock.now()),
    )


def _controls(
    facts: OrderFacts | None, result: OrderCommission | None, now: datetime
) -> dict[str, Any]:
    """What an order view shows of the program controls: the lock, the adjustments, the
    refunds whose reversal the lock skipped."""
    if facts is None or result is None:
        return {}
    return {
        "locks_at": result.locks_at,
        "locked": result.locked(now),
        "declined": result.declined,
        "reversal_skipped": {r: "locked" for r in result.refunds_skipped},
        "adjustments": [
            AdjustmentView.of_core(facts.store_id, facts.order_id, a) for a in facts.adjustments
        ],
    }


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
    now = orders.clock.now()
    holds = await orders.holds(session, [caller.id])
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
            locks_at=r.locks_at,
            locked=r.locked(now),
            held=holding(holds, f.store_id, caller.id) is not None,
            adjustments=[AdjustmentView.of_core(f.store_id, f.order_id, a) for a in f.adjustments],
        )
        for f, r in found
    ]
    return AffiliateOrdersPage(
        items=items,
        next_cursor=encode_cursor([found[-1][0].store_id, found[-1][0].order_id])
        if len(found) == limit
        else None,
    )


#: an Idempotency-Key header (8 to 200 characters), as payouts take it
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=200)]
#: a batch's: its items are keyed ``<key>/<index>`` (at most 200 characters stored)
BatchKey = Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=190)]


def _ask(order_id: str, body: AdjustmentRequest) -> AdjustmentAsk:
    return AdjustmentAsk(
        order_id,
        body.action,
        body.reason,
        tuple(AdjustmentLine(x.product_id, x.amount) for x in body.lines),
        body.note,
    )


@router.post(
    "/v1/stores/{store_id}/orders/{order_id}/adjustments",
    response_model=AdjustmentView,
    status_code=201,
    tags=["orders"],
    responses={
        200: {"model": AdjustmentView, "description": "Already made with this Idempotency-Key"},
        **errors(
            403,
            (404, "No such order of this store"),
            (409, "locked, too_many_adjustments, or the key was used for another adjustment"),
        ),
    },
)
async def adjust_order(
    store_id: StoreIdPath,
    order_id: OrderIdPath,
    body: AdjustmentRequest,
    caller: Caller,
    session: Session,
    orders: Orders,
    audit: Audit,
    idempotency_key: IdempotencyKey,
) -> Response:
    """A reason-coded adjustment of the order's commission (the store's own key or the admin),
    once per Idempotency-Key: ``amend`` lowers the named lines' commission base by ``amount``
    (never raises it; 422 ``amount_above_base`` or ``unknown_product``), ``decline`` zeroes the
    order's commission, ``reset`` undoes the adjustments before it. A ledger transaction of its
    own with the reason once the order completed, a change of the estimate before; refused
    after the locking date (409 ``locked``); at most 100 per order. The affiliate sees the
    reason and note (its order list, the ``commission.adjusted`` webhook)."""
    caller.require_store_owner(store_id)
    row, created = await orders.adjust(
        session, store_id, _ask(order_id, body), idempotency_key, caller.actor
    )
    view = AdjustmentView.of(row)
    if created:
        await audit.record(
            "order.adjust",
            f"store:{store_id}/order/{order_id}/adjustment/{row.seq}",
            tenant=f"store:{store_id}",
            before=None,
            after={**view.model_dump(mode="json"), "idempotency_key": idempotency_key},
        )
    return JSONResponse(view.model_dump(mode="json"), status_code=201 if created else 200)


@router.get(
    "/v1/stores/{store_id}/orders/{order_id}/adjustments",
    response_model=list[AdjustmentView],
    tags=["orders"],
    responses=errors(403, (404, "No such order of this store")),
)
async def order_adjustments(
    store_id: StoreIdPath, order_id: OrderIdPath, caller: Caller, session: Session, orders: Orders
) -> list[AdjustmentView]:
    """The order's adjustments in the order made, with who made them (the store, finance or
    the admin)."""
    caller.require_store(store_id)
    if await orders.order_row(session, store_id, order_id) is None:
        raise NotFound("order", store_id=store_id, order_id=order_id)
    rows = await orders.adjustment_rows(session, [(store_id, order_id)])
    return [AdjustmentView.of(r) for r in rows.get((store_id, order_id), [])]


@router.post(
    "/v1/stores/{store_id}/adjustments:batch",
    response_model=BatchAdjustmentResponse,
    tags=["orders"],
    responses=errors(403),
)
async def adjust_batch(
    store_id: StoreIdPath,
    body: BatchAdjustmentRequest,
    caller: Caller,
    session: Session,
    orders: Orders,
    audit: Audit,
    idempotency_key: BatchKey,
) -> BatchAdjustmentResponse:
    """Up to 10,000 adjustments of the store's orders in one request (finance teams' files),
    each processed as the single form with the key ``<Idempotency-Key>/<index>`` and its own
    result (201 accepted, 200 accepted before, else the refusal's status and code); a refused
    item changes nothing and the others stand. Replaying the request changes nothing."""
    caller.require_store_owner(store_id)
    outcomes = await orders.adjust_batch(
        session,
        store_id,
        [_ask(item.order_id, item) for item in body.items],
        idempotency_key,
        caller.actor,
    )
    items = [
        BatchItemResult(
            index=o.index,
            order_id=o.order_id,
            status=o.status,
            code=o.code,
            message=o.message,
            adjustment=AdjustmentView.of(o.row) if o.row is not None else None,
        )
        for o in outcomes
    ]
    accepted = sum(1 for o in outcomes if o.status == 201)
    if accepted:
        await audit.record(
            "order.adjust_batch",
            f"store:{store_id}/adjustments",
            tenant=f"store:{store_id}",
            before=None,
            after={"idempotency_key": idempotency_key, "accepted": accepted},
        )
    return BatchAdjustmentResponse(
        accepted=accepted,
        refused=sum(1 for o in outcomes if o.status >= 400),
        items=items,
    )
