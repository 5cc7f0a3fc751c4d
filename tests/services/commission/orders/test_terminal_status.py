"""Terminal statuses on the real database, written by one statement per batch (issue 20):
the first of an order's wins, inside one batch as across batches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m
from services.commission.core.commission import OrderKey, OrderStatus
from services.commission.orders.repository import OrderRepository
from shared.config import Settings
from shared.db import make_engine, make_sessions

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 2, 12, tzinfo=UTC)


async def placed_orders(session: AsyncSession, store: str, n: int) -> list[OrderKey]:
    repo = OrderRepository(session)
    keys = [(store, f"o{i}") for i in range(n)]
    await repo.ensure_orders(keys)
    await repo.upsert_placed_many(
        [
            {"store_id": s, "order_id": o, "currency": "USD", "placed_at": AT, "items": []}
            for s, o in keys
        ]
    )
    return keys


class TestTerminalStatuses:
    async def test_the_first_terminal_status_of_an_order_in_a_batch_wins(
        self, settings: Settings
    ) -> None:
        store = f"ts-{uuid.uuid4().hex[:8]}"
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            async with make_sessions(engine)() as session, session.begin():
                a, b = await placed_orders(session, store, 2)
                later = AT + timedelta(days=1)
                await OrderRepository(session).set_terminal_many(
                    [
                        (a, OrderStatus.COMPLETED, AT),
                        (b, OrderStatus.CANCELLED, AT),
                        (a, OrderStatus.CANCELLED, later),
                        (b, OrderStatus.COMPLETED, later),
                    ]
                )
                await OrderRepository(session).set_terminal_many(
                    [(a, OrderStatus.CANCELLED, later)]
                )
                o = m.orders
                rows = (
                    await session.execute(
                        select(o.c.order_id, o.c.status, o.c.status_at)
                        .where(o.c.store_id == store)
                        .order_by(o.c.order_id)
                    )
                ).all()
                await session.rollback()
        finally:
            await engine.dispose()
        assert [tuple(r) for r in rows] == [("o0", "completed", AT), ("o1", "cancelled", AT)]
