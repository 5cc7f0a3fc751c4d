"""schemathesis against each service's OpenAPI with each principal's key, in process, on the
real Kafka and PostgreSQL; afterwards a normal order still flows end to end."""

from __future__ import annotations

import asyncio
import time
import uuid

from shared.config import Settings
from tests.fuzz.bridge import FUZZ_MARKS, LoopBridge, signing
from tests.fuzz.openapi import Caller, Findings, fuzz_schema
from tests.fuzz.pipeline import a_normal_order_flows, click_and_order
from tests.integration.harness import (
    Services,
    admin,
    eventually,
    new_affiliate,
    new_link,
    new_store,
    order_view,
    running,
)

pytestmark = FUZZ_MARKS


def uid() -> str:
    return uuid.uuid4().hex[:8]


async def fuzz(svc: Services, service: str, callers: list[Caller]) -> Findings:
    """schemathesis as each caller over the service's OpenAPI; the statuses it got are saved
    in ``tests/artifacts/fuzz-<service>.txt``."""
    bridge = LoopBridge(svc.apps[service], asyncio.get_running_loop())
    findings = Findings()
    started = time.monotonic()
    await asyncio.to_thread(fuzz_schema, bridge, callers, findings)
    findings.save(service, time.monotonic() - started)
    findings.failures += [f"[exception] {e}" for e in bridge.errors]
    return findings


async def test_the_commission_api_answers_every_principal_as_documented(
    settings: Settings,
) -> None:
    u = uid()
    # the fuzzer registers webhook endpoints at made-up hosts: nothing may be sent to them
    settings = settings.model_copy(update={"webhook_delivery": False})
    async with running(settings) as svc:
        store = await new_store(svc, settings, f"fz-{u}")
        affiliate = f"fz-aff-{u}"
        aff_key = await new_affiliate(svc, settings, affiliate)
        resp = await svc.commission.post(
            "/v1/admin/finance-users", json={"user_id": f"fz-fin-{u}"}, headers=admin(settings)
        )
        assert resp.status_code == 201, resp.text
        fin_key = resp.json()["api_key"]
        # one real order, so that the store's and the affiliate's paths lead somewhere
        order_id = await click_and_order(svc, store, aff_key)
        await eventually(
            lambda: order_view(svc, settings, (store.store_id, order_id), status="completed")
        )
        own = {"store_id": store.store_id, "order_id": order_id, "affiliate_id": affiliate}
        callers = [
            Caller("anonymous", positive=2, negative=1),  # 401 for all but health
            Caller("store", store.auth, own),
            Caller("affiliate", {"Authorization": f"Bearer {aff_key}"}, own),
            Caller("finance", {"Authorization": f"Bearer {fin_key}"}, own),
            # last: it may rotate the others' keys; past every authorisation, so it sweeps
            Caller("admin", admin(settings), own, positive=8, negative=4, hostile=True),
        ]
        findings = await fuzz(svc, "commission", callers)
        assert not findings.failures, findings.report()
        assert findings.server_errors == 0
        await a_normal_order_flows(svc, settings)


async def test_the_tracker_and_attribution_apis_answer_as_documented(settings: Settings) -> None:
    u = uid()
    async with running(settings) as svc:
        store = await new_store(svc, settings, f"fz-{u}")
        affiliate = await new_affiliate(svc, settings, f"fz-aff-{u}")
        link = await new_link(svc, affiliate, store.store_id, "p1")
        own = {"code": str(link["code"])}
        callers = [
            Caller("anonymous", own=own, hostile=True),
            Caller("affiliate", {"Authorization": f"Bearer {affiliate}"}, own, hostile=True),
            # signs every event and click: the body reaches the checks behind the signature
            Caller(
                "store", own=own, rewrite=signing(store), positive=30, negative=15, hostile=True
            ),
        ]
        findings = await fuzz(svc, "tracker", callers)
        findings.failures += (
            await fuzz(svc, "attribution", [Caller("anonymous", hostile=True)])
        ).failures
        assert not findings.failures, findings.report()
        assert findings.server_errors == 0
        await a_normal_order_flows(svc, settings)
