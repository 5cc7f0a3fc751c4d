"""Reconciliation per day: the day's estimate is explained by what became of its orders."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from shared.config import Settings
from tests.integration.harness import admin
from tests.integration.test_scenarios_services import replayed

pytestmark = pytest.mark.integration


def gross(expected: dict[str, object]) -> Decimal:
    items = expected["items"]
    assert isinstance(items, list)
    return sum(
        (
            (Decimal(i["base"]) * Decimal(i["rate"])).quantize(Decimal("0.01"), ROUND_HALF_UP)
            for i in items
        ),
        Decimal(0),
    )


async def test_reconciliation_explains_each_day(settings: Settings) -> None:
    async with replayed(settings, "06-cancel-and-refunds") as r:
        svc, scenario = r.svc, r.scenario
        resp = await svc.commission.get(
            "/v1/reconciliation",
            params={"from": "2026-02-25T00:00:00Z", "to": "2026-03-31T00:00:00Z"},
            headers=admin(settings),
        )
    assert resp.status_code == 200, resp.text
    days = {d["day"]: d for d in resp.json()}
    chargeable = [e for e in scenario["expected"] if e["chargeable"]]
    placed_day = days["2026-03-01"]
    assert Decimal(placed_day["estimated_at_placement"]) == sum(
        (gross(e) for e in chargeable), Decimal(0)
    )
    assert all(Decimal(d["unexplained"]) == 0 for d in days.values())
    cancelled = sum((gross(e) for e in chargeable if e["status"] == "cancelled"), Decimal(0))
    assert Decimal(days["2026-03-02"]["cancelled"]) == cancelled > 0
    # reversals land on the day they are posted (processing time), whichever day that was
    reversed_total = sum((Decimal(d["reversed"]) for d in days.values()), Decimal(0))
    scenario_reversed = sum(
        (Decimal(i["reversed"]) for e in chargeable for i in e["items"]), Decimal(0)
    )
    assert reversed_total == scenario_reversed > 0
