"""Kafka stopped while buyers click: they are still redirected, and no click is lost or doubled."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from deploy.stack import kafka, orchestrate
from services.attribution.models import clicks as clicks_table
from shared.config import Settings
from shared.db import make_engine
from shared.events import Topic
from tests.integration.harness import eventually, running
from tests.integration.topics import read_topic
from tests.services.tracker.test_endpoints import ready_link

pytestmark = pytest.mark.integration


@pytest.mark.allow_logged_errors  # the consumers complain, rightly, while the broker is down
async def test_clicks_during_a_broker_outage_are_spooled_and_sent_once_it_is_back(
    stack_settings: Settings, settings: Settings
) -> None:
    broker = orchestrate.Stack.from_settings(stack_settings).kafka
    s = settings.model_copy(update={"click_ack_timeout_ms": 300})
    u = uuid.uuid4().hex[:8]
    redirected: list[str] = []
    async with running(s) as svc:
        store, link = await ready_link(svc, s, u)
        spool = svc.apps["tracker"].state.tracker.spool

        async def click() -> float:
            start = time.monotonic()
            resp = await svc.tracker.get(f"/r/{link['code']}")
            assert resp.status_code == 302
            redirected.append(
                parse_qs(urlsplit(resp.headers["location"]).query)["alliance_click"][0]
            )
            return time.monotonic() - start

        await click()
        kafka.stop(broker)
        try:
            waits = [await click() for _ in range(5)]
            assert max(waits) < 2.0, f"buyers waited {waits}"
            assert spool.depth_bytes > 0
        finally:
            kafka.start(broker)

        async def drained() -> bool | None:
            return True if spool.depth_bytes == 0 else None

        await eventually(drained, timeout_s=60)

        engine = make_engine(s.database_url)

        async def stored() -> int | None:
            async with engine.connect() as conn:
                n = (
                    await conn.execute(
                        select(func.count()).where(clicks_table.c.store_id == store.store_id)
                    )
                ).scalar_one()
            return int(n) if n >= len(redirected) else None  # a poll: the count is asserted

        try:
            assert await eventually(stored, timeout_s=60) == 6
        finally:
            await engine.dispose()
    on_topic = {c["event_id"] for c in await read_topic(s.kafka, s.topic(Topic.CLICKS))}
    assert on_topic == set(redirected)
    assert len(redirected) == 6
