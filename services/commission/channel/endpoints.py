"""`GET /v1/affiliate/products`: the product channel (an affiliate key, finance or admin)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from services.commission.channel.schemas import ChannelPage, ChannelProduct, LinkRequest
from services.commission.channel.service import ASCENDING, SORTS
from services.commission.deps import Caller, Channel, Session
from services.commission.errors import BadCursor
from shared.db import decode_cursor, encode_cursor, like_pattern
from shared.http import errors
from shared.money import fmt, from_minor

router = APIRouter(tags=["affiliate"], responses=errors(401, 403, 422, 503))

#: the numbers a cursor may hold: every score, rate and order count fits (INTEGER columns)
_CURSOR_BOUND = 2**31 - 1


def _number(column: str, value: str) -> int | Decimal:
    number = Decimal(value)
    if not number.is_finite() or abs(number) > _CURSOR_BOUND:
        raise ValueError("out of range")
    return int(value) if column == "orders_90d" else number


def _after(cursor: str, columns: tuple[str, ...]) -> list[Any]:
    try:
        values = decode_cursor(cursor, len(columns))
        return [
            v if c in ASCENDING else _number(c, v) for c, v in zip(columns, values, strict=True)
        ]
    except (ValueError, ArithmeticError):
        raise BadCursor("cursor is not one this list gave") from None


def _product(r: Any) -> ChannelProduct:
    price = from_minor(int(r.price_minor), r.currency)
    rate = Decimal(r.rate).normalize()
    return ChannelProduct(
        store_id=r.store_id,
        product_id=r.product_id,
        title=r.title,
        category_id=r.category_id,
        price=fmt(price, r.currency),
        currency=r.currency,
        rate=str(rate),
        commission_per_unit=fmt(price * rate, r.currency),
        hot=r.hot,
        main=r.main,
        affiliate_orders_90d=r.orders_90d,
        score=str(Decimal(r.score).normalize()),
        link_request=LinkRequest(store_id=r.store_id, product_id=r.product_id),
    )


@router.get("/v1/affiliate/products", response_model=ChannelPage)
async def products(
    caller: Caller,
    session: Session,
    channel: Channel,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    category_id: str | None = None,
    sort: Annotated[Literal["score", "rate", "orders"], Query()] = "score",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ChannelPage:
    """Products of the stores in the program, searchable by keyword (title, case-insensitive)
    and category. Ranked by default by the score (hot product 30 + main product 10 + 100 ×
    rate + 10 × log10(1 + affiliate orders in 90 days)); ties go to the higher rate. Each
    product carries the rate an affiliate earns now and a ready ``POST /v1/links`` body."""
    caller.require("affiliate", "finance")
    columns = SORTS[sort]
    rows = await channel.page(
        session,
        sort,
        _after(cursor, columns) if cursor else None,
        like=like_pattern(q) if q else None,
        category_id=category_id,
        limit=limit,
    )
    return ChannelPage(
        sort=sort,
        items=[_product(r) for r in rows],
        next_cursor=encode_cursor([str(getattr(rows[-1], c)) for c in columns])
        if len(rows) == limit
        else None,
    )
