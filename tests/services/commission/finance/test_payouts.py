"""Payouts: once per idempotency key, only what is payable, claw-backs carried forward."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from services.commission.orders.verify import verify
from shared.config import Settings
from shared.db import make_engine, make_sessions
from tests.integration.harness import admin, eventually
from tests.integration.test_scenarios_services import replayed
from tests.scenarios import ts

pytestmark = pytest.mark.integration


async def test_payout_is_idempotent_and_a_later_claw_back_carries_forward(
    settings: Settings,
) -> None:
    async with replayed(settings, "06-cancel-and-refunds") as r:
        svc, replay, scenario, clock = r.svc, r.replay, r.scenario, r.clock
        affiliate = replay.id("aff-a")
        payable = sum((Decimal(e["payable"]) for e in scenario["expected"]), Decimal(0))
        body = {"affiliate_id": affiliate, "up_to": "2026-04-01T00:00:00Z"}
        key = {"Idempotency-Key": f"pay-{uuid.uuid4().hex}"}
        first = await svc.commission.post(
            "/v1/payouts", json=body, headers={**admin(settings), **key}
        )
        again = await svc.commission.post(
            "/v1/payouts", json=body, headers={**admin(settings), **key}
        )
        assert first.status_code == 201, first.text
        assert again.status_code == 200
        assert again.json() == first.json()
        # one audit entry for the payout, none for its replay with the same key
        audit = await svc.commission.get(
            "/v1/audit", params={"kind": "payout.create"}, headers=admin(settings)
        )
        (entry,) = audit.json()["items"]
        assert entry["subject"] == f"payout:{first.json()['payout_id']}"
        assert entry["tenant"] == f"affiliate:{affiliate}"
        assert entry["before"] is None
        assert entry["after"]["amounts"] == first.json()["amounts"]
        assert Decimal(first.json()["amounts"]["USD"]) == payable
        got = await svc.commission.get(
            f"/v1/payouts/{first.json()['payout_id']}", headers=admin(settings)
        )
        assert got.json()["amounts"] == first.json()["amounts"]
        other_key = {"Idempotency-Key": f"pay-{uuid.uuid4().hex}"}
        nothing = await svc.commission.post(
            "/v1/payouts", json=body, headers={**admin(settings), **other_key}
        )
        assert nothing.status_code == 409
        assert nothing.json()["error"]["code"] == "nothing_to_pay"
        reused = await svc.commission.post(
            "/v1/payouts",
            json=body | {"up_to": "2026-05-01T00:00:00Z"},
            headers={**admin(settings), **key},
        )
        assert reused.status_code == 409
        no_key = await svc.commission.post("/v1/payouts", json=body, headers=admin(settings))
        assert no_key.status_code == 422

        # a refund after the payout claws the commission back: the balance goes negative
        clock.set(ts("2026-04-10T12:00:00Z"))
        await replay.apply(
            {
                "kind": "order_refunded",
                "order_id": "o5",
                "refund_id": "r-late",
                "at": "2026-04-10T12:00:00Z",
                "items": [{"product_id": "p1", "amount": "0.50"}],
            }
        )

        async def clawed_back() -> dict[str, object] | None:
            resp = await svc.commission.get(replay.order_path("o5"), headers=admin(settings))
            view: dict[str, object] = resp.json()
            return view if view["reversed"] == "0.03" else None

        await eventually(clawed_back)
        later = {"Idempotency-Key": f"pay-{uuid.uuid4().hex}"}
        refused = await svc.commission.post(
            "/v1/payouts",
            json=body | {"up_to": "2026-05-01T00:00:00Z"},
            headers={**admin(settings), **later},
        )
        assert refused.status_code == 409
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            assert (await verify(session)).ok
    finally:
        await engine.dispose()
