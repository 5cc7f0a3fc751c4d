"""Issue 19, defect 5, through the real services: a rotated store secret is revoked. After
``rotate-secret`` the tracker accepts the previous webhook secret for the grace
(``ALLIANCE_SECRET_ROTATION_GRACE_S``) only, and not at all after
``rotate-secret?revoke_previous=true``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.config import Settings
from tests.integration import harness
from tests.integration.harness import Store

pytestmark = pytest.mark.integration


async def rotate(
    svc: harness.Services, settings: Settings, store: Store, *, revoke_previous: bool = False
) -> tuple[Store, datetime]:
    """The store with its new secret, and the end of the previous secret's grace."""
    query = "?revoke_previous=true" if revoke_previous else ""
    resp = await svc.commission.post(
        f"/v1/admin/stores/{store.store_id}/rotate-secret{query}", headers=harness.admin(settings)
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    until = datetime.fromisoformat(body["previous_secret_until"])
    return Store(store.store_id, store.api_key, body["webhook_secret"]), until


async def post_view(svc: harness.Services, store: Store) -> httpx.Response:
    event = {
        "event_id": f"view-{harness.uid()}",
        "type": "page_view",
        "occurred_at": datetime.now(UTC).isoformat(),
        "visitor_id": "v-1",
    }
    return await harness.signed_post(svc.tracker, "/v1/events", store, {"events": [event]})


async def until_the_tracker_knows(svc: harness.Services, store: Store) -> None:
    """Wait for the rotation's directory entry to reach the tracker (the new secret verifies)."""

    async def accepted() -> bool | None:
        resp = await post_view(svc, store)
        if resp.status_code == 401:
            return None
        assert resp.status_code == 202, resp.text
        return True

    await harness.eventually(accepted)


async def rotated_store(svc: harness.Services, settings: Settings) -> tuple[Store, Store, datetime]:
    """A new store rotated once, the tracker knowing it: (before, after, end of the grace)."""
    old = await harness.new_store(svc, settings, f"s-{harness.uid()}", products=())
    new, until = await rotate(svc, settings, old)
    await until_the_tracker_knows(svc, new)
    return old, new, until


class TestStoreSecretRotation:
    async def test_the_previous_secret_verifies_in_the_grace_and_revoke_previous_refuses_it(
        self, settings: Settings
    ) -> None:
        async with harness.running(settings) as svc:
            first = await harness.new_store(svc, settings, f"s-{harness.uid()}", products=())
            before = datetime.now(UTC)
            second, until = await rotate(svc, settings, first)
            grace = timedelta(seconds=settings.secret_rotation_grace_s)
            assert before + grace <= until <= datetime.now(UTC) + grace
            await until_the_tracker_knows(svc, second)
            assert (await post_view(svc, first)).status_code == 202  # in its grace

            third, revoked_at = await rotate(svc, settings, second, revoke_previous=True)
            assert revoked_at <= datetime.now(UTC)
            await until_the_tracker_knows(svc, third)
            refused = await post_view(svc, second)  # the previous one: at once
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] == "unauthorized"
            assert (await post_view(svc, first)).status_code == 401
            assert (await post_view(svc, third)).status_code == 202

    async def test_the_previous_secret_is_refused_once_the_grace_is_over(
        self, settings: Settings
    ) -> None:
        settings = settings.model_copy(update={"secret_rotation_grace_s": 4})
        async with harness.running(settings) as svc:
            old, new, until = await rotated_store(svc, settings)
            if datetime.now(UTC) < until - timedelta(seconds=1):  # unless the tracker was slow
                assert (await post_view(svc, old)).status_code == 202
            wait_s = (until - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(wait_s, 0) + 0.1)
            refused = await post_view(svc, old)  # no new directory entry: the grace ran out
            assert refused.status_code == 401, refused.text
            assert (await post_view(svc, new)).status_code == 202

    async def test_with_no_grace_the_previous_secret_is_refused_at_once(
        self, settings: Settings
    ) -> None:
        settings = settings.model_copy(update={"secret_rotation_grace_s": 0})
        async with harness.running(settings) as svc:
            old, new, until = await rotated_store(svc, settings)
            assert until <= datetime.now(UTC)
            assert (await post_view(svc, old)).status_code == 401
            assert (await post_view(svc, new)).status_code == 202
