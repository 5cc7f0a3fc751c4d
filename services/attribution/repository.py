"""All SQL of the attribution service. Methods flush; the batch owner commits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, String, and_, column, select, tuple_, update, values
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.attribution import models as m
from services.attribution.core import Click as CoreClick
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
        """Insert clicks not yet known; returns only the new ones (idempotent by click id)."""
        if not clicks:
            return []
        stmt = insert(m.clicks).values(
            [
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
        )
        rows = await self.session.execute(
            stmt.on_conflict_do_nothing(index_elements=["click_id"]).returning(*m.clicks.c)
        )
        return [_core_click(r) for r in rows]

    async def insert_statuses(self, statuses: Iterable[tuple[str, str, datetime]]) -> None:
        """Record each order's first terminal status (later ones are ignored)."""
        values = [{"order_id": o, "status": s, "occurred_at": at} for o, s, at in statuses]
        if values:
            stmt = insert(m.order_status).values(values)
            await self.session.execute(stmt.on_conflict_do_nothing(index_elements=["order_id"]))

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
        stmt = insert(m.orders).values(list({v["order_id"]: v for v in values}.values()))
        rows = await self.session.execute(
            stmt.on_conflict_do_nothing(index_elements=["order_id"]).returning(m.orders.c.order_id)
        )
        return set(rows.scalars())

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
        ``window`` after the click. One set-based join, whatever the number of clicks."""
        if not clicks:
            return []
        reached = values(
            column("store_id", String),
            column("visitor_id", String),
            column("at", DateTime(timezone=True)),
            name="reached",
        ).data([(c.store_id, c.visitor_id, c.occurred_at) for c in clicks])
        o = m.orders
        rows = await self.session.execute(
            select(o)
            .distinct()
            .join(
                reached,
                and_(
                    o.c.store_id == reached.c.store_id,
                    o.c.visitor_id == reached.c.visitor_id,
                    o.c.placed_at >= reached.c.at,
                    o.c.placed_at <= reached.c.at + window,
                ),
            )
        )
        return [self._order(r) for r in rows]

    async def clicks_for(
        self, pairs: set[tuple[str, str]], since: datetime, until: datetime
    ) -> list[CoreClick]:
        """Every click of the (store, visitor) pairs between ``since`` and ``until``."""
        if not pairs:
            return []
        rows = await self.session.execute(
            select(m.clicks).where(
                tuple_(m.clicks.c.store_id, m.clicks.c.visitor_id).in_(sorted(pairs)),
                m.clicks.c.occurred_at >= since,
                m.clicks.c.occurred_at <= until,
            )
        )
        return [_core_click(r) for r in rows]

    async def clicks_of_visitors(
        self, visitors: set[str], since: datetime, until: datetime
    ) -> list[CoreClick]:
        """Every click of the visitors on any store's links between ``since`` and ``until``
        (what the explanation of a decision shows)."""
        if not visitors:
            return []
        rows = await self.session.execute(
            select(m.clicks).where(
                m.clicks.c.visitor_id.in_(sorted(visitors)),
                m.clicks.c.occurred_at >= since,
                m.clicks.c.occurred_at <= until,
            )
        )
        return [_core_click(r) for r in rows]

    async def set_decision(
        self, order_id: str, revision: int, click: CoreClick | None, decided_at: datetime
    ) -> None:
        await self.session.execute(
            update(m.orders)
            .where(m.orders.c.order_id == order_id)
            .values(
                revision=revision,
                click_id=click.click_id if click else None,
                affiliate_id=click.affiliate_id if click else None,
                decided_at=decided_at,
            )
        )

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
