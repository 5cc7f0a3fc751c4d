"""Program controls over HTTP with the services on real Kafka and PostgreSQL: the lock period
as a versioned program setting, reason-coded adjustments (single and batch) and what the lock
does to them and to refunds."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from services.commission.orders.verify import verify
from shared.clock import FixedClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from tests.integration.harness import admin, eventually, running
from tests.integration.receiver import Receiver, receiver
from tests.integration.test_scenarios_services import Replay
from tests.scenarios import ts

pytestmark = pytest.mark.integration

ITEMS = [
    {"product_id": "p1", "category_id": "cat1", "quantity": 2, "unit_price": "50.00"},
    {"product_id": "p2", "category_id": "cat1", "quantity": 1, "unit_price": "20.00"},
]


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"adj-{uuid.uuid4().hex}"}


async def test_lock_period_and_adjustments_end_to_end(settings: Settings) -> None:
    settings = settings.model_copy(update={"lock_sweep_interval_s": 0.2})
    clock = FixedClock(ts("2025-12-31T12:00:00Z"))
    with receiver() as hooks:
        async with running(settings, clock) as svc:
            replay = Replay(svc, settings, clock)
            try:
                await _story(svc, replay, settings, clock, hooks)
            finally:
                await replay.engine.dispose()
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            assert (await verify(session)).ok
    finally:
        await engine.dispose()


async def _story(
    svc: Any, replay: Replay, settings: Settings, clock: FixedClock, hooks: Receiver
) -> None:
    c = svc.commission
    aff_key = await _affiliate_key(svc, settings, replay.id("aff-a"))
    hook = await c.post(
        "/v1/affiliate/endpoints",
        json={
            "url": hooks.url("/aff"),
            "method": "POST",
            "events": ["commission.payable", "commission.adjusted", "commission.locked"],
        },
        headers=aff_key,
    )
    assert hook.status_code == 201, hook.text
    await replay.apply(
        {"kind": "program.join", "store_id": "s1", "at": "2025-12-31T12:00:00Z", "rate": "0.1"}
    )
    store = await replay.store("s1")
    other = await replay.store("s2")
    base = f"/v1/stores/{store.store_id}"

    # -- the lock period: a versioned program setting, recorded ---------------------------
    clock.set(ts("2026-01-01T00:00:00Z"))
    for bad in (-1, 366):
        refused = await c.put(f"{base}/lock-period", json={"days": bad}, headers=store.auth)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_lock_period"
    assert (await c.get(f"{base}/program", headers=store.auth)).json()["lock_days"] == 60
    resp = await c.put(f"{base}/lock-period", json={"days": 10}, headers=store.auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["lock_days"] == 10
    forbidden = await c.put(f"{base}/lock-period", json={"days": 5}, headers=other.auth)
    assert forbidden.status_code == 403
    ops = (await c.get(f"{base}/operations", headers=store.auth)).json()
    (lock_op,) = [o for o in ops if o["kind"] == "lock_period"]
    assert (lock_op["days"], lock_op["before"]["lock_days"], lock_op["after"]["lock_days"]) == (
        10,
        60,
        10,
    )

    # -- two orders of one affiliate: o1 completes, o2 stays open -------------------------
    for n, visitor in ((1, "v1"), (2, "v2")):
        await replay.apply(
            {
                "kind": "click",
                "click_id": f"c{n}",
                "affiliate_id": "aff-a",
                "store_id": "s1",
                "visitor_id": visitor,
                "at": "2026-02-27T12:00:00Z",
            }
        )
        await replay.apply(
            {
                "kind": "order_placed",
                "order_id": f"o{n}",
                "store_id": "s1",
                "visitor_id": visitor,
                "at": "2026-03-01T12:00:00Z",
                "currency": "USD",
                "items": ITEMS,
            }
        )
    # a longer lock set after placement does not count for these orders
    clock.set(ts("2026-03-02T00:00:00Z"))
    later = await c.put(f"{base}/lock-period", json={"days": 90}, headers=store.auth)
    assert later.status_code == 200, later.text
    await replay.apply({"kind": "order_completed", "order_id": "o1", "at": "2026-03-06T12:00:00Z"})
    o1, o2 = replay.order_path("o1"), replay.order_path("o2")

    async def view(path: str, want: dict[str, Any]) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            got: dict[str, Any] = (await c.get(path, headers=store.auth)).json()
            return got if all(got.get(k) == v for k, v in want.items()) else None

        return await eventually(probe)

    done = await view(o1, {"status": "completed", "payable": "12.00"})
    assert done["locks_at"] == "2026-03-16T12:00:00Z"
    assert done["locked"] is False
    await view(o2, {"attributed": True, "estimated": "12.00"})

    # -- a single adjustment: amend lowers a line's base, once per key ---------------------
    clock.set(ts("2026-03-08T00:00:00Z"))
    amend = {
        "reason": "item_returned",
        "note": "one of two returned",
        "action": "amend",
        "lines": [{"product_id": "p1", "amount": "50.00"}],
    }
    k = key()
    first = await c.post(f"{o1}/adjustments", json=amend, headers={**store.auth, **k})
    assert first.status_code == 201, first.text
    assert first.json()["adjustment_id"] == 1
    again = await c.post(f"{o1}/adjustments", json=amend, headers={**store.auth, **k})
    assert again.status_code == 200
    assert again.json() == first.json()
    reused = await c.post(
        f"{o1}/adjustments", json={**amend, "note": "else"}, headers={**store.auth, **k}
    )
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "idempotency_key_reused")
    # a line of 2 × 50.00 at 10% amended by 50.00 pays 5.00 (and p2 its 2.00)
    amended = await view(o1, {"payable": "7.00"})
    assert amended["items"][0]["amended"] == "50.00"
    assert [(a["reason"], a["note"]) for a in amended["adjustments"]] == [
        ("item_returned", "one of two returned")
    ]
    refusals = [
        ({**amend, "lines": [{"product_id": "p1", "amount": "50.01"}]}, 422, "amount_above_base"),
        ({**amend, "lines": [{"product_id": "p9", "amount": "1.00"}]}, 422, "unknown_product"),
        ({**amend, "lines": []}, 422, "lines_required"),
    ]
    for body, status, code in refusals:
        resp = await c.post(f"{o1}/adjustments", json=body, headers={**store.auth, **key()})
        assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), resp.text
    # another store's order (its key on this store's path, or this order on its path)
    wrong = await c.post(f"{o1}/adjustments", json=amend, headers={**other.auth, **key()})
    assert wrong.status_code == 403
    elsewhere = f"/v1/stores/{other.store_id}/orders/{replay.id('o1')}/adjustments"
    missing = await c.post(elsewhere, json=amend, headers={**other.auth, **key()})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")

    # the ledger: the adjustment is a transaction of its own with its reason
    ledger = (await c.get("/v1/ledger", params={"limit": 1000}, headers=admin(settings))).json()[
        "items"
    ]
    mine = [x for x in ledger if x["order_id"] == replay.id("o1")]
    kinds = sorted({(x["kind"], x["reason"]) for x in mine})
    assert kinds == [("adjustment", "item_returned"), ("commission", None)]
    earned = sum(
        (Decimal(x["amount"]) for x in mine if x["account"].startswith("affiliate:")), Decimal(0)
    )
    assert earned == Decimal("7.00")

    # the affiliate hears of it: commission.adjusted with the reason, the note and the lock
    async def adjusted_event() -> dict[str, Any] | None:
        for r in hooks.delivered("/aff"):
            body: dict[str, Any] = orjson.loads(r.body)
            if body["type"] == "commission.adjusted":
                return body
        return None

    event = (await eventually(adjusted_event))["data"]
    assert (event["commission"], event["reason"], event["note"], event["action"]) == (
        "-5.00",
        "item_returned",
        "one of two returned",
        "amend",
    )
    assert event["locks_at"] == "2026-03-16T12:00:00+00:00"

    # reports: the transactions filtered by reason (JSON and CSV)
    by_reason = await c.get(
        f"{base}/reports/transactions",
        params={"from": "2026-03-01", "to": "2026-03-31", "reason": "item_returned"},
        headers=store.auth,
    )
    assert by_reason.status_code == 200, by_reason.text
    (row,) = by_reason.json()["items"]
    assert (row["type"], row["reason"], row["amount"], row["commission"]) == (
        "adjustment",
        "item_returned",
        "50.00",
        "-5.00",
    )
    none = await c.get(
        f"{base}/reports/transactions",
        params={"from": "2026-03-01", "to": "2026-03-31", "reason": "fraud"},
        headers=store.auth,
    )
    assert none.json()["items"] == []
    # every filter beside a reason (a product as a typed parameter: a fuzzer's 500 once)
    for extra in ({"product_id": "p1"}, {"product_id": "p2"}, {"keyword": "x"}):
        filtered = await c.get(
            f"{base}/reports/transactions",
            params={
                "from": "2026-03-01",
                "to": "2026-03-31",
                "type": "adjustment",
                "reason": "item_returned",
                **extra,
            },
            headers=store.auth,
        )
        assert filtered.status_code == 200, filtered.text
        assert len(filtered.json()["items"]) == (1 if extra == {"product_id": "p1"} else 0)
    csv = await c.get(
        f"{base}/reports/transactions",
        params={"from": "2026-03-01", "to": "2026-03-31", "reason": "item_returned"},
        headers={**store.auth, "Accept": "text/csv"},
    )
    lines = csv.text.strip().splitlines()
    assert len(lines) == 2
    assert "item_returned" in lines[1]

    # the affiliate sees the reason, the note and the lock on its order list
    page = (await c.get("/v1/affiliate/orders", headers=aff_key)).json()["items"]
    seen = {o["order_id"]: o for o in page}
    mine_o1 = seen[replay.id("o1")]
    assert mine_o1["settled"] == "7.00"
    assert mine_o1["locks_at"] == "2026-03-16T12:00:00Z"
    assert [(a["reason"], a["note"], a["actor"]) for a in mine_o1["adjustments"]] == [
        ("item_returned", "one of two returned", None)
    ]

    # -- the lock: at completed_at + 10 days a refund reverses nothing, adjustments refused --
    await replay.apply(
        {
            "kind": "order_refunded",
            "order_id": "o1",
            "refund_id": "r-late",
            "at": "2026-03-16T12:00:00Z",
            "items": [{"product_id": "p2", "amount": "20.00"}],
        }
    )
    locked = await view(o1, {"reversal_skipped": {"r-late": "locked"}})

    # the announcer: one commission.locked for o1 (its final net), none for the open o2
    def locked_events() -> list[dict[str, Any]]:
        bodies = [orjson.loads(r.body) for r in hooks.delivered("/aff")]
        return [b["data"] for b in bodies if b["type"] == "commission.locked"]

    async def announced() -> list[dict[str, Any]] | None:
        return locked_events() or None

    (announcement,) = await eventually(announced)
    assert announcement["order_id"] == replay.id("o1")
    assert (announcement["commission"], announcement["locks_at"]) == (
        "7.00",
        "2026-03-16T12:00:00+00:00",
    )
    await asyncio.sleep(1.0)  # several sweeps later: still announced once
    assert len(locked_events()) == 1
    assert (locked["locked"], locked["payable"], locked["reversed"]) == (True, "7.00", "0.00")
    report = await c.get(
        f"{base}/reports/transactions",
        params={"from": "2026-03-01", "to": "2026-03-31"},
        headers=store.auth,
    )
    assert report.status_code == 200, report.text
    (late,) = [t for t in report.json()["items"] if t["type"] == "refund"]
    assert [t["reason"] for t in report.json()["items"] if t["type"] == "adjustment"] == [
        "item_returned"
    ]
    assert (late["refund_id"], late["commission"], late["reversal_skipped"]) == (
        "r-late",
        "0.00",
        "locked",
    )
    refused = await c.post(
        f"{o1}/adjustments",
        json={"reason": "fraud", "action": "decline"},
        headers={**store.auth, **key()},
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "locked")

    # -- the batch form: per-item results, idempotent --------------------------------------
    batch = {
        "items": [
            {"order_id": replay.id("o2"), "reason": "test_order", "action": "decline"},
            {"order_id": replay.id("o1"), "reason": "fraud", "action": "decline"},
            {"order_id": replay.id("nope"), "reason": "other", "action": "reset"},
        ]
    }
    bk = key()
    out = await c.post(f"{base}/adjustments:batch", json=batch, headers={**store.auth, **bk})
    assert out.status_code == 200, out.text
    results = [(i["status"], i["code"]) for i in out.json()["items"]]
    assert results == [(201, None), (409, "locked"), (404, "not_found")]
    assert (out.json()["accepted"], out.json()["refused"]) == (1, 2)
    replayed_batch = await c.post(
        f"{base}/adjustments:batch", json=batch, headers={**store.auth, **bk}
    )
    assert [i["status"] for i in replayed_batch.json()["items"]] == [200, 409, 404]
    # before completion a decline changes the estimate only
    declined = await view(o2, {"estimated": "0.00"})
    assert declined["declined"] is True
    too_big = await c.post(
        f"{base}/adjustments:batch",
        json={"items": batch["items"] * 3334},
        headers={**store.auth, **key()},
    )
    assert too_big.status_code == 422


async def _affiliate_key(svc: Any, settings: Settings, affiliate_id: str) -> dict[str, str]:
    """The affiliate's key (a new one: the admin issues it)."""
    resp = await svc.commission.post(
        "/v1/admin/affiliates",
        json={"affiliate_id": affiliate_id, "name": affiliate_id},
        headers=admin(settings),
    )
    if resp.status_code == 409:  # known already (the replay's clicks): a new key
        resp = await svc.commission.post(
            f"/v1/admin/affiliates/{affiliate_id}/keys/rotate", headers=admin(settings)
        )
    assert resp.status_code in (200, 201), resp.text
    return {"Authorization": f"Bearer {resp.json()['api_key']}"}


