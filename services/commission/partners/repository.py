"""All SQL of partner approval: each affiliate's standing with a store and its history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m
from shared.partners import PartnerStatus


class PartnerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, store_id: str, affiliate_id: str) -> Any | None:
        p = m.partners
        query = select(p).where(p.c.store_id == store_id, p.c.affiliate_id == affiliate_id)
        return (await self.session.execute(query)).first()

    async def put(
        self,
        store_id: str,
        affiliate_id: str,
        status: PartnerStatus,
        at: datetime,
        *,
        message: str | None = None,
        reason: str | None = None,
        note: str | None = None,
        applied: bool = False,
    ) -> Any:
        """Write the partner's new status with the reason and note of the change (an
        application also its message and time); returns the row as written."""
        values: dict[str, Any] = {
            "status": status.value,
            "updated_at": at,
            "reason": reason,
            "note": note,
        }
        if applied:
            values |= {"message": message, "applied_at": at}
        stmt = (
            insert(m.partners)
            .values(store_id=store_id, affiliate_id=affiliate_id, created_at=at, **values)
            .on_conflict_do_update(index_elements=["store_id", "affiliate_id"], set_=values)
            .returning(*m.partners.c)
        )
        return (await self.session.execute(stmt)).one()

    async def add_event(self, **values: Any) -> None:
        """Append one change to the history (never updated)."""
        await self.session.execute(insert(m.partner_events).values(**values))

    async def page(
        self,
        *,
        store_id: str | None = None,
        affiliate_id: str | None = None,
        status: PartnerStatus | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Any]:
        """Partners of one store (ordered by affiliate) or one affiliate's standings (ordered
        by store), optionally of one status, after the keyset cursor ``after``; ``limit + 1``
        rows at most, so that the caller knows whether a next page exists."""
        p = m.partners
        query = select(p)
        order = p.c.affiliate_id if store_id is not None else p.c.store_id
        if store_id is not None:
            query = query.where(p.c.store_id == store_id)
        if affiliate_id is not None:
            query = query.where(p.c.affiliate_id == affiliate_id)
        if status is not None:
            query = query.where(p.c.status == status.value)
        if after is not None:
            query = query.where(order > after)
        return list(await self.session.execute(query.order_by(order).limit(limit + 1)))

    async def events(self, store_id: str, affiliate_id: str) -> list[Any]:
        """The partner's history, oldest first."""
        e = m.partner_events
        query = (
            select(e)
            .where(e.c.store_id == store_id, e.c.affiliate_id == affiliate_id)
            .order_by(e.c.id)
        )
        return list(await self.session.execute(query))
