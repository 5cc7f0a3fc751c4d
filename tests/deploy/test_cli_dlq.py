"""`alliance dlq list` and `alliance dlq replay`: a record a bug made a consumer dead-letter is
re-fed after the fix, and applied once; consumers that had applied it are not affected."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from deploy.cli import _dlq
from shared.config import Settings
from shared.events import OrderCompleted, Topic, encode
from shared.kafka import Received
from tests.integration.harness import eventually, ledger_lines, order_view, running
from tests.integration.test_poison_kinds import dead_lettered
from tests.integration.topics import read_topic
from tests.services.attribution.test_stream import NOW, click, joined_store, order, produce

pytestmark = pytest.mark.integration


def dlq(settings: Settings, action: str, **options: Any) -> Awaitable[int]:
    """``alliance dlq <action>`` on this test's topics (the command runs its own loop)."""
    args = argparse.Namespace(action=action, consumer=None, since=None)
    for name, value in options.items():
        setattr(args, name, value)
    return asyncio.to_thread(_dlq, args, settings)


class TestReplay:
    async def test_a_letter_replayed_after_the_fix_is_applied_once(
        self, settings: Settings, capsys: pytest.CaptureFixture[str]
    ) -> None:
        u = uuid.uuid4().hex[:8]
        visitor = f"v-{u}"
        o = order(u, visitor, NOW)
        done = OrderCompleted(
            event_id=f"{o.order_id}-done", occurred_at=NOW, store_id=o.store_id, order_id=o.order_id
        )
        async with running(settings) as svc:
            await joined_store(svc, settings, u)
            pipeline = svc.apps["commission"].state.pipeline
            fixed: Callable[[AsyncSession, list[Received[Any]]], Awaitable[None]] = pipeline.handle

            async def buggy(session: AsyncSession, batch: list[Received[Any]]) -> None:
                if any(isinstance(r.value, OrderCompleted) for r in batch):
                    raise RuntimeError("a bug in the completion path")
                await fixed(session, batch)

            pipeline.handle = buggy
            c = click(u, visitor, NOW - timedelta(days=1))
            await produce(settings, [(Topic.CLICKS, visitor, encode(c))])
            await produce(settings, [(Topic.ORDERS, visitor, encode(o))])
            await eventually(
                lambda: order_view(svc, settings, (o.store_id, o.order_id), affiliate_id=f"aff-{u}")
            )
            await produce(settings, [(Topic.ORDERS, o.order_id, encode(done))])
            await dead_lettered(settings, done.event_id, {"commission"})
            assert (await order_view(svc, settings, (o.store_id, o.order_id)) or {})[
                "status"
            ] == "placed"

            pipeline.handle = fixed  # the fix is deployed
            assert await dlq(settings, "list", consumer="commission") == 0
            listed = capsys.readouterr().out
            assert "RuntimeError: a bug in the completion path" in listed
            assert await dlq(settings, "replay", consumer="commission") == 0
            assert "replayed 1 dead letters of commission" in capsys.readouterr().out
            got = await eventually(
                lambda: order_view(svc, settings, (o.store_id, o.order_id), status="completed")
            )
            assert got["payable"] == "6.00"
            # a second replay changes nothing: the completion is applied once
            assert await dlq(settings, "replay", consumer="commission") == 0
            await asyncio.sleep(1)
            ledger = [
                x
                for x in await ledger_lines(svc.commission, settings)
                if x["order_id"] == o.order_id
            ]
        assert sorted(x["amount"] for x in ledger) == ["-6.00", "6.00"]
        on_topic = await read_topic(settings.kafka, settings.topic(Topic.ORDERS))
        assert [e["event_id"] for e in on_topic].count(done.event_id) == 3  # sent, replayed twice

    async def test_a_replay_without_a_consumer_is_refused_with_exit_2(
        self, settings: Settings
    ) -> None:
        assert await dlq(settings, "replay") == 2
