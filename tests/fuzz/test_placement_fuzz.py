"""One placement per order (issue 19, defect 9) and idempotency namespaces (defect 1), fuzzed
on the commission service's consumer and the real database: an order placed several times
with differing visitors, currencies and amounts, event ids shaped like every derived key (a
decision's among them), reaching commission in any order and any batching around the
decision: commission always holds, and pays on, exactly the placement attribution decided
from."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import hypothesis
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission import models as m
from services.commission.orders.service import Incoming, OrderService, placement_of
from services.commission.program.service import ProgramService
from shared.clock import SystemClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.events import Attribution, Topic
from shared.kafka import Received
from shared.money import to_minor
from tests.fuzz.bridge import FUZZ_MARKS
from tests.fuzz.openapi import fuzz_settings
from tests.fuzz.storefront import derived_ids
from tests.integration import events, harness

pytestmark = FUZZ_MARKS

T = TypeVar("T")

EXAMPLES = 60


class PlacementFuzz:
    """Runs in a worker thread; every database step on the test's loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sessions: async_sessionmaker[AsyncSession],
        store_id: str,
        affiliate_id: str,
    ) -> None:
        self.loop, self.sessions = loop, sessions
        self.store_id, self.affiliate_id = store_id, affiliate_id
        self.orders = OrderService(SystemClock(), programs=ProgramService())
        self.checked = 0

    def on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def apply(self, batches: list[list[Incoming]]) -> None:
        offset = 0
        for batch in batches:
            records: list[Received[Incoming]] = []
            for event in batch:
                topic = Topic.ATTRIBUTIONS if isinstance(event, Attribution) else Topic.ORDERS
                records.append(Received(topic, 0, offset, None, event, 0))
                offset += 1
            async with self.sessions() as session, session.begin():
                await self.orders.handle_batch(session, records)

    async def held(self, order_id: str) -> tuple[Any, list[Any]]:
        o, lines = m.orders, m.order_lines
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(o).where(o.c.store_id == self.store_id, o.c.order_id == order_id)
                )
            ).one()
            held_lines = (
                await session.execute(
                    select(lines.c.currency, lines.c.sales_minor).where(
                        lines.c.store_id == self.store_id, lines.c.order_id == order_id
                    )
                )
            ).all()
        return row, list(held_lines)

    def run(self) -> None:
        store = self.store_id
        order_ids = st.builds(lambda: f"o-{uuid.uuid4().hex[:12]}")
        placements = st.lists(
            st.tuples(
                st.sampled_from(["USD", "EUR", "KWD"]),
                st.decimals(min_value=1, max_value=1000, places=2).map(str),
                st.sampled_from(["v1", "v2", "v3"]),
            ),
            min_size=1,
            max_size=4,
        )

        @fuzz_settings(EXAMPLES)
        @hypothesis.given(
            order_id=order_ids,
            facts=placements,
            data=st.data(),
        )
        def example(order_id: str, facts: list[tuple[str, str, str]], data: st.DataObject) -> None:
            ids = data.draw(
                st.lists(
                    derived_ids(store, [order_id]).filter(lambda i: "/" not in i),
                    min_size=len(facts),
                    max_size=len(facts),
                    unique=True,
                )
            )
            placed = [
                events.placement(store, order_id, visitor, cur, price, event_id)
                for event_id, (cur, price, visitor) in zip(ids, facts, strict=True)
            ]
            decided = data.draw(st.sampled_from(placed))
            arrivals: list[Incoming] = data.draw(
                st.permutations(
                    [
                        *placed,
                        events.decision(decided, self.affiliate_id, f"click-{uuid.uuid4().hex}"),
                    ]
                )
            )
            cuts = sorted(
                data.draw(st.sets(st.integers(1, len(arrivals) - 1), max_size=len(arrivals)))
                if len(arrivals) > 1
                else set()
            )
            bounds = [0, *cuts, len(arrivals)]
            self.on_loop(self.apply([arrivals[a:b] for a, b in itertools.pairwise(bounds)]))
            row, lines = self.on_loop(self.held(order_id))
            want = placement_of(decided)
            assert (row.attribution_revision, row.affiliate_id) == (0, self.affiliate_id)
            assert (row.currency, row.placed_at) == (want.currency, want.placed_at)
            assert [Decimal(i["unit_price"]) for i in row.items] == [
                i.unit_price for i in want.items
            ]
            assert lines == [(want.currency, to_minor(i.base, want.currency)) for i in want.items]
            self.checked += 1

        example()


async def test_commission_always_computes_from_the_placement_attribution_decided_from(
    settings: Settings,
) -> None:
    u = harness.uid()
    async with harness.running(settings) as svc:
        store = await harness.new_store(svc, settings, f"pf-{u}", rate="0.10")
        await harness.new_affiliate(svc, settings, f"pf-aff-{u}")
        engine = make_engine(settings.database_url, pool_size=2)
        try:
            fuzz = PlacementFuzz(
                asyncio.get_running_loop(),
                make_sessions(engine),
                store.store_id,
                f"pf-aff-{u}",
            )
            await asyncio.to_thread(fuzz.run)
        finally:
            await engine.dispose()
    assert fuzz.checked >= EXAMPLES // 2
