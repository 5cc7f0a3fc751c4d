"""The affiliate product channel: the catalog of stores in the program, ranked.

The catalog rows come from the reports consumer (product upserts). What they are ranked by
(in the program, the rate an affiliate earns now, main product, hot, affiliate orders in 90
days, the score of :func:`~services.commission.core.reports.product_score`) is refreshed for
one store when its program changes (in that transaction) and for every store by the
product refresher (:mod:`services.commission.channel.refresher`), since sales history moves
on its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.channel.repository import ChannelRepository
from services.commission.core.program import ProgramState
from services.commission.core.reports import hot_products, product_score

HISTORY: Final = timedelta(days=90)
HOT_WINDOW: Final = timedelta(days=30)

#: sort → the columns of the keyset, each descending unless named in ASCENDING
SORTS: dict[str, tuple[str, ...]] = {
    "score": ("score", "rate", "store_id", "product_id"),
    "rate": ("rate", "score", "store_id", "product_id"),
    "orders": ("orders_90d", "score", "store_id", "product_id"),
}
ASCENDING: Final = {"store_id", "product_id"}


class ChannelService:
    async def refresh_store(
        self, session: AsyncSession, store_id: str, state: ProgramState, now: datetime
    ) -> int:
        """Recompute the ranking fields of one store's products; returns how many rows."""
        repo = ChannelRepository(session)
        products = await repo.products_of(store_id)
        if not products:
            return 0
        sold = await repo.affiliate_orders_by_product(store_id, now - HISTORY, now - HOT_WINDOW)
        hot = hot_products({p: n30 for p, (_, n30) in sold.items()})
        rows: dict[str, list[Any]] = {k: [] for k in ("ids", "rate", "main", "hot", "n", "score")}
        for r in products:
            rate = state.rate_for(r.product_id, r.category_id)
            main = r.product_id in state.main_products
            n90 = sold.get(r.product_id, (0, 0))[0]
            is_hot = r.product_id in hot
            rows["ids"].append(r.product_id)
            rows["rate"].append(rate)
            rows["main"].append(main)
            rows["hot"].append(is_hot)
            rows["n"].append(n90)
            rows["score"].append(product_score(is_hot, main, rate, n90))
        await repo.set_ranking(store_id, state.joined, rows)
        return len(products)

    async def stores_with_products(self, session: AsyncSession) -> list[str]:
        return await ChannelRepository(session).stores_with_products()

    async def page(
        self,
        session: AsyncSession,
        sort: str,
        after: list[Any] | None,
        *,
        like: str | None,
        category_id: str | None,
        limit: int,
    ) -> list[Any]:
        return await ChannelRepository(session).page(
            SORTS[sort], ASCENDING, after, keyword=like, category_id=category_id, limit=limit
        )
