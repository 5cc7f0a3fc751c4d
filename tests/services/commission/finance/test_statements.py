"""Monthly statements: closed ones are frozen, later events post into the open period."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shared.config import Settings
from tests.integration.harness import admin, eventually
from tests.integration.test_scenarios_services import replayed
from tests.scenarios import ts

pytestmark = pytest.mark.integration


async def test_closing_freezes_a_month_and_a_late_claw_back_lands_in_the_open_one(
    settings: Settings,
) -> None:
    async with replayed(settings, "06-cancel-and-refunds") as r:
        svc, replay, scenario, clock = r.svc, r.replay, r.scenario, r.clock
        store = replay.id("s1")
        done = [e for e in scenario["expected"] if e["chargeable"] and e["status"] == "completed"]
        commission = sum((Decimal(i["commission"]) for e in done for i in e["items"]), Decimal(0))
        reversed_ = sum((Decimal(i["reversed"]) for e in done for i in e["items"]), Decimal(0))
        charged = sum(1 for e in done if any(Decimal(i["commission"]) for i in e["items"]))

        too_early = await svc.commission.post(
            f"/v1/statements/{store}/2026-03/close", headers=admin(settings)
        )
        assert too_early.status_code == 409
        assert too_early.json()["error"]["code"] == "period_not_over"

        clock.set(ts("2026-04-02T00:00:00Z"))
        closed = await svc.commission.post(
            f"/v1/statements/{store}/2026-03/close", headers=admin(settings)
        )
        assert closed.status_code == 200, closed.text
        march = closed.json()
        assert march["closed"] is True
        (usd,) = march["totals"]
        assert usd["orders_charged"] == charged
        assert Decimal(usd["commission"]) == commission
        assert Decimal(usd["reversed"]) == reversed_
        assert Decimal(usd["net"]) == commission - reversed_

        clock.set(ts("2026-04-10T12:00:00Z"))
        await replay.apply(
            {
                "kind": "order_refunded",
                "order_id": "o2",
                "refund_id": "r-april",
                "at": "2026-04-10T12:00:00Z",
                "items": [{"product_id": "p2", "amount": "9.00"}],
            }
        )

        async def april_has_it() -> dict[str, Any] | None:
            resp = await svc.commission.get(
                f"/v1/statements/{store}/2026-04", headers=admin(settings)
            )
            body: dict[str, Any] = resp.json()
            return body if body["totals"] else None

        april = await eventually(april_has_it)
        assert april["closed"] is False
        (late,) = april["totals"]
        assert (late["refunds"], late["reversed"], late["net"]) == (1, "0.45", "-0.45")
        again = await svc.commission.get(
            f"/v1/statements/{store}/2026-03", headers=replay.stores["s1"].auth
        )
        assert again.json() == march
        reclose = await svc.commission.post(
            f"/v1/statements/{store}/2026-03/close", headers=admin(settings)
        )
        assert reclose.json() == march
        assert (
            await svc.commission.get(f"/v1/statements/{store}/2026-13", headers=admin(settings))
        ).status_code == 422