async def _joined_with_lock(replay: Replay, *, days: int) -> Any:
    """The store s1 joined at 10% on 2025-12-31 with a lock period of ``days``."""
    await replay.apply(
        {"kind": "program.join", "store_id": "s1", "at": "2025-12-31T12:00:00Z", "rate": "0.1"}
    )
    store = await replay.store("s1")
    resp = await replay.svc.commission.put(
        f"/v1/stores/{store.store_id}/lock-period", json={"days": days}, headers=store.auth
    )
    assert resp.status_code == 200, resp.text
    return store


async def test_with_payout_requires_lock_only_locked_commission_is_paid(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"payout_requires_lock": True})
    clock = FixedClock(ts("2025-12-31T12:00:00Z"))
    async with running(settings, clock) as svc:
        replay = Replay(svc, settings, clock)
        try:
            c = svc.commission
            store = await _joined_with_lock(replay, days=3)
            for event in (
                {
                    "kind": "click",
                    "click_id": "c1",
                    "affiliate_id": "aff-a",
                    "store_id": "s1",
                    "visitor_id": "v1",
                    "at": "2026-02-27T12:00:00Z",
                },
                {
                    "kind": "order_placed",
                    "order_id": "o1",
                    "store_id": "s1",
                    "visitor_id": "v1",
                    "at": "2026-03-01T12:00:00Z",
                    "currency": "USD",
                    "items": ITEMS,
                },
                {"kind": "order_completed", "order_id": "o1", "at": "2026-03-02T12:00:00Z"},
            ):
                await replay.apply(event)

            async def payable() -> bool | None:
                view = (await c.get(replay.order_path("o1"), headers=store.auth)).json()
                return True if view.get("payable") == "12.00" else None

            await eventually(payable)
            body = {"affiliate_id": replay.id("aff-a"), "up_to": "2026-04-01T00:00:00Z"}
            # completed, past the holding period (0 days), not yet locked: nothing to pay
            clock.set(ts("2026-03-05T12:00:00Z") - timedelta(seconds=1))
            early = await c.post("/v1/payouts", json=body, headers={**admin(settings), **key()})
            assert (early.status_code, early.json()["error"]["code"]) == (409, "nothing_to_pay")
            clock.set(ts("2026-03-05T12:00:00Z"))  # completed_at + 3 days: locked
            paid = await c.post("/v1/payouts", json=body, headers={**admin(settings), **key()})
            assert paid.status_code == 201, paid.text
            assert paid.json()["amounts"] == {"USD": "12.00"}
        finally:
            await replay.engine.dispose()


