"""The quarter demo's program history goes through the commission service's program API (its
rules, its operation record, its directory entries), at the times it happened."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from deploy.demo import quarter as q
from services.commission.app import create_app
from shared.config import Settings
from shared.events import StoreEntry, Topic, directory_adapter
from shared.kafka import read_topic

pytestmark = pytest.mark.integration
END = datetime(2026, 6, 30, tzinfo=UTC)
START = END - timedelta(days=q.DAYS)


async def test_the_program_history_is_applied_by_the_service_at_its_times(
    settings: Settings,
) -> None:
    run = uuid.uuid4().hex[:5]
    quarter = q.Quarter(START, END, {p.kind: f"{p.kind}-{run}" for p in q.PLANS}, [])
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    app = create_app(settings, consume=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://commission"
        ) as commission,
    ):
        keys = await q.create_stores(commission, admin, quarter)
        await q.replay_program_history(settings, quarter, keys)
        programs = {}
        records = {}
        for kind, store in quarter.store_ids.items():
            auth = {"Authorization": f"Bearer {keys[store]}"}
            programs[kind] = (
                await commission.get(f"/v1/stores/{store}/program", headers=auth)
            ).json()
            records[kind] = (
                await commission.get(f"/v1/stores/{store}/operations", headers=auth)
            ).json()

    def day(n: int) -> datetime:
        return START + timedelta(days=n)

    assert programs["seed"]["state"] == "joined"
    assert programs["seed"]["default_rate"] == "0.08"
    assert programs["gadgets"]["state"] == "joined"
    assert programs["gadgets"]["default_rate"] == "0.06"
    assert programs["outlet"]["state"] == "exited"
    assert datetime.fromisoformat(programs["outlet"]["exited_at"]) == day(60)
    changes = {
        kind: [(r["kind"], datetime.fromisoformat(r["at"]), r["rate"]) for r in rows]
        for kind, rows in records.items()
    }
    assert [(k, at) for k, at, _ in changes["seed"]] == [
        ("join", day(-5)),
        ("default_rate", day(45)),
    ]
    assert changes["seed"][1][2] == "0.08"
    assert [(k, at) for k, at, _ in changes["outlet"]] == [("join", day(-5)), ("exit", day(60))]
    assert {r["actor"] for rows in records.values() for r in rows} == {
        f"store:{store}" for store in quarter.store_ids.values()
    }

    # the service's outbox told the tracker and attribution (published by its relay)
    entries = [
        e
        for raw in await read_topic(settings.kafka, settings.topic(Topic.DIRECTORY))
        if isinstance(e := directory_adapter.validate_json(raw), StoreEntry)
    ]
    last = {e.store_id: e for e in entries}
    assert last[quarter.store_ids["outlet"]].in_program is False
    assert last[quarter.store_ids["outlet"]].updated_at == day(60)
    assert last[quarter.store_ids["seed"]].in_program is True
