"""Affiliates read their own orders and earnings, and nothing else."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.config import Settings
from tests.integration.harness import admin
from tests.integration.test_scenarios_services import replayed

pytestmark = pytest.mark.integration


async def test_an_affiliate_sees_only_the_orders_it_won_and_their_estimated_earnings(
    settings: Settings,
) -> None:
    async with replayed(settings, "04-last-click-wins") as r:
        svc, replay, scenario = r.svc, r.replay, r.scenario
        keys = {}
        for name in ("aff-a", "aff-b"):
            resp = await svc.commission.post(
                "/v1/admin/affiliates",
                json={"affiliate_id": replay.id(name), "name": name},
                headers=admin(settings),
            )
            keys[name] = {"Authorization": f"Bearer {resp.json()['api_key']}"}
        winner = [e for e in scenario["expected"] if e["affiliate"] == "aff-b"]
        page = (
            await svc.commission.get(
                "/v1/affiliate/orders", params={"limit": 1}, headers=keys["aff-b"]
            )
        ).json()
        assert len(page["items"]) == 1
        rest = (
            await svc.commission.get(
                "/v1/affiliate/orders",
                params={"cursor": page["next_cursor"]},
                headers=keys["aff-b"],
            )
        ).json()
        orders = page["items"] + rest["items"]
        assert sorted(o["order_id"] for o in orders) == sorted(
            replay.id(e["order_id"]) for e in winner
        )
        assert all("visitor" not in str(o) for o in orders)
        assert sorted(o["estimated"] for o in orders) == sorted(e["estimated"] for e in winner)
        earnings = (
            await svc.commission.get("/v1/affiliate/earnings", headers=keys["aff-b"])
        ).json()
        (usd,) = earnings["totals"]
        assert Decimal(usd["estimated"]) == sum(
            (Decimal(e["estimated"]) for e in winner), Decimal(0)
        )
        assert usd["orders_open"] == len(winner)
        loser = (await svc.commission.get("/v1/affiliate/orders", headers=keys["aff-a"])).json()
        assert loser["items"] == []
        store_key = {"Authorization": f"Bearer {replay.stores['s1'].api_key}"}
        assert (
            await svc.commission.get("/v1/affiliate/orders", headers=store_key)
        ).status_code == 403
