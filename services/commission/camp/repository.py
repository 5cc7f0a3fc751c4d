"""All SQL of the alliance camp: a visitor's interests and the camp's keyset pages."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.camp import Profile

#: the columns of a camp row, as both halves of a personalised page select them
_FIELDS = "store_id, product_id, title, category_id, price_minor, currency, rate, hot, score"
_COLUMNS = ", ".join(f"p.{c}" for c in _FIELDS.split(", ")).replace("p.score", "p.score AS base")
#: a candidate's columns (the boosted half scores them without reading the table again)
_CANDIDATE = ", ".join(f"p.{c}" for c in _FIELDS.split(", "))
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

    async def plan_each_query(self) -> None:
        """Plan this transaction's statements for their own parameters: the camp's queries
        are prepared once and run with arrays and limits whose best plan depends on their
        values (a generic plan walked the wrong index: 30 ms instead of 0.1)."""
        await self.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))

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
        per_key: int,
    ) -> list[Any]:
        """Products of stores in the program in the camp's order, after the keyset ``after``;
        ``keyword`` is a LIKE pattern of the lower-case title.

        Without a profile this is one walk of the ranking index (of the category's, with one).
        With one, the products the profile boosts are the ``per_key`` best (by the stored
        score, then rate and ids) of each of its categories and of each of its stores among
        the products the query matches (walks of the category and store ranking indexes,
        which hold the title: the keyword is matched without reading the table); they are
        scored in SQL (the final score is
        a column expression, so the keyset holds it exactly) and merged with the rest, whose
        final score is the stored one (the ranking index again, the boosted ones left out).
        Each half is in the order of the whole and cut at ``limit``: the first ``limit`` of
        the merge are the first ``limit`` of the whole. The boosted set depends on the query
        and the profile only, never on the page: every page is cut from the same order."""
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
        plain_keyset = (
            " AND " + _after("p.score", "p.rate", "p.store_id", "p.product_id") if after else ""
        )
        if profile.empty:
            sql = f"""
                SELECT {_COLUMNS}, 0 AS k_category, 0 AS k_store, p.score AS final
                FROM commission.products p
                WHERE p.in_program{filters}{plain_keyset}
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
            per_key=per_key,
        )
        # per key, a walk of its ranking index that stops at per_key: index-only (the
        # indexes hold every column a candidate needs, the title for the keyword too)
        candidates = f"""
            SELECT t.* FROM cats c CROSS JOIN LATERAL (
                SELECT {_CANDIDATE} FROM commission.products p
                WHERE p.in_program AND p.category_id = c.id{filters}
                ORDER BY p.score DESC, p.rate DESC, p.store_id, p.product_id
                LIMIT :per_key
            ) t
            UNION
            SELECT t.* FROM stores s CROSS JOIN LATERAL (
                SELECT {_CANDIDATE} FROM commission.products p
                WHERE p.in_program AND p.store_id = s.id{filters}
                ORDER BY p.score DESC, p.rate DESC, p.product_id
                LIMIT :per_key
            ) t
            """
        boosted_keyset = (
            " WHERE " + _after("b.final", "b.rate", "b.store_id", "b.product_id") if after else ""
        )
        sql = f"""
            WITH cats AS (
                SELECT * FROM unnest(CAST(:cat_ids AS text[]), CAST(:cat_ks AS integer[]))
                    AS c(id, k)
            ), stores AS (
                SELECT * FROM unnest(CAST(:store_ids AS text[]), CAST(:store_ks AS integer[]))
                    AS s(id, k)
            ), candidates AS MATERIALIZED ({candidates}
            ), boosted AS (
                SELECT * FROM (
                    SELECT {_COLUMNS}, coalesce(c.k, 0) AS k_category,
                        coalesce(s.k, 0) AS k_store,
                        p.score * (1 + CAST(:wc AS numeric) * coalesce(c.k, 0)
                            + CAST(:ws AS numeric) * coalesce(s.k, 0)) AS final
                    FROM candidates p
                    LEFT JOIN cats c ON c.id = p.category_id
                    LEFT JOIN stores s ON s.id = p.store_id
                ) b{boosted_keyset}
                ORDER BY {_ORDER}
                LIMIT :limit
            ), plain AS (
                SELECT {_COLUMNS}, 0 AS k_category, 0 AS k_store, p.score AS final
                FROM commission.products p
                WHERE p.in_program{filters}
                  AND (p.store_id, p.product_id) NOT IN (
                      SELECT store_id, product_id FROM candidates){plain_keyset}
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
