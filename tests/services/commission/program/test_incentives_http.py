"""The incentives' settings over HTTP on the real stack: the new-buyer bonus, performance tiers
and caps as versioned program operations (who may set them, the rules' refusals, the program
view, the operation record and the audit log)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.clock import FixedClock
from shared.config import Settings
from tests.integration.harness import admin, register_store, running

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, tzinfo=UTC)

TIERS = {
    "currency": "USD",
    "tiers": [
        {"from": "1000.00", "extra_rate": "0.02"},
        {"from": "10000.00", "extra_rate": "0.04"},
    ],
}
CAPS = {"per_order": {"USD": "5.00"}, "per_affiliate_month": {"USD": "1000.00"}}


async def test_incentives_are_program_settings_versioned_recorded_and_audited(
    settings: Settings,
) -> None:
    clock = FixedClock(T0)
    u = uuid.uuid4().hex[:6]
    async with running(settings, clock) as svc:
        c = svc.commission
        store = await register_store(svc, settings, f"s-{u}")
        other = await register_store(svc, settings, f"t-{u}")
        base = f"/v1/stores/s-{u}"
        inc = f"{base}/incentives"

        # only while in the program, like a rate
        early = await c.put(f"{inc}/new-buyer", json={"extra_rate": "0.02"}, headers=store.auth)
        assert early.status_code == 409, early.text
        assert early.json()["error"]["code"] == "not_joined"
        assert (
            await c.post(f"{base}/program/join", json={}, headers=store.auth)
        ).status_code == 200
        clock.advance(timedelta(hours=1))

        # the store's own key or the admin; another store may not
        for path, body in (("new-buyer", {"extra_rate": "0.02"}), ("tiers", TIERS), ("caps", CAPS)):
            refused = await c.put(f"{inc}/{path}", json=body, headers=other.auth)
            assert refused.status_code == 403, refused.text

        # the rules' refusals, each with its code
        for path, body, code in (
            ("new-buyer", {"extra_rate": "0.95"}, "invalid_rate"),
            (
                "tiers",
                {"currency": "USD", "tiers": [{"from": "10.001", "extra_rate": "0.02"}]},
                "invalid_tiers",
            ),
            (
                "tiers",
                {
                    "currency": "USD",
                    "tiers": [
                        {"from": "500.00", "extra_rate": "0.02"},
                        {"from": "100.00", "extra_rate": "0.03"},
                    ],
                },
                "invalid_tiers",
            ),
            ("tiers", {"currency": "ZZZ", "tiers": []}, "invalid_tiers"),
            ("caps", {"per_order": {"USD": "0"}}, "invalid_caps"),
            ("caps", {"per_affiliate_month": {"JPY": "10.5"}}, "invalid_caps"),
        ):
            refused = await c.put(f"{inc}/{path}", json=body, headers=store.auth)
            assert refused.status_code == 422, (path, body, refused.text)
            assert refused.json()["error"]["code"] == code, refused.text
        malformed = await c.put(f"{inc}/new-buyer", json={"extra_rate": 0.02}, headers=store.auth)
        assert malformed.status_code == 422  # a float is never money nor a rate

        resp = await c.put(f"{inc}/new-buyer", json={"extra_rate": "0.02"}, headers=store.auth)
        assert resp.status_code == 200, resp.text
        assert resp.json()["incentives"]["new_buyer"] == {"extra_rate": "0.02"}
        resp = await c.put(f"{inc}/tiers", json=TIERS, headers=admin(settings))
        assert resp.status_code == 200, resp.text
        resp = await c.put(f"{inc}/caps", json=CAPS, headers=store.auth)
        assert resp.status_code == 200, resp.text

        program = (await c.get(f"{base}/program", headers=store.auth)).json()
        assert program["incentives"] == {
            "new_buyer": {"extra_rate": "0.02"},
            "tiers": {"USD": TIERS["tiers"]},
            "caps": CAPS,
        }

        # an empty table removes the currency's tiers, from now on
        clock.advance(timedelta(hours=1))
        resp = await c.put(
            f"{inc}/tiers", json={"currency": "USD", "tiers": []}, headers=store.auth
        )
        assert resp.json()["incentives"]["tiers"] == {}

        ops = (await c.get(f"{base}/operations", headers=store.auth)).json()
        incentive_ops = [o for o in ops if o["kind"] in ("new_buyer", "tiers", "caps")]
        assert [o["kind"] for o in incentive_ops] == ["new_buyer", "tiers", "caps", "tiers"]
        nb, tiers, caps, removed = incentive_ops
        assert nb["incentive"] == {"new_buyer": "0.02"}
        assert nb["before"]["incentives"]["new_buyer"] == {"extra_rate": "0"}
        assert nb["after"]["incentives"]["new_buyer"] == {"extra_rate": "0.02"}
        assert tiers["actor"].startswith("admin")
        assert tiers["after"]["incentives"]["tiers"] == {"USD": TIERS["tiers"]}
        assert caps["incentive"] == CAPS
        assert removed["before"]["incentives"]["tiers"] == {"USD": TIERS["tiers"]}
        assert removed["after"]["incentives"]["tiers"] == {}

        audit = await c.get("/v1/audit", params={"kind": "program.update"}, headers=admin(settings))
        assert audit.status_code == 200, audit.text
        mine = [e for e in audit.json()["items"] if e["subject"] == f"store:s-{u}/program"]
        changed = [e for e in mine if "incentives" in (e["after"] or {})]
        assert len(changed) >= 4
        assert changed[-1]["after"]["incentives"]["tiers"] == {}