async def test_a_hold_keeps_commission_from_payouts_until_released_and_a_void_reverses(
    settings: Settings,
) -> None:
    clock = FixedClock(ts("2025-12-31T12:00:00Z"))
    async with running(settings, clock) as svc:
        replay = Replay(svc, settings, clock)
        try:
            c = svc.commission
            store = await _joined_with_lock(replay, days=3)
            for n, done in ((1, "2026-03-02T12:00:00Z"), (2, "2026-03-06T12:00:00Z")):
                for event in (
                    {
                        "kind": "click",
                        "click_id": f"c{n}",
                        "affiliate_id": "aff-a",
                        "store_id": "s1",
                        "visitor_id": f"v{n}",
                        "at": "2026-02-27T12:00:00Z",
                    },
                    {
                        "kind": "order_placed",
                        "order_id": f"o{n}",
                        "store_id": "s1",
                        "visitor_id": f"v{n}",
                        "at": "2026-03-01T12:00:00Z",
                        "currency": "USD",
                        "items": ITEMS,
                    },
                    {"kind": "order_completed", "order_id": f"o{n}", "at": done},
                ):
                    await replay.apply(event)
            o1, o2 = replay.order_path("o1"), replay.order_path("o2")

            async def payable(path: str, amount: str) -> dict[str, Any]:
                async def probe() -> dict[str, Any] | None:
                    view: dict[str, Any] = (await c.get(path, headers=store.auth)).json()
                    return view if view.get("payable") == amount else None

                return await eventually(probe)

            await payable(o1, "12.00")
            await payable(o2, "12.00")
            affiliate = replay.id("aff-a")
            fin = admin(settings)
            held = await c.post(
                "/v1/finance/holds",
                json={
                    "affiliate_id": affiliate,
                    "store_id": store.store_id,
                    "reason": "fraud",
                    "note": "self-referrals under review",
                },
                headers=fin,
            )
            assert held.status_code == 201, held.text
            hold_id = held.json()["hold_id"]
            view = await payable(o1, "0.00")
            assert (view["held"], view["hold_id"], view["net"]) == (True, hold_id, "12.00")
            aff_key = await _affiliate_key(svc, settings, affiliate)
            page = (await c.get("/v1/affiliate/orders", headers=aff_key)).json()["items"]
            assert {o["order_id"]: o["held"] for o in page} == {
                replay.id("o1"): True,
                replay.id("o2"): True,
            }
            # held: posted, not payable
            body = {"affiliate_id": affiliate, "up_to": "2026-04-01T00:00:00Z"}
            none = await c.post("/v1/payouts", json=body, headers={**fin, **key()})
            assert (none.status_code, none.json()["error"]["code"]) == (409, "nothing_to_pay")
            listed = await c.get(
                "/v1/finance/holds", params={"affiliate_id": affiliate}, headers=fin
            )
            assert [h["status"] for h in listed.json()] == ["active"]
            # release: payable again, nothing lost
            released = await c.post(f"/v1/finance/holds/{hold_id}/release", headers=fin)
            assert released.json()["status"] == "released"
            again = await c.post(f"/v1/finance/holds/{hold_id}/release", headers=fin)
            assert (again.status_code, again.json()["error"]["code"]) == (409, "hold_not_active")
            await payable(o1, "12.00")
            paid = await c.post("/v1/payouts", json=body, headers={**fin, **key()})
            assert paid.status_code == 201, paid.text
            assert paid.json()["amounts"] == {"USD": "24.00"}

            # a platform-wide hold voided after o1's lock: o2 reversed (fraud), o1 unchanged
            clock.set(ts("2026-03-06T13:00:00Z"))
            second = await c.post(
                "/v1/finance/holds",
                json={"affiliate_id": affiliate, "reason": "fraud"},
                headers=fin,
            )
            voided = await c.post(f"/v1/finance/holds/{second.json()['hold_id']}/void", headers=fin)
            assert voided.status_code == 200, voided.text
            assert voided.json()["reversed_orders"] == [f"{store.store_id}/{replay.id('o2')}"]
            assert voided.json()["locked_orders"] == [f"{store.store_id}/{replay.id('o1')}"]
            declined = await payable(o2, "0.00")
            assert declined["declined"] is True
            assert [a["reason"] for a in declined["adjustments"]] == ["fraud"]
            assert (await payable(o1, "12.00"))["held"] is False
        finally:
            await replay.engine.dispose()
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            assert (await verify(session)).ok
    finally:
        await engine.dispose()
