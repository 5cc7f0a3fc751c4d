"""The affiliate product channel: the catalog of stores in the program, ranked.

The catalog rows come from the reports consumer (product upserts). What they are ranked by
(in the program, the rate an affiliate earns now, main product, hot, affiliate orders in 90
days, the score of :func:`~services.commission.reports_core.product_score`) is refreshed for
one store when its program changes (in that transaction) and for every store by the
commission service's product refresher (every ``product_refresh_interval_s``), since sales
history moves on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.core import ProgramState
from services.commission.reports_core import hot_products, product_score
from services.commission.repository import CommissionRepository
from shared.clock import Clock
from shared.db import lock_keys

log = logging.getLogger(__name__)

HISTORY = timedelta(days=90)
HOT_WINDOW = timedelta(days=30)


async def refresh_store(
    session: AsyncSession, store_id: str, state: ProgramState, now: datetime
) -> int:
    """Recompute the ranking fields of one store's products; returns how many rows."""
    products = list(
        await session.execute(
            text("SELECT product_id, category_id FROM commission.products WHERE store_id = :s"),
            {"s": store_id},
        )
    )
    if not products:
        return 0
    sold: dict[str, tuple[int, int]] = {
        r.product_id: (int(r.n90), int(r.n30))
        for r in await session.execute(
            text(
                """
                SELECT product_id, count(DISTINCT order_id) AS n90,
                    count(DISTINCT order_id) FILTER (WHERE placed_at >= :hot) AS n30
                FROM commission.order_lines
                WHERE store_id = :s AND chargeable AND status <> 'cancelled'
                    AND placed_at >= :since
                GROUP BY product_id
                """
            ),
            {"s": store_id, "since": now - HISTORY, "hot": now - HOT_WINDOW},
        )
    }
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
    await session.execute(
        text(
            """
            UPDATE commission.products p
            SET in_program = :joined, rate = u.rate, main = u.main, hot = u.hot,
                orders_90d = u.n, score = u.score
            FROM unnest(CAST(:ids AS text[]), CAST(:rate AS numeric[]), CAST(:main AS boolean[]),
                CAST(:hot AS boolean[]), CAST(:n AS integer[]), CAST(:score AS numeric[]))
                AS u(id, rate, main, hot, n, score)
            WHERE p.store_id = :s AND p.product_id = u.id
            """
        ),
        {"s": store_id, "joined": state.joined, **rows},
    )
    return len(products)


async def refresh_stores(session: AsyncSession, store_ids: list[str], now: datetime) -> int:
    """Refresh stores' products under their program locks (a program change refreshes its
    store in its own transaction: never overwritten by a refresh that read the program
    before it)."""
    await lock_keys(session, "program", store_ids)  # as CommissionRepository.lock
    programs = await CommissionRepository(session).programs(store_ids)
    return sum([await refresh_store(session, s, programs[s].state_at(now), now) for s in store_ids])


async def stores_with_products(session: AsyncSession) -> list[str]:
    rows = await session.execute(text("SELECT DISTINCT store_id FROM commission.products"))
    return sorted(rows.scalars())


@dataclass
class ProductRefresher:
    """Refreshes every store's ranking fields periodically (one store per transaction)."""

    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    interval_s: float

    def __post_init__(self) -> None:
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run_once(self) -> int:
        async with self.sessions() as session:
            stores = await stores_with_products(session)
        n = 0
        for store in stores:
            async with self.sessions() as session, session.begin():
                n += await refresh_stores(session, [store], self.clock.now())
        return n

    async def run(self) -> None:
        """Every ``interval_s``, from one interval after start (what is stored stays valid
        across a restart: no re-ranking of every store at start-up)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval_s)
            if self._stopping.is_set():
                return
            try:
                await self.run_once()
            except Exception:
                log.warning(
                    "product refresh failed; next try in %.0fs", self.interval_s, exc_info=True
                )
