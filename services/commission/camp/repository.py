"""All SQL of the alliance camp: a visitor's interests and the camp's keyset pages."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.camp import Profile

#: the columns of a camp row, as both halves of a personalised page select them
_COLUMNS = (
    "p.store_id, p.product_id, p.title, p.category_id, p.price_minor, p.currency, p.rate, "
    "p.hot, p.score AS base"
)
#: the order of the camp (sort_key of the core): final and rate descending, ids ascending
_ORDER = "final DESC, rate DESC, store_id, product_id"


def _after(final: str, rate: str, store: str, product: str) -> str:
    """Rows strictly after the keyset ``(:kf, :kr, :ks, :kp)`` in :data:`_ORDER` (with a
    plain bound on the first column first, which an index range can use)."""
    return (
        f"{final} <= :kf AND ({final} < :kf OR ({final} = :kf AND ({rate} < :kr OR "
        f"({rate} = :kr AND ({store} > :ks OR ({store} = :ks AND {product} > :kp))))))"
    )


class CampRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def interests_of(
        self, visitor_id: str, since: datetime, until: datetime, limit: int
    ) -> list[Any]:
        """The visitor's interests last met in ``[since, until]``, the ``limit`` most recent."""
        rows = await self.session.execute(
            text(
                """
                SELECT store_id, category_id, kind, last_at
                FROM commission.visitor_interests
                WHERE visitor_id = :v AND last_at BETWEEN :since AND :until
                ORDER BY last_at DESC
                LIMIT :limit
                """
            ),
            {"v": visitor_id, "since": since, "until": until, "limit": limit},
        )
        return list(rows)

    async def page(
        self,
        profile: Profile,
        weights: tuple[Decimal, Decimal],
        after: tuple[Decimal, Decimal, str, str] | None,
        *,
        keyword: str | None,
        category_id: str | None,
        limit: int,
    ) -> list[Any]:
        """Products of stores in the program in the camp's order (``final`` = the stored
        score × the visitor's boost, :mod:`services.commission.core.camp`), after the keyset
        ``after``; ``keyword`` is a LIKE pattern of the lower-case title.

        Without a profile this is one walk of the ranking index. With one it is two halves,
        each in the order of the whole and cut at ``limit``, merged: the products the profile
        boosts (those of its stores and categories, found by key, scored in SQL: the final
        score is a column expression, so the keyset holds it exactly), and the rest, whose
        final score is the stored one (the ranking index again, the boosted ones left out).
        The first ``limit`` of the merge are the first ``limit`` of the whole."""
        params: dict[str, Any] = {"limit": limit}
        filters = ""
        if keyword:
            params["like"] = keyword
            filters += " AND lower(p.title) LIKE :like"
        if category_id:
            params["category"] = category_id
            filters += " AND p.category_id = :category"
        if after is not None:
            params.update(kf=after[0], kr=after[1], ks=after[2], kp=after[3])
        if profile.empty:
            keyset = " AND " + _after("p.score", "p.rate", "p.store_id", "p.product_id")
            sql = f"""
                SELECT {_COLUMNS}, 0 AS k_category, 0 AS k_store, p.score AS final
                FROM commission.products p
                WHERE p.in_program{filters}{keyset if after else ""}
                ORDER BY p.score DESC, p.rate DESC, p.store_id, p.product_id
                LIMIT :limit
                """
            return list(await self.session.execute(text(sql), params))
        cats, stores = sorted(profile.categories), sorted(profile.stores)
        params.update(
            cat_ids=cats,
            cat_ks=[profile.categories[c] for c in cats],
            store_ids=stores,
            store_ks=[profile.stores[s] for s in stores],
            wc=weights[0],
            ws=weights[1],
        )
        boosted_keyset = " WHERE " + _after("b.final", "b.rate", "b.store_id", "b.product_id")
        plain_keyset = " AND " + _after("p.score", "p.rate", "p.store_id", "p.product_id")
        sql = f"""
            WITH boosted AS (
                SELECT * FROM (
                    SELECT {_COLUMNS}, coalesce(c.k, 0) AS k_category, coalesce(s.k, 0) AS k_store,
                        p.score * (1 + CAST(:wc AS numeric) * coalesce(c.k, 0)
                            + CAST(:ws AS numeric) * coalesce(s.k, 0)) AS final
                    FROM commission.products p
                    LEFT JOIN unnest(CAST(:cat_ids AS text[]), CAST(:cat_ks AS integer[]))
                        AS c(id, k) ON c.id = p.category_id
                    LEFT JOIN unnest(CAST(:store_ids AS text[]), CAST(:store_ks AS integer[]))
                        AS s(id, k) ON s.id = p.store_id
                    WHERE p.in_program
                      AND (p.category_id = ANY(CAST(:cat_ids AS text[]))
                           OR p.store_id = ANY(CAST(:store_ids AS text[]))){filters}
                ) b{boosted_keyset if after else ""}
                ORDER BY {_ORDER}
                LIMIT :limit
            ), plain AS (
                SELECT {_COLUMNS}, 0 AS k_category, 0 AS k_store, p.score AS final
                FROM commission.products p
                WHERE p.in_program
                  AND NOT (coalesce(p.category_id = ANY(CAST(:cat_ids AS text[])), false)
                           OR p.store_id = ANY(CAST(:store_ids AS text[]))){filters}
                  {plain_keyset if after else ""}
                ORDER BY p.score DESC, p.rate DESC, p.store_id, p.product_id
                LIMIT :limit
            )
            SELECT * FROM (SELECT * FROM boosted UNION ALL SELECT * FROM plain) AS merged
            ORDER BY {_ORDER}
            LIMIT :limit
            """
        return list(await self.session.execute(text(sql), params))

    async def categories(self, limit: int) -> list[Any]:
        """The categories of products in the program, the largest first."""
        rows = await self.session.execute(
            text(
                """
                SELECT category_id, count(*) AS products
                FROM commission.products
                WHERE in_program AND category_id IS NOT NULL
                GROUP BY category_id
                ORDER BY count(*) DESC, category_id
                LIMIT :limit
                """
            ),
            {"limit": limit},
        )
        return list(rows)
