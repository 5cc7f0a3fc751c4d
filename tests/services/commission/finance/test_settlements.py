"""Settlements after a replayed history equal sums computed independently from its figures."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.config import Settings
from tests.integration.harness import admin
from tests.integration.test_scenarios_services import replayed

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", ["06-cancel-and-refunds", "04-last-click-wins", "07-exit"])
async def test_store_and_affiliate_settlements_add_up(settings: Settings, name: str) -> None:
    async with replayed(settings, name) as r:
        svc, replay, scenario = r.svc, r.replay, r.scenario
        expected = scenario["expected"]
        done = [e for e in expected if e["chargeable"] and e["status"] == "completed"]
        open_ = [e for e in expected if e["chargeable"] and e["status"] == "placed"]

        def total(rows: list[dict[str, object]], key: str) -> Decimal:
            return sum((Decimal(i[key]) for e in rows for i in e["items"]), Decimal(0))  # type: ignore[attr-defined]

        for store_id in {
            e["store_id"]
            for e in scenario["events"]
            if "store_id" in e and e["kind"] == "program.join"
        }:
            resp = await svc.commission.get(
                f"/v1/settlements/stores/{replay.id(store_id)}", headers=admin(settings)
            )
            assert resp.status_code == 200, resp.text
            (usd,) = resp.json()["totals"] or [None]
            assert usd is not None
            assert usd["orders_completed"] == len(done)
            assert Decimal(usd["affiliate_sales"]) == total(done, "base")
            assert Decimal(usd["commission_payable"]) == total(done, "commission")
            assert Decimal(usd["reversed"]) == total(done, "reversed")
            assert Decimal(usd["net"]) == sum((Decimal(e["payable"]) for e in done), Decimal(0))
            assert usd["orders_open"] == len(open_)
            assert Decimal(usd["estimated"]) == sum(
                (Decimal(e["estimated"]) for e in open_), Decimal(0)
            )
        for affiliate in {e["affiliate"] for e in expected if e["affiliate"]}:
            mine = [e for e in done if e["affiliate"] == affiliate]
            resp = await svc.commission.get(
                f"/v1/settlements/affiliates/{replay.id(affiliate)}", headers=admin(settings)
            )
            totals = resp.json()["totals"]
            net = Decimal(totals[0]["net"]) if totals else Decimal(0)
            assert net == sum((Decimal(e["payable"]) for e in mine), Decimal(0))
        other = await svc.commission.get(
            f"/v1/settlements/affiliates/{replay.id('aff-a')}",
            headers={"Authorization": "Bearer nobody"},
        )
        assert other.status_code == 401
