"""`GET /v1/affiliate/products`: the product channel (an affiliate key, finance or admin)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import text

from services.commission.principals import Caller, Session
from shared.db import decode_cursor, encode_cursor, like_pattern
from shared.http import AllianceError, errors
from shared.money import fmt, from_minor

router = APIRouter(tags=["affiliate"], responses=errors(401, 403, 422, 503))

#: sort → (ORDER BY, the columns of the keyset, each descending unless named in ASCENDING)
SORTS: dict[str, tuple[str, ...]] = {
    "score": ("score", "rate", "store_id", "product_id"),
    "rate": ("rate", "score", "store_id", "product_id"),
    "orders": ("orders_90d", "score", "store_id", "product_id"),
}
ASCENDING = {"store_id", "product_id"}


class LinkRequest(BaseModel):
    store_id: str
    product_id: str


class ChannelProduct(BaseModel):
    store_id: str
    product_id: str
    title: str
    category_id: str | None
    price: str
    currency: str
    rate: str  # what an affiliate earns on an order placed now (main, category or default)
    commission_per_unit: str  # price × rate, before shipping is taken off
    hot: bool
    main: bool
    affiliate_orders_90d: int
    score: str
    link_request: LinkRequest  # the body of POST /v1/links for this product


class ChannelPage(BaseModel):
    sort: str
    items: list[ChannelProduct]
    next_cursor: str | None


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
        raise AllianceError(422, "bad_cursor", "cursor is not one this list gave") from None


@router.get("/v1/affiliate/products", response_model=ChannelPage)
async def products(
    caller: Caller,
    session: Session,
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
    where = ["in_program"]
    params: dict[str, Any] = {"limit": limit}
    if q:
        params["like"] = like_pattern(q)
        where.append("lower(title) LIKE :like")
    if category_id:
        params["category"] = category_id
        where.append("category_id = :category")
    if cursor:
        # keyset over mixed directions: (a < x) or (a = x and (b < y or (b = y and ...)))
        after = _after(cursor, columns)
        clause = ""
        for n in reversed(range(len(columns))):
            col, op = columns[n], ">" if columns[n] in ASCENDING else "<"
            params[f"k{n}"] = after[n]
            strict = f"{col} {op} :k{n}"
            clause = strict if not clause else f"({strict} OR ({col} = :k{n} AND {clause}))"
        where.append(clause)
    order = ", ".join(f"{c} {'ASC' if c in ASCENDING else 'DESC'}" for c in columns)
    rows = list(
        await session.execute(
            text(
                f"""
                SELECT store_id, product_id, title, category_id, price_minor, currency, rate,
                    hot, main, orders_90d, score
                FROM commission.products
                WHERE {" AND ".join(where)}
                ORDER BY {order}
                LIMIT :limit
                """
            ),
            params,
        )
    )
    items = []
    for r in rows:
        price = from_minor(int(r.price_minor), r.currency)
        rate = Decimal(r.rate).normalize()
        items.append(
            ChannelProduct(
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
        )
    return ChannelPage(
        sort=sort,
        items=items,
        next_cursor=encode_cursor([str(getattr(rows[-1], c)) for c in columns])
        if len(rows) == limit
        else None,
    )
