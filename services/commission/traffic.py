"""The reports consumer: clicks, page views and catalog updates into the reports' read models
(traffic per day, visitors per day, the catalog). Idempotent: clicks by click id, page views
by event id, catalog updates by time (the newest wins)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission import models as m
from services.commission.models import consumer_offsets
from services.commission.reports_core import product_score
from services.commission.repository import CommissionRepository
from shared.config import Settings
from shared.db import lock_keys
from shared.events import Click, PageView, ProductUpserted, Topic, storefront_event_adapter
from shared.kafka import ConsumerPipeline, PoisonMessage, Received, service_pipeline
from shared.money import to_minor
from shared.offsets import OffsetRepository

CONSUMER_NAME = "reports"

Incoming = Click | PageView | ProductUpserted | None


@dataclass
class TrafficService:
    #: the attribution window of stores that set none (days)
    default_window_days: int

    async def handle_batch(self, session: AsyncSession, batch: list[Received[Incoming]]) -> None:
        events = [r.value for r in batch if r.value is not None]
        clicks = [e for e in events if isinstance(e, Click)]
        views = [e for e in events if isinstance(e, PageView)]
        products = [e for e in events if isinstance(e, ProductUpserted)]
        counts: Counter[tuple[str, date, str]] = Counter()
        visitors: dict[tuple[str, date, str], tuple[bool, bool]] = {}

        def saw(store: str, day: date, visitor: str, clicked: bool, viewed: bool) -> None:
            was = visitors.get((store, day, visitor), (False, False))
            visitors[(store, day, visitor)] = (was[0] or clicked, was[1] or viewed)

        # clicks first: a page view in the same batch as its click counts as an affiliate view
        for c in await self._fresh_clicks(session, clicks):
            day = c.occurred_at.date()
            counts[(c.store_id, day, "suspicious_clicks" if c.suspicious else "clicks")] += 1
            if not c.suspicious:
                saw(c.store_id, day, c.visitor_id, True, False)
        fresh_views = await self._fresh_views(session, views)
        affiliate = await self._affiliate_views(session, fresh_views)
        for v, from_affiliate in zip(fresh_views, affiliate, strict=True):
            day = v.occurred_at.date()
            counts[(v.store_id, day, "page_views")] += 1
            if from_affiliate:
                counts[(v.store_id, day, "affiliate_page_views")] += 1
            saw(v.store_id, day, v.visitor_id, False, True)
        await self._add_counts(session, counts)
        await self._add_visitors(session, visitors)
        await self._upsert_products(session, products)

    async def _fresh_clicks(self, session: AsyncSession, clicks: list[Click]) -> list[Click]:
        if not clicks:
            return []
        by_id = {c.click_id: c for c in clicks}
        t = m.report_clicks
        rows = await session.execute(
            insert(t)
            .values(
                [
                    {
                        "click_id": c.click_id,
                        "store_id": c.store_id,
                        "visitor_id": c.visitor_id,
                        "affiliate_id": c.affiliate_id,
                        "occurred_at": c.occurred_at,
                        "suspicious": c.suspicious,
                    }
                    for c in sorted(by_id.values(), key=lambda c: c.click_id)
                ]
            )
            .on_conflict_do_nothing(index_elements=["click_id"])
            .returning(t.c.click_id)
        )
        return [by_id[i] for i in rows.scalars()]

    async def _fresh_views(self, session: AsyncSession, views: list[PageView]) -> list[PageView]:
        if not views:
            return []
        by_id = {f"{v.store_id}/{v.event_id}": v for v in views}
        t = m.seen_page_views
        rows = await session.execute(
            insert(t)
            .values([{"event_id": k} for k in sorted(by_id)])
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(t.c.event_id)
        )
        return [by_id[k] for k in rows.scalars()]

    async def _affiliate_views(self, session: AsyncSession, views: list[PageView]) -> list[bool]:
        """Whether each view's visitor had an affiliate click (not suspicious) on the store in
        the store's attribution window before the view."""
        if not views:
            return []
        programs = await CommissionRepository(session).programs({v.store_id for v in views})
        rows = await session.execute(
            text(
                """
                SELECT v.n, (
                    SELECT max(c.occurred_at) FROM commission.report_clicks c
                    WHERE c.store_id = v.store_id AND c.visitor_id = v.visitor_id
                      AND c.occurred_at <= v.at AND NOT c.suspicious
                ) AS last_click
                FROM unnest(CAST(:stores AS text[]), CAST(:visitors AS text[]),
                    CAST(:ats AS timestamptz[])) WITH ORDINALITY AS v(store_id, visitor_id, at, n)
                """
            ),
            {
                "stores": [v.store_id for v in views],
                "visitors": [v.visitor_id for v in views],
                "ats": [v.occurred_at for v in views],
            },
        )
        last: dict[int, datetime | None] = {int(r.n): r.last_click for r in rows}
        out = []
        for n, v in enumerate(views, start=1):
            click = last.get(n)
            days = programs[v.store_id].state_at(v.occurred_at).window_days
            window = timedelta(days=days or self.default_window_days)
            out.append(click is not None and v.occurred_at < click + window)
        return out

    async def _add_counts(
        self, session: AsyncSession, counts: Counter[tuple[str, date, str]]
    ) -> None:
        per_day: dict[tuple[str, date], dict[str, int]] = {}
        for (store, day, kind), n in counts.items():
            per_day.setdefault((store, day), {})[kind] = n
        if not per_day:
            return
        names = ("clicks", "suspicious_clicks", "page_views", "affiliate_page_views")
        t = m.traffic_days
        stmt = insert(t).values(
            [
                {"store_id": s, "day": d, **{k: kinds.get(k, 0) for k in names}}
                for (s, d), kinds in sorted(per_day.items())
            ]
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["store_id", "day"],
                set_={k: t.c[k] + stmt.excluded[k] for k in names},
            )
        )

    async def _add_visitors(
        self, session: AsyncSession, visitors: dict[tuple[str, date, str], tuple[bool, bool]]
    ) -> None:
        if not visitors:
            return
        t = m.visitor_days
        stmt = insert(t).values(
            [
                {"store_id": s, "day": d, "visitor_id": v, "clicked": c, "viewed": w}
                for (s, d, v), (c, w) in sorted(visitors.items())
            ]
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["store_id", "day", "visitor_id"],
                set_={
                    "clicked": t.c.clicked | stmt.excluded.clicked,
                    "viewed": t.c.viewed | stmt.excluded.viewed,
                },
                where=(~t.c.clicked & stmt.excluded.clicked) | (~t.c.viewed & stmt.excluded.viewed),
            )
        )

    async def _upsert_products(
        self, session: AsyncSession, products: list[ProductUpserted]
    ) -> None:
        if not products:
            return
        newest: dict[tuple[str, str], ProductUpserted] = {}
        for p in products:
            key = (p.store_id, p.product_id)
            if key not in newest or newest[key].occurred_at <= p.occurred_at:
                newest[key] = p
        stores = {s for s, _ in newest}
        # the program's rates are read under its lock (shared): a program change, which
        # re-ranks the store's products, waits for this batch or this batch waits for it
        await lock_keys(session, "program", stores, shared=True)
        programs = await CommissionRepository(session).programs(stores)
        rows: list[dict[str, Any]] = []
        for (store, product), p in sorted(newest.items()):
            state = programs[store].current()
            rate = state.rate_for(product, p.category_id)
            main = product in state.main_products
            rows.append(
                {
                    "store_id": store,
                    "product_id": product,
                    "category_id": p.category_id,
                    "title": p.title,
                    "price_minor": to_minor(p.price, p.currency),
                    "currency": p.currency,
                    "updated_at": p.occurred_at,
                    "in_program": state.joined,
                    "rate": rate,
                    "main": main,
                    # no sales history yet for a new product: the refresher adds it
                    "score": product_score(False, main, rate, 0),
                }
            )
        t = m.products
        stmt = insert(t).values(rows)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["store_id", "product_id"],
                set_={
                    c: stmt.excluded[c]
                    for c in (
                        "category_id",
                        "title",
                        "price_minor",
                        "currency",
                        "updated_at",
                        "rate",
                        "main",
                        "in_program",
                    )
                },
                where=t.c.updated_at <= stmt.excluded.updated_at,
            )
        )


class Decoder:
    def __init__(self, settings: Settings) -> None:
        self.clicks = settings.topic(Topic.CLICKS)
        self.page_views = settings.topic(Topic.PAGE_VIEWS)
        self.catalog = settings.topic(Topic.CATALOG)

    def __call__(self, topic: str, raw: bytes) -> Incoming:
        if topic == self.clicks:
            return Click.model_validate_json(raw)
        if topic in (self.page_views, self.catalog):
            event = storefront_event_adapter.validate_json(raw)
            return event if isinstance(event, PageView | ProductUpserted) else None
        raise PoisonMessage(f"unexpected topic {topic}")


def make_pipeline(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    service: TrafficService,
) -> ConsumerPipeline[Incoming]:
    return service_pipeline(
        settings,
        name=CONSUMER_NAME,
        topics=[Topic.CLICKS, Topic.PAGE_VIEWS, Topic.CATALOG],
        sessions=sessions,
        offsets=OffsetRepository(consumer_offsets),
        decode=Decoder(settings),
        handle=service.handle_batch,
        producer=producer,
    )
