"""All SQL of a visitor's erasure and export in the commission service's tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m


class PrivacyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def erase(self, visitor_id: str, pseudonym: str) -> dict[str, int]:
        """Delete what identifies the visitor (clicks, visits, interests, the click cap's
        counts) and put ``pseudonym`` for the id in the orders' explanations (their money and
        affiliate untouched). Returns the rows changed per table; flushed, never committed."""
        counts: dict[str, int] = {}
        for table in (m.report_clicks, m.visitor_days, m.visitor_interests):
            result = await self.session.execute(
                table.delete().where(table.c.visitor_id == visitor_id)
            )
            counts[table.name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
        caps = m.click_caps
        result = await self.session.execute(
            caps.delete().where(caps.c.subject == f"visitor:{visitor_id}")
        )
        counts["click_caps"] = int(result.rowcount or 0)  # type: ignore[attr-defined]
        # the explanation names the visitor twice (the decision's and its placement's
        # visitor_id); an id is an identifier (no quote, no backslash): its JSON string is
        # exactly '"<id>"', replaced whole
        result = await self.session.execute(
            text(
                "UPDATE commission.orders SET attribution = "
                "replace(attribution::text, :old, :new)::jsonb "
                "WHERE attribution->>'visitor_id' = :visitor"
            ),
            {"old": f'"{visitor_id}"', "new": f'"{pseudonym}"', "visitor": visitor_id},
        )
        counts["orders"] = int(result.rowcount or 0)  # type: ignore[attr-defined]
        return counts

    async def export(self, visitor_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row of the commission service's tables that names the visitor."""
        rc, vd, vi, caps, o = (
            m.report_clicks,
            m.visitor_days,
            m.visitor_interests,
            m.click_caps,
            m.orders,
        )
        queries = {
            "clicks": select(
                rc.c.click_id, rc.c.store_id, rc.c.affiliate_id, rc.c.occurred_at, rc.c.suspicious
            )
            .where(rc.c.visitor_id == visitor_id)
            .order_by(rc.c.occurred_at, rc.c.click_id),
            "visits": select(vd.c.store_id, vd.c.day, vd.c.clicked, vd.c.viewed)
            .where(vd.c.visitor_id == visitor_id)
            .order_by(vd.c.day, vd.c.store_id),
            "interests": select(vi.c.store_id, vi.c.category_id, vi.c.kind, vi.c.last_at)
            .where(vi.c.visitor_id == visitor_id)
            .order_by(vi.c.last_at),
            "click_counts": select(caps.c.day, caps.c.link_code, caps.c.stored, caps.c.overflow)
            .where(caps.c.subject == f"visitor:{visitor_id}")
            .order_by(caps.c.day),
            "orders": select(
                o.c.store_id,
                o.c.order_id,
                o.c.placed_at,
                o.c.status,
                o.c.currency,
                o.c["items"],
                o.c.affiliate_id,
                o.c.click_id,
            )
            .where(func.jsonb_extract_path_text(o.c.attribution, "visitor_id") == visitor_id)
            .order_by(o.c.placed_at, o.c.store_id, o.c.order_id),
        }
        return {
            name: [dict(r._mapping) for r in await self.session.execute(query)]
            for name, query in queries.items()
        }
