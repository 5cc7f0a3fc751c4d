"""The per-affiliate-month cap's room under concurrent workers (docs/incentives.md, "Caps"):
the postings of one affiliate-month take the room one after the other (a row lock in key
order), so the month pays exactly its cap, never more, whatever the number of workers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.commission import models as m
from services.commission.core.commission import LineItem, OrderFacts, OrderStatus
from services.commission.core.incentives import Caps
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp
from services.commission.orders.repository import OrderRepository
from services.commission.orders.service import OrderService
from shared.config import Settings
from shared.db import make_engine, make_sessions

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def test_concurrent_postings_of_one_month_pay_exactly_its_cap(settings: Settings) -> None:
    program = ProgramHistory(
        (
            ProgramOp(OpKind.JOIN, T0, rate=Decimal("0.10")),
            ProgramOp(OpKind.CAPS, T0, incentive=Caps({}, {"USD": Decimal("50.00")})),
        )
    )
    service = OrderService()
    engine = make_engine(settings.database_url, pool_size=10)
    sessions = make_sessions(engine)

    async def post(n: int) -> Decimal | None:
        facts = {
            ("s1", f"o{n}"): OrderFacts(
                f"o{n}",
                "s1",
                "USD",
                T0 + timedelta(hours=1),
                (LineItem("p1", None, 1, Decimal("120.00"), Decimal(0)),),
                OrderStatus.COMPLETED,
                T0 + timedelta(days=1, minutes=n),
                affiliate_id="aff-a",
            )
        }
        async with sessions() as session, session.begin():
            await service.take_month_rooms(OrderRepository(session), facts, {"s1": program}, {})
            await asyncio.sleep(0.05)  # hold the room's lock a while: the others must wait
        return facts[("s1", f"o{n}")].month_allowance

    try:
        taken = await asyncio.gather(*(post(n) for n in range(8)))
        # 12.00 each, a room of 50.00: four take 12.00, one 2.00, three nothing
        assert sorted(t or Decimal(0) for t in taken) == sorted(
            [Decimal("12.00")] * 4 + [Decimal("2.00")] + [Decimal(0)] * 3
        )
        async with sessions() as session:
            used = (await session.execute(select(m.month_rooms.c.used_minor))).scalars().all()
        assert used == [5000]
    finally:
        await engine.dispose()
