"""All SQL of the product channel: the catalog's ranking fields and the channel's pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.models import affiliate_order_sql


class ChannelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def products_of(self, store_id: str) -> list[Any]:
        return list(
            await self.session.execute(
                text("SELECT product_id, category_id FROM commission.products WHERE store_id = :s"),
                {"s": store_id},
            )
        )

    async def affiliate_orders_by_product(
        self, store_id: str, since: datetime, hot_since: datetime
    ) -> dict[str, tuple[int, int]]:
        """Per product: affiliate orders placed since ``since`` and since ``hot_since``."""
        rows = await self.session.execute(
            text(
                f"""
                SELECT product_id, count(DISTINCT order_id) AS n90,
                    count(DISTINCT order_id) FILTER (WHERE placed_at >= :hot) AS n30
                FROM commission.order_lines
                WHERE store_id = :s AND {affiliate_order_sql()} AND placed_at >= :since
                GROUP BY product_id
                """
            ),
            {"s": store_id, "since": since, "hot": hot_since},
        )
        return {r.product_id: (int(r.n90), int(r.n30)) for r in rows}

    async def set_ranking(self, store_id: str, joined: bool, rows: dict[str, list[Any]]) -> None:
        """Ranking fields of the store's products: ``rows`` holds the arrays ids, rate, main,
        hot, n (orders in 90 days) and score, one element per product."""
        await self.session.execute(
            text(
                """
                UPDATE commission.products p
                SET in_program = :joined, rate = u.rate, main = u.main, hot = u.hot,
                    orders_90d = u.n, score = u.score
                FROM unnest(CAST(:ids AS text[]), CAST(:rate AS numeric[]),
                    CAST(:main AS boolean[]), CAST(:hot AS boolean[]), CAST(:n AS integer[]),
                    CAST(:score AS numeric[]))
                    AS u(id, rate, main, hot, n, score)
                WHERE p.store_id = :s AND p.product_id = u.id
                """
            ),
            {"s": store_id, "joined": joined, **rows},
        )

    async def stores_with_products(self) -> list[str]:
        rows = await self.session.execute(text("SELECT DISTINCT store_id FROM commission.products"))
        return sorted(rows.scalars())

    async def page(
        self,
        columns: tuple[str, ...],
        ascending: set[str],
        after: list[Any] | None,
        *,
        keyword: str | None,
        category_id: str | None,
        limit: int,
    ) -> list[Any]:
        """Products in the program ordered by ``columns`` (descending unless ``ascending``),
        after the keyset ``after``; ``keyword`` is a LIKE pattern of the lower-case title."""
        where = ["in_program"]
        params: dict[str, Any] = {"limit": limit}
        if keyword:
            params["like"] = keyword
            where.append("lower(title) LIKE :like")
        if category_id:
            params["category"] = category_id
            where.append("category_id = :category")
        if after is not None:
            # keyset over mixed directions: (a < x) or (a = x and (b < y or (b = y and ...)))
            clause = ""
            for n in reversed(range(len(columns))):
                col, op = columns[n], ">" if columns[n] in ascending else "<"
                params[f"k{n}"] = after[n]
                strict = f"{col} {op} :k{n}"
                clause = strict if not clause else f"({strict} OR ({col} = :k{n} AND {clause}))"
            where.append(clause)
        order = ", ".join(f"{c} {'ASC' if c in ascending else 'DESC'}" for c in columns)
        return list(
            await self.session.execute(
                text(
                    f"""
                    SELECT store_id, product_id, title, category_id, price_minor, currency,
                        rate, hot, main, orders_90d, score
                    FROM commission.products
                    WHERE {" AND ".join(where)}
                    ORDER BY {order}
                    LIMIT :limit
                    """
                ),
                params,
            )
        )
