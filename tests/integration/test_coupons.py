"""Coupon codes through HTTP: the program's code and policy API (refusals, tenants, the
operation record), and each policy end to end (a link's click, orders with a code through the
tracker, the commission to the cent)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from services.attribution.models import clicks as clicks_table
from services.attribution.models import coupons as coupons_table
from services.attribution.models import store_coupon_policies as policies_table
from shared.config import Settings
from shared.db import make_engine
from tests.integration.harness import (
    admin,
    bearer,
    buyer_clicks,
    eventually,
    ledger_lines,
    new_affiliate,
    new_finance_user,
    new_store,
    order_view,
    register_store,
    running,
    signed_post,
    uid,
)

pytestmark = pytest.mark.integration


def error_code(resp: Any) -> str:
    code: str = resp.json()["error"]["code"]
    return code


async def test_the_code_api_checks_its_input_its_callers_and_keeps_a_record(
    settings: Settings,
) -> None:
    u = uid()
    async with running(settings) as svc:
        store = await new_store(svc, settings, f"s-{u}", products=())
        other = await new_store(svc, settings, f"t-{u}", products=())
        outside = await register_store(svc, settings, f"x-{u}")  # never joined
        await new_affiliate(svc, settings, f"anna-{u}")
        bob_key = await new_affiliate(svc, settings, f"bob-{u}")
        finance = bearer(await new_finance_user(svc, settings, f"fin-{u}"))
        base = f"/v1/stores/{store.store_id}"
        anna = {"affiliate_id": f"anna-{u}"}
        c = svc.commission

        got = (await c.get(f"{base}/program", headers=store.auth)).json()
        assert got["coupon_policy"] == "off"  # the default: clicks only

        refusals: list[tuple[str, str, dict[str, Any], int, str]] = [
            ("a%20b", "s", anna, 422, "invalid_coupon_code"),
            ("x" * 65, "s", anna, 422, "invalid_coupon_code"),
            ("anna!", "s", anna, 422, "invalid_coupon_code"),
            ("ANNA10", "s", {"affiliate_id": f"nobody-{u}"}, 404, "not_found"),
            (
                "ANNA10",
                "s",
                anna | {"valid_from": "2027-01-02T00:00:00Z", "valid_to": "2027-01-01T00:00:00Z"},
                422,
                "invalid_validity",
            ),
            ("ANNA10", "s", anna | {"valid_from": "2027-01-01T00:00:00"}, 422, "invalid_request"),
            ("ANNA10", "s", anna | {"extra": 1}, 422, "invalid_request"),
            ("ANNA10", "other", anna, 403, "forbidden"),
            ("ANNA10", "finance", anna, 403, "forbidden"),
            ("ANNA10", "affiliate", anna, 403, "forbidden"),
        ]
        callers = {
            "s": store.auth,
            "other": other.auth,
            "finance": finance,
            "affiliate": bearer(bob_key),
        }
        for code, who, body, status, machine in refusals:
            resp = await c.put(f"{base}/coupons/{code}", json=body, headers=callers[who])
            assert (resp.status_code, error_code(resp)) == (status, machine), (code, resp.text)
        resp = await c.put(
            f"/v1/stores/{outside.store_id}/coupons/ANNA10", json=anna, headers=outside.auth
        )
        assert (resp.status_code, error_code(resp)) == (409, "not_joined")
        resp = await c.put(
            f"/v1/stores/nope-{u}/coupons/ANNA10", json=anna, headers=admin(settings)
        )
        assert resp.status_code == 404

        created = await c.put(
            f"{base}/coupons/anna10",
            json=anna | {"valid_from": "2027-01-01T00:00:00+02:00"},
            headers=store.auth,
        )
        assert created.status_code == 201, created.text
        assert created.json() == {
            "code": "ANNA10",  # stored upper case: codes match in any case
            "affiliate_id": f"anna-{u}",
            "valid_from": "2026-12-31T22:00:00Z",
            "valid_to": None,
        }
        same = await c.put(
            f"{base}/coupons/Anna10",
            json=anna | {"valid_from": "2026-12-31T22:00:00Z"},
            headers=store.auth,
        )
        assert same.status_code == 200, same.text
        taken = await c.put(
            f"{base}/coupons/ANNA10", json={"affiliate_id": f"bob-{u}"}, headers=store.auth
        )
        assert (taken.status_code, error_code(taken)) == (409, "coupon_taken")
        # the owner may change its validity; another store may use the same code
        changed = await c.put(f"{base}/coupons/ANNA10", json=anna, headers=admin(settings))
        assert (changed.status_code, changed.json()["valid_from"]) == (200, None)
        theirs = await c.put(
            f"/v1/stores/{other.store_id}/coupons/ANNA10",
            json={"affiliate_id": f"bob-{u}"},
            headers=other.auth,
        )
        assert theirs.status_code == 201, theirs.text

        listed = [
            {"code": "ANNA10", "affiliate_id": f"anna-{u}", "valid_from": None, "valid_to": None}
        ]
        for reader in (store.auth, finance, admin(settings)):
            resp = await c.get(f"{base}/coupons", headers=reader)
            assert (resp.status_code, resp.json()) == (200, listed)
        for stranger in (other.auth, bearer(bob_key)):
            assert (await c.get(f"{base}/coupons", headers=stranger)).status_code == 403

        gone = await c.delete(f"{base}/coupons/bob5", headers=store.auth)
        assert (gone.status_code, error_code(gone)) == (404, "not_found")
        assert (await c.delete(f"{base}/coupons/anna10", headers=other.auth)).status_code == 403
        deleted = await c.delete(f"{base}/coupons/anna10", headers=store.auth)
        assert (deleted.status_code, deleted.json()["code"]) == (200, "ANNA10")
        assert (await c.get(f"{base}/coupons", headers=store.auth)).json() == []
        assert (
            len((await c.get(f"/v1/stores/{other.store_id}/coupons", headers=other.auth)).json())
            == 1
        )

        bad = await c.put(f"{base}/coupon-policy", json={"policy": "always"}, headers=store.auth)
        assert bad.status_code == 422
        for stranger in (finance, other.auth):
            resp = await c.put(
                f"{base}/coupon-policy", json={"policy": "coupon_wins"}, headers=stranger
            )
            assert resp.status_code == 403
        resp = await c.put(
            f"/v1/stores/{outside.store_id}/coupon-policy",
            json={"policy": "coupon_wins"},
            headers=outside.auth,
        )
        assert (resp.status_code, error_code(resp)) == (409, "not_joined")
        set_ = await c.put(
            f"{base}/coupon-policy", json={"policy": "click_wins"}, headers=store.auth
        )
        assert (set_.status_code, set_.json()["coupon_policy"]) == (200, "click_wins")
        got = (await c.get(f"{base}/program", headers=finance)).json()
        assert got["coupon_policy"] == "click_wins"

        ops = (await c.get(f"{base}/operations", headers=store.auth)).json()
        record = [
            (o["kind"], o["key"], o["affiliate_id"], o["valid_from"], o["policy"], o["actor"])
            for o in ops[1:]
        ]
        actor = f"store:{store.store_id}"
        assert record == [
            ("coupon", "ANNA10", f"anna-{u}", "2026-12-31T22:00:00Z", None, actor),
            ("coupon", "ANNA10", f"anna-{u}", None, None, "admin:admin"),
            ("coupon_deleted", "ANNA10", None, None, None, actor),
            ("coupon_policy", None, None, None, "click_wins", actor),
        ]
        assert ops[1]["before"] == {}
        assert ops[1]["after"]["code"] == "ANNA10"
        assert ops[3]["before"]["affiliate_id"] == f"anna-{u}"
        assert ops[3]["after"] == {}
        assert (ops[4]["before"]["coupon_policy"], ops[4]["after"]["coupon_policy"]) == (
            "off",
            "click_wins",
        )


# -- each policy end to end ---------------------------------------------------------------------


def placed(
    order_id: str, visitor: str, code: str | None, qty: int, price: str, ship: str
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"{order_id}-placed",
        "type": "order_placed",
        "occurred_at": datetime.now(UTC).isoformat(),
        "order_id": order_id,
        "visitor_id": visitor,
        "currency": "USD",
        "items": [
            {
                "product_id": "p1",
                "category_id": "c1",
                "quantity": qty,
                "unit_price": price,
                "shipping_fee": ship,
            }
        ],
    }
    if code is not None:
        event["coupon_code"] = code
    return event


def completed(order_id: str) -> dict[str, Any]:
    return {
        "event_id": f"{order_id}-done",
        "type": "order_completed",
        "occurred_at": datetime.now(UTC).isoformat(),
        "order_id": order_id,
    }


async def _in_attribution(
    settings: Settings, store_id: str, policy: str | None, visitor: str
) -> None:
    """Wait until attribution holds the store's code (and policy) and the buyer's click."""
    engine = make_engine(settings.database_url, pool_size=1)

    async def arrived() -> bool | None:
        async with engine.connect() as conn:
            code = (
                await conn.execute(
                    select(coupons_table.c.code).where(coupons_table.c.store_id == store_id)
                )
            ).first()
            pol = (
                await conn.execute(
                    select(policies_table.c.policy).where(policies_table.c.store_id == store_id)
                )
            ).first()
            click = (
                await conn.execute(
                    select(clicks_table.c.click_id).where(clicks_table.c.visitor_id == visitor)
                )
            ).first()
        return True if code and click and (policy is None or pol) else None

    try:
        await eventually(arrived)
    finally:
        await engine.dispose()


#: policy → (affiliate of the order with a click and the code, of the order with only the code)
OUTCOMES = {
    "off": ("bob", None),
    "coupon_wins": ("anna", "anna"),
    "click_wins": ("bob", "anna"),
}


@pytest.mark.parametrize("policy", list(OUTCOMES))
async def test_each_policy_end_to_end_to_the_cent(settings: Settings, policy: str) -> None:
    """Order A: the buyer followed bob's link, then typed anna's code; order B: a buyer typed
    anna's code without any click. Rate 10%: A (3 × 33.33 − 1.00) → 9.90, B 45.55 → 4.56."""
    u = uid()
    async with running(settings) as svc:
        store = await new_store(svc, settings, f"s-{u}", rate="0.10")
        anna = await new_affiliate(svc, settings, f"anna-{u}")
        bob = await new_affiliate(svc, settings, f"bob-{u}")
        c = svc.commission
        if policy != "off":
            resp = await c.put(
                f"/v1/stores/{store.store_id}/coupon-policy",
                json={"policy": policy},
                headers=store.auth,
            )
            assert resp.status_code == 200, resp.text
        resp = await c.put(
            f"/v1/stores/{store.store_id}/coupons/anna-{u}",
            json={"affiliate_id": f"anna-{u}"},
            headers=store.auth,
        )
        assert resp.status_code == 201, resp.text
        visitor = await buyer_clicks(svc, bob, store.store_id)
        await _in_attribution(
            settings, store.store_id, None if policy == "off" else policy, visitor
        )

        a, b = f"a-{u}", f"b-{u}"
        events = [
            placed(a, visitor, f"ANNA-{u}".lower(), 3, "33.33", "1.00"),
            placed(b, f"v-{u}", f"anna-{u}".upper(), 1, "45.55", "0.00"),
            completed(a),
            completed(b),
        ]
        resp = await signed_post(svc.tracker, "/v1/events", store, {"events": events})
        assert (resp.status_code, resp.json()["accepted"]) == (202, 4), resp.text

        with_click, code_only = OUTCOMES[policy]
        figures = {a: (with_click, "9.90"), b: (code_only, "4.56")}
        views: dict[str, dict[str, Any]] = {}
        for order_id, (who, _) in figures.items():

            async def settled(
                o: str = order_id, w: str | None = f"{who}-{u}" if who else None
            ) -> dict[str, Any] | None:
                return await order_view(
                    svc, settings, (store.store_id, o), status="completed", affiliate_id=w
                )

            views[order_id] = await eventually(settled)
        for order_id, (who, payable) in figures.items():
            view = views[order_id]
            coupon = who == "anna"
            assert view["rule"] == ("coupon" if coupon else "last_click" if who else "organic")
            assert view["coupon_code"] == (f"ANNA-{u}".upper() if coupon else None)
            assert (view["click_id"] is None) == (who != "bob")
            assert view["payable"] == (payable if who else "0.00"), order_id

        explained = (
            await c.get(f"/v1/stores/{store.store_id}/orders/{a}/attribution", headers=store.auth)
        ).json()
        verdicts = [k["verdict"] for k in explained["considered"]]
        assert verdicts == (["coupon_won"] if with_click == "anna" else ["won"])
        assert explained["rule"] == views[a]["rule"]
        assert explained["coupon_code"] == views[a]["coupon_code"]

        # the store's transactions report names the rule of each affiliate order's lines
        report = await c.get(
            f"/v1/stores/{store.store_id}/reports/transactions", headers=store.auth
        )
        assert report.status_code == 200, report.text
        lines = {t["order_id"]: (t["rule"], t["affiliate_id"]) for t in report.json()["items"]}
        assert lines == {
            o: (
                "coupon" if who == "anna" else "last_click",
                f"{who}-{u}",
            )
            for o, (who, _) in figures.items()
            if who
        }

        # the ledger pays each affiliate exactly its orders' commission
        ledger = await ledger_lines(c, settings)
        earned: dict[str, Decimal] = {}
        for line in ledger:
            if line["store_id"] == store.store_id and line["account"].startswith("affiliate:"):
                who = line["account"].split(":")[1]
                earned[who] = earned.get(who, Decimal(0)) + Decimal(line["amount"])
        expected: dict[str, Decimal] = {}
        for who, payable in figures.values():
            if who:
                expected[f"{who}-{u}"] = expected.get(f"{who}-{u}", Decimal(0)) + Decimal(payable)
        assert earned == expected

        # the code's owner sees the coupon order in its own list; the other affiliate does not
        anna_orders = (await c.get("/v1/affiliate/orders", headers=bearer(anna))).json()
        assert {o["order_id"] for o in anna_orders["items"]} == {
            o for o, (who, _) in figures.items() if who == "anna"
        }
