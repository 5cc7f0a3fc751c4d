"""All SQL of the attribution service. Methods flush; the batch owner commits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.attribution import models as m
from services.attribution.core import Click as CoreClick
from services.attribution.core import Windows
from shared.events import Click


@dataclass(frozen=True, slots=True)
class StoredOrder:
    order_id: str
    store_id: str
    visitor_id: str
    placed_at: datetime
    order_event: dict[str, Any]
    revision: int
    click_id: str | None
    open_until: datetime | None


def _core_click(row: Any) -> CoreClick:
    return CoreClick(
        click_id=row.click_id,
        store_id=row.store_id,
        visitor_id=row.visitor_id,
        affiliate_id=row.affiliate_id,
        occurred_at=row.occurred_at,
        suspicious=row.suspicious,
        link_code=row.link_code,
        product_id=row.product_id,
        sub_id=row.sub_id,
    )


class AttributionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_clicks(self, clicks: list[Click]) -> list[CoreClick]:
        """Insert clicks not yet known; returns only the new ones (idempotent by click id).
        One cached statement executed for many rows (no per-batch SQL compilation)."""
        if not clicks:
            return []
        rows = [
            {
                "click_id": c.click_id,
                "store_id": c.store_id,
                "visitor_id": c.visitor_id,
                "affiliate_id": c.affiliate_id,
                "occurred_at": c.occurred_at,
                "received_at": c.received_at,
                "suspicious": c.suspicious,
                "link_code": c.link_code,
                "product_id": c.product_id,
                "sub_id": c.sub_id,
            }
            for c in {c.click_id: c for c in clicks}.values()
        ]
        stmt = (
            insert(m.clicks)
            .on_conflict_do_nothing(index_elements=["click_id"])
            .returning(*m.clicks.c)
        )
        result = await self.session.execute(stmt, rows)
        return [_core_click(r) for r in result]

    async def insert_statuses(self, statuses: Iterable[tuple[str, str, datetime]]) -> None:
        """Record each order's first terminal status (later ones are ignored)."""
        values = [{"order_id": o, "status": s, "occurred_at": at} for o, s, at in statuses]
        if values:
            stmt = insert(m.order_status).on_conflict_do_nothing(index_elements=["order_id"])
            await self.session.execute(stmt, values)

    async def frozen(self, order_ids: Iterable[str]) -> set[str]:
        ids = list(set(order_ids))
        if not ids:
            return set()
        rows = await self.session.execute(
            select(m.order_status.c.order_id).where(m.order_status.c.order_id.in_(ids))
        )
        return set(rows.scalars())

    async def new_orders(self, values: list[dict[str, Any]]) -> set[str]:
        """Insert orders not yet known; returns the ids that were new."""
        if not values:
            return set()
        stmt = (
            insert(m.orders)
            .on_conflict_do_nothing(index_elements=["order_id"])
            .returning(m.orders.c.order_id)
        )
        result = await self.session.execute(stmt, list({v["order_id"]: v for v in values}.values()))
        return set(result.scalars())

    async def orders_by_id(self, order_ids: Iterable[str]) -> list[StoredOrder]:
        ids = list(set(order_ids))
        if not ids:
            return []
        rows = await self.session.execute(select(m.orders).where(m.orders.c.order_id.in_(ids)))
        return [self._order(r) for r in rows]

    async def orders_reached_by(
        self, clicks: list[CoreClick], window: timedelta
    ) -> list[StoredOrder]:
        """Orders whose window a click falls in: same store and visitor, placed within
        ``window`` after the click. One set-based join over arrays, whatever the batch."""
        if not clicks:
            return []
        rows = await self.session.execute(
            text(
                """
                SELECT DISTINCT ON (o.order_id) o.*
                FROM attribution.orders o
                JOIN unnest(CAST(:stores AS text[]), CAST(:visitors AS text[]),
                            CAST(:ats AS timestamptz[])) AS c(store_id, visitor_id, at)
                  ON o.store_id = c.store_id AND o.visitor_id = c.visitor_id
                 AND o.placed_at >= c.at AND o.placed_at <= c.at + CAST(:window AS interval)
                """
            ),
            {
                "stores": [c.store_id for c in clicks],
                "visitors": [c.visitor_id for c in clicks],
                "ats": [c.occurred_at for c in clicks],
                "window": window,
            },
        )
        return [self._order(r) for r in rows]

    async def clicks_of_visitors(
        self, visitors: set[str], since: datetime, until: datetime
    ) -> list[CoreClick]:
        """Every click of the visitors on any store's links between ``since`` and ``until``
        (what the decision needs and its explanation shows)."""
        if not visitors:
            return []
        c = m.clicks
        rows = await self.session.execute(
            select(c).where(
                c.c.visitor_id == func.any(bindparam("visitors", type_=ARRAY(String))),
                c.c.occurred_at >= since,
                c.c.occurred_at <= until,
            ),
            {"visitors": sorted(visitors)},
        )
        return [_core_click(r) for r in rows]

    async def set_decisions(
        self, decisions: list[tuple[str, int, CoreClick | None]], at: datetime
    ) -> None:
        """Record new decisions (order id, revision, winning click), many rows, one statement."""
        if not decisions:
            return
        o = m.orders
        stmt = (
            update(o)
            .where(o.c.order_id == bindparam("oid"))
            .values(
                revision=bindparam("rev"),
                click_id=bindparam("cid"),
                affiliate_id=bindparam("aid"),
                decided_at=bindparam("at"),
            )
        )
        await self.session.execute(
            stmt,
            [
                {
                    "oid": order_id,
                    "rev": revision,
                    "cid": click.click_id if click else None,
                    "aid": click.affiliate_id if click else None,
                    "at": at,
                }
                for order_id, revision, click in decisions
            ],
            execution_options={"synchronize_session": False},
        )

    async def windows(self, store_ids: Iterable[str], default: timedelta) -> dict[str, Windows]:
        """Each store's window history (stores without one get just the default)."""
        ids = sorted(set(store_ids))
        out = {s: Windows(default) for s in ids}
        if not ids:
            return out
        w = m.store_windows
        rows = await self.session.execute(
            select(w).where(w.c.store_id.in_(ids)).order_by(w.c.store_id, w.c.effective_at)
        )
        changes: dict[str, list[tuple[datetime, timedelta | None]]] = {}
        for r in rows:
            days = timedelta(days=r.days) if r.days is not None else None
            changes.setdefault(r.store_id, []).append((r.effective_at, days))
        for store_id, history in changes.items():
            out[store_id] = Windows(default, tuple(history))
        return out

    async def add_window(self, store_id: str, effective_at: datetime, days: int | None) -> None:
        stmt = insert(m.store_windows).on_conflict_do_nothing(
            index_elements=["store_id", "effective_at"]
        )
        await self.session.execute(
            stmt, {"store_id": store_id, "effective_at": effective_at, "days": days}
        )

    async def open_orders_of_store(
        self, store_id: str, placed_since: datetime, now: datetime
    ) -> list[StoredOrder]:
        """The store's orders placed at or after ``placed_since`` still open to re-decision."""
        o = m.orders
        rows = await self.session.execute(
            select(o).where(
                o.c.store_id == store_id,
                o.c.placed_at >= placed_since,
                o.c.open_until >= now,
            )
        )
        return [self._order(r) for r in rows]

    async def expire_clicks(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` clicks that happened before ``before``; returns how many."""
        result = await self.session.execute(
            text(
                """
                DELETE FROM attribution.clicks WHERE click_id IN (
                    SELECT click_id FROM attribution.clicks WHERE occurred_at < :before LIMIT :n
                )
                """
            ),
            {"before": before, "n": limit},
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def widest_window_days(self) -> int | None:
        """The longest window any store has set (None when none has)."""
        return await self.session.scalar(select(func.max(m.store_windows.c.days)))

    @staticmethod
    def _order(r: Any) -> StoredOrder:
        return StoredOrder(
            r.order_id,
            r.store_id,
            r.visitor_id,
            r.placed_at,
            r.order_event,
            r.revision,
            r.click_id,
            r.open_until,
        )
