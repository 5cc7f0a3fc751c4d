"""Issue 19, defect 7, through the running services: a stale directory entry never comes back.

A store's entry that attribution once dead-lettered (a bug since fixed) is replayed with
``alliance dlq replay`` after the store rotated its secret twice, reset its window and left
the program: the entry goes back onto the directory topic unchanged. Every reader holds a
newer version of the store, so the tracker still refuses the old secret and still treats the
store as exited, and attribution keeps the store's current window."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deploy.cli import _dlq
from services.attribution.repository import AttributionRepository
from shared.config import Settings
from shared.events import DeadLetter, StoreEntry, Topic, encode
from shared.kafka import make_producer
from tests.integration import harness
from tests.integration.topics import read_topic
from tests.services.attribution.test_windows import db

pytestmark = pytest.mark.integration


async def store_entries(settings: Settings, store_id: str) -> list[dict[str, Any]]:
    on_topic = await read_topic(settings.kafka, settings.topic(Topic.DIRECTORY))
    return [e for e in on_topic if e.get("type") == "store" and e["store_id"] == store_id]


async def replay_as_attribution_letter(settings: Settings, entry: dict[str, Any], u: str) -> None:
    """Dead-letter ``entry`` as attribution did once, then ``alliance dlq replay`` it, then
    publish a marker store's entry under the same Kafka key (so on the same partition, after
    the replay): a reader that knows the marker has read the replay."""
    key = f"store:{entry['store_id']}"
    letter = DeadLetter(
        source_topic=settings.topic(Topic.DIRECTORY),
        partition=0,
        offset=0,
        consumer="attribution",
        reason="RuntimeError: a bug since fixed",
        key=key,
        value=StoreEntry.model_validate(entry).model_dump_json(),
        failed_at=datetime.now(UTC),
        error="RuntimeError",
    )
    marker = StoreEntry(
        version=1,
        event_id=f"marker-{u}",
        store_id=f"mark-{u}",
        name="marker",
        landing_url_template="https://marker.example/{product_id}",
        secret_versions=[1],
        in_program=True,
        key_hash=f"marker-{u}",
        updated_at=datetime.now(UTC),
    )
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(Topic.DEAD_LETTERS), encode(letter))
        args = argparse.Namespace(action="replay", consumer="attribution", since=None)
        assert await asyncio.to_thread(_dlq, args, settings) == 0
        await producer.send_and_wait(
            settings.topic(Topic.DIRECTORY), encode(marker), key=key.encode()
        )
    finally:
        await producer.stop()


async def joined_long_ago(svc: harness.Services, store_id: str) -> None:
    """The store joined 60 days ago, written straight into the commission service's record
    (published with the store's next change)."""
    from services.commission.core.program import OpKind
    from services.commission.program.service import ProgramService
    from shared.clock import FixedClock

    sessions = svc.apps["commission"].state.sessions
    async with sessions() as session, session.begin():
        service = ProgramService(FixedClock(datetime.now(UTC) - timedelta(days=60)))
        await service.change_program(session, store_id, OpKind.JOIN, "test")


async def attribution_holds(settings: Settings, keys: list[str]) -> dict[str, int]:
    async with db(settings) as sessions, sessions() as session:
        return await AttributionRepository(session).directory_versions(keys)


class TestAStaleDirectoryEntryNeverComesBack:
    async def test_a_replayed_store_entry_restores_neither_secret_nor_membership_nor_window(
        self, settings: Settings
    ) -> None:
        u = harness.uid()
        store_id = f"s-{u}"
        auth = harness.admin(settings)
        async with harness.running(settings) as svc:
            first = await harness.register_store(svc, settings, store_id)
            await joined_long_ago(svc, store_id)  # may exit now (15 days after joining)
            aff = await harness.new_affiliate(svc, settings, f"aff-{u}")
            window = f"/v1/stores/{store_id}/attribution-window"
            resp = await svc.commission.put(window, json={"days": 7}, headers=auth)
            assert resp.status_code == 200, resp.text
            await harness.new_link(svc, aff, store_id)  # in the program: links are issued
            secret = first.secret
            for _ in range(2):
                rotated = await svc.commission.post(
                    f"/v1/admin/stores/{store_id}/rotate-secret", headers=auth
                )
                assert rotated.status_code == 200, rotated.text
                secret = rotated.json()["webhook_secret"]
            assert (await svc.commission.delete(window, headers=auth)).status_code == 200
            exited = await svc.commission.post(
                f"/v1/stores/{store_id}/program/exit", headers=first.auth
            )
            assert exited.status_code == 200, exited.text

            # the commission service numbered the store's entries 1, 2, … in commit order
            entries = await store_entries(settings, store_id)
            versions = [e["version"] for e in entries]
            assert versions == list(range(1, len(entries) + 1))
            latest = entries[-1]
            assert (latest["in_program"], latest["secret_versions"]) == (False, [3, 2])
            stale = next(e for e in entries if e["attribution_window_days"] == 7)
            assert (stale["in_program"], stale["secret_versions"]) == (True, [1])

            tracker = svc.apps["tracker"].state.tracker.directory

            async def current() -> bool | None:
                held = tracker.stores.get(store_id)
                at_attribution = await attribution_holds(settings, [f"store:{store_id}"])
                reached = held is not None and held.version == latest["version"]
                return True if reached and at_attribution else None

            await harness.eventually(current)
            await replay_as_attribution_letter(settings, stale, u)

            async def marker_read() -> bool | None:
                at_attribution = await attribution_holds(settings, [f"store:mark-{u}"])
                return True if f"mark-{u}" in tracker.stores and at_attribution else None

            await harness.eventually(marker_read)

            # the tracker: the replayed entry's secret 1 is still refused, the current one
            # verifies, and the store is still out of the program
            view = {
                "type": "page_view",
                "occurred_at": datetime.now(UTC).isoformat(),
                "visitor_id": f"v-{u}",
            }
            old = harness.Store(store_id, first.api_key, first.secret)
            new = harness.Store(store_id, first.api_key, secret)
            for n, (who, status) in enumerate(((old, 401), (new, 202))):
                event = view | {"event_id": f"view-{u}-{n}"}
                posted = await harness.signed_post(
                    svc.tracker, "/v1/events", who, {"events": [event]}
                )
                assert posted.status_code == status, posted.text
            link = await svc.tracker.post(
                "/v1/links", json={"store_id": store_id}, headers=harness.bearer(aff)
            )
            assert link.status_code == 409, link.text
            assert link.json()["error"]["code"] == "store_not_in_program"
            assert tracker.stores[store_id].version == latest["version"]

        # attribution: still the version it held, and the default window in force now
        assert await attribution_holds(settings, [f"store:{store_id}"]) == {
            f"store:{store_id}": latest["version"]
        }
        async with db(settings) as sessions, sessions() as session:
            windows = await AttributionRepository(session).windows([store_id], timedelta(days=15))
        assert windows[store_id].at(datetime.now(UTC)) == timedelta(days=15)

    async def test_the_highest_version_says_the_state_after_concurrent_changes(
        self, settings: Settings
    ) -> None:
        """Secret rotations and window changes of one store at once: the versions are 1, 2, …
        with no gap or repeat, and the highest says the store as it is once all committed."""
        u = harness.uid()
        store_id = f"s-{u}"
        auth = harness.admin(settings)
        async with harness.running(settings) as svc:
            await harness.register_store(svc, settings, store_id)
            await joined_long_ago(svc, store_id)
            rotations = [
                svc.commission.post(f"/v1/admin/stores/{store_id}/rotate-secret", headers=auth)
                for _ in range(5)
            ]
            windows = [
                svc.commission.put(
                    f"/v1/stores/{store_id}/attribution-window", json={"days": d}, headers=auth
                )
                for d in range(1, 6)
            ]
            answers = await asyncio.gather(*rotations, *windows)
            for resp in answers[:5]:
                assert resp.status_code == 200, resp.text
            # a window change that took its time before another's but its lock after it is
            # refused (``out_of_order``: a program's operations are in time order)
            changed = [r for r in answers[5:] if r.status_code == 200]
            for resp in answers[5:]:
                assert resp.status_code == 200 or resp.json()["error"]["code"] == "out_of_order"
            published = 1 + len(rotations) + len(changed)  # created, then each change
            program = await svc.commission.get(f"/v1/stores/{store_id}/program", headers=auth)
            days = program.json()["attribution_window_days"]

            async def all_published() -> list[dict[str, Any]] | None:
                entries = await store_entries(settings, store_id)
                return entries if len(entries) == published else None

            entries = await harness.eventually(all_published)
        assert sorted(e["version"] for e in entries) == list(range(1, published + 1))
        last = max(entries, key=lambda e: e["version"])
        assert (last["secret_versions"], last["attribution_window_days"]) == ([6, 5], days)
