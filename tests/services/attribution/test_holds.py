"""Held orders: an order waits for its visitor's clicks partition to be read up to where it
ended when the order was read (or for at most the hold time), so that a backlog is decided
once, not decided early and then corrected. On the real database."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.attribution.models import orders as orders_table
from services.attribution.models import outbox as outbox_table
from services.attribution.service import AttributionService
from shared.clock import FixedClock
from shared.config import Settings
from tests.services.attribution.test_stream import NOW, click, order
from tests.services.attribution.test_windows import db, received

pytestmark = pytest.mark.integration
D = timedelta(days=1)


async def _state(
    sessions: async_sessionmaker[AsyncSession], order_id: str
) -> tuple[tuple[int, str | None], list[dict[str, Any]]]:
    async with sessions() as session:
        row = (
            await session.execute(
                select(orders_table.c.revision, orders_table.c.click_id).where(
                    orders_table.c.order_id == order_id
                )
            )
        ).one()
        published = [
            orjson.loads(p)
            for p in (
                await session.execute(
                    select(outbox_table.c.payload).where(
                        outbox_table.c.key.endswith(f":{order_id}")  # <store>:<order>
                    )
                )
            ).scalars()
        ]
    return (row.revision, row.click_id), published


async def test_an_order_waits_for_the_clicks_read_before_it_and_is_decided_once(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    progress = {0: (5, 10)}  # clicks partition 0: read up to 5, ends at 10
    service = AttributionService(FixedClock(NOW), 15 * D, settings.topic_prefix)
    service.click_progress = lambda: progress
    o = order(u, f"v-{u}", NOW)
    first, second = click(u, f"v-{u}", NOW - 3 * D, "a"), click(u, f"v-{u}", NOW - D, "b")
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([o]))
        assert await _state(sessions, o.order_id) == ((-1, None), [])  # held, nothing said
        progress[0] = (7, 10)
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([first]))
        assert await _state(sessions, o.order_id) == ((-1, None), [])  # still held
        progress[0] = (10, 12)  # read up to where it ended when the order came
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([second]))
        (decision, published) = await _state(sessions, o.order_id)
    assert decision == (0, second.click_id)
    assert [(p["revision"], p["click_id"]) for p in published] == [(0, second.click_id)]


async def test_a_held_order_is_decided_after_the_longest_hold(settings: Settings) -> None:
    u = uuid.uuid4().hex[:8]
    clock = FixedClock(NOW)
    service = AttributionService(
        clock, 15 * D, settings.topic_prefix, max_hold=timedelta(seconds=60)
    )
    service.click_progress = lambda: {0: (0, 1000)}  # a partition that never catches up
    o = order(u, f"v-{u}", NOW)
    c = click(u, f"v-{u}", NOW - D)
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([c, o]))
        assert (await _state(sessions, o.order_id))[0] == (-1, None)
        clock.advance(timedelta(seconds=61))
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([click(u, f"v-{u}-other", NOW)]))
        (decision, published) = await _state(sessions, o.order_id)
    assert decision == (0, c.click_id)
    assert len(published) == 1


async def test_an_order_read_at_the_end_of_its_clicks_is_decided_at_once(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    service = AttributionService(FixedClock(NOW), 15 * D, settings.topic_prefix)
    service.click_progress = lambda: {0: (10, 10), 1: (0, 50)}  # partition 0 read to its end
    o = order(u, f"v-{u}", NOW)
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received([o]))  # read from partition 0
        assert (await _state(sessions, o.order_id))[0] == (0, None)


async def test_a_released_backlog_is_decided_in_bounded_chunks_within_the_batch(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Releasing a partition's held orders reads their clicks a chunk at a time (bounded
    memory), and still decides every one of them in the batch that releases them."""
    from services.attribution.repository import AttributionRepository

    u = uuid.uuid4().hex[:8]
    progress = {0: (5, 10)}
    service = AttributionService(FixedClock(NOW), 15 * D, settings.topic_prefix, chunk=3)
    service.click_progress = lambda: progress
    orders = [order(u, f"v-{u}-{n}", NOW, n) for n in range(7)]
    clicks = [click(u, f"v-{u}-{n}", NOW - D, f"a{n}") for n in range(7)]
    read: list[int] = []
    original = AttributionRepository.decision_clicks

    async def counted(self: AttributionRepository, wanted: list[Any], *args: Any) -> Any:
        read.append(len(wanted))
        return await original(self, wanted, *args)

    monkeypatch.setattr(AttributionRepository, "decision_clicks", counted)
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received(orders))
        for o in orders:
            assert (await _state(sessions, o.order_id))[0] == (-1, None)
        progress[0] = (10, 12)
        async with sessions() as session, session.begin():
            await service.handle_batch(session, received(clicks))
        states = [await _state(sessions, o.order_id) for o in orders]
    assert [decision for decision, _ in states] == [(0, c.click_id) for c in clicks]
    assert all(len(published) == 1 for _, published in states)
    assert read, "clicks were read"
    assert max(read) <= 3, read
