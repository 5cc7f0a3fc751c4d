"""The tracker against a real broker that goes away: storefront events are answered 503 with
Retry-After within the ack timeout instead of hanging, and nothing answered 202 is lost; a
tracker started while Kafka is down serves redirects from its snapshot into its spool, says
so in /readyz, and catches up when the broker is back."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from fastapi import FastAPI

from deploy.stack import kafka, orchestrate
from services.tracker.app import create_app as tracker_app
from shared.config import Settings
from shared.events import Topic
from tests.integration.harness import (
    BROWSER_UA,
    eventually,
    new_affiliate,
    new_link,
    new_store,
    running,
    signed_post,
)
from tests.integration.test_pipeline import placed
from tests.integration.topics import read_topic

pytestmark = pytest.mark.integration


@asynccontextmanager
async def tracker(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The tracker alone (its lifespan: producer, feed, spool, snapshot) and a client."""
    app = tracker_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"User-Agent": BROWSER_UA}
        ) as client:
            yield app, client


def _order_ids_on_topic(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["order_id"] for e in events if e.get("type") == "order_placed")


@pytest.mark.allow_logged_errors  # the tracker warns while the broker is down (aiokafka errs)
async def test_while_kafka_is_down_events_answer_503_within_the_ack_timeout_and_none_is_lost(
    stack_settings: Settings, settings: Settings, tmp_path: Path
) -> None:
    """The storefront posts while the broker is down and retries as told; the tracker dies
    meanwhile (its unacknowledged sends die with it) and a new one takes the retry: every
    event reaches the topic exactly once, and nothing was answered 202 before it did."""
    broker = orchestrate.Stack.from_settings(stack_settings).kafka
    s = settings.model_copy(
        update={
            "event_ack_timeout_ms": 1500,
            "spool_dir": tmp_path / "spool",
            "tracker_snapshot_dir": tmp_path / "tracker",
        }
    )
    u = uuid.uuid4().hex[:8]
    batch = {"events": [placed(f"o-{u}-{n}", f"v-{n}") for n in range(3)]}
    async with running(s) as svc:
        store = await new_store(svc, s, f"s-{u}", products=())
    try:
        async with tracker(s) as (_, client):
            kafka.stop(broker)
            waits, answers = [], []
            for _ in range(2):  # the storefront's post, then its retry while still down
                start = time.monotonic()
                answers.append(await signed_post(client, "/v1/events", store, batch))
                waits.append(time.monotonic() - start)
            ready = await client.get("/readyz")
            stopping = time.monotonic()
        stopped_s = time.monotonic() - stopping
    finally:
        kafka.start(broker)
    async with tracker(s) as (_, client):  # the tracker restarted: the storefront retries

        async def answered() -> httpx.Response | None:
            resp = await signed_post(client, "/v1/events", store, batch)
            return resp if resp.status_code == 202 else None

        final = await eventually(answered, timeout_s=60)
    for resp in answers:
        assert resp.status_code == 503, resp.text
        assert int(resp.headers["retry-after"]) > 0
        assert resp.json()["error"]["code"] == "unavailable"
    assert max(waits) < 1.5 + 1.0, f"the storefront waited {waits}"
    assert ready.status_code == 503
    assert "kafka" in ready.json()["failed"]
    assert stopped_s < 15, f"the tracker took {stopped_s:.0f}s to stop without Kafka"
    # never acknowledged, so never seen: the retry sends them (if the dead tracker's sends
    # had reached Kafka after all, they would be duplicates); once each on the topic
    statuses = [r["status"] for r in final.json()["results"]]
    assert set(statuses) <= {"accepted", "duplicate"}, statuses  # either, event by event
    on_topic = await read_topic(s.kafka, s.topic(Topic.ORDERS))
    assert _order_ids_on_topic(on_topic) == sorted(f"o-{u}-{n}" for n in range(3))


@pytest.mark.allow_logged_errors  # the tracker warns while Kafka is down (and aiokafka errs)
async def test_a_tracker_started_while_kafka_is_down_redirects_from_its_snapshot_at_once(
    stack_settings: Settings, settings: Settings, tmp_path: Path
) -> None:
    broker = orchestrate.Stack.from_settings(stack_settings).kafka
    s = settings.model_copy(
        update={
            "tracker_snapshot_dir": tmp_path / "tracker",
            "tracker_snapshot_interval_s": 0.1,
            "spool_dir": tmp_path / "spool",
            "click_ack_timeout_ms": 300,
        }
    )
    u = uuid.uuid4().hex[:8]
    async with running(s) as svc:
        store = await new_store(svc, s, f"s-{u}", products=("p1",))
        key = await new_affiliate(svc, s, f"aff-{u}")
        link = await new_link(svc, key, store.store_id, "p1")

        async def snapshot_has_the_store() -> bool | None:
            path = s.tracker_snapshot_path
            data = orjson.loads(path.read_bytes()) if path.exists() else {}
            stores = {e["store_id"] for e in data.get("stores", [])}
            return True if store.store_id in stores and data["products"] else None

        await eventually(snapshot_has_the_store)

    kafka.stop(broker)
    try:
        began = time.monotonic()
        async with tracker(s) as (app, client):
            started_s = time.monotonic() - began
            redirect = await client.get(f"/r/{link['code']}")
            ready_down = await client.get("/readyz")
            events_down = await signed_post(
                client, "/v1/events", store, {"events": [placed(f"o-{u}", "v")]}
            )
            new_link_down = await client.post(
                "/v1/links",
                json={"store_id": store.store_id},
                headers={"Authorization": f"Bearer {key}"},
            )
            spool = app.state.tracker.spool
            spooled = spool.depth_bytes

            kafka.start(broker)

            async def ready() -> bool | None:
                return True if (await client.get("/readyz")).status_code == 200 else None

            await eventually(ready, timeout_s=60)

            async def drained() -> bool | None:
                return True if spool.depth_bytes == 0 else None

            await eventually(drained, timeout_s=60)
            events_up = await signed_post(
                client, "/v1/events", store, {"events": [placed(f"o-{u}", "v")]}
            )
    finally:
        kafka.start(broker)
    assert started_s < 3.0, f"start-up took {started_s:.1f}s"
    assert redirect.status_code == 302
    landing = redirect.headers["location"]
    assert landing.startswith(f"https://s-{u}.shop.example/item/p1?"), landing
    click_id = parse_qs(urlsplit(landing).query)["alliance_click"][0]
    assert spooled > 0
    assert ready_down.status_code == 503
    assert "kafka" in ready_down.json()["failed"]
    assert events_down.status_code == 503
    assert events_down.headers["retry-after"]
    assert new_link_down.status_code == 201, new_link_down.text  # the key from the snapshot
    assert events_up.status_code == 202, events_up.text
    clicks = await read_topic(s.kafka, s.topic(Topic.CLICKS))
    assert [c["event_id"] for c in clicks].count(click_id) == 1
