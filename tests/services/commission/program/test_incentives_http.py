"""The incentives' settings over HTTP on the real stack: the new-buyer bonus, performance tiers
and caps as versioned program operations (who may set them, the rules' refusals, the program
view, the operation record and the audit log)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.commission.orders.verify import verify
from shared.clock import FixedClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from tests.integration.harness import Store, admin, eventually, register_store, running
from tests.integration.test_scenarios_services import Replay
from tests.scenarios import ts

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, tzinfo=UTC)

TIERS: dict[str, Any] = {
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
        changes: list[tuple[str, dict[str, Any]]] = [
            ("new-buyer", {"extra_rate": "0.02"}),
            ("tiers", TIERS),
            ("caps", CAPS),
        ]
        for path, change in changes:
            refused = await c.put(f"{inc}/{path}", json=change, headers=other.auth)
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


ITEMS = [
    {"product_id": "p1", "category_id": "cat1", "quantity": 2, "unit_price": "50.00"},
    {"product_id": "p2", "category_id": "cat1", "quantity": 1, "unit_price": "20.00"},
]


async def joined_store(replay: Replay) -> Store:
    """Store s1, in the program at 10% from 27 February."""
    await replay.apply(
        {"kind": "program.join", "store_id": "s1", "at": "2026-02-27T00:00:00Z", "rate": "0.1"}
    )
    return await replay.store("s1")


async def click(replay: Replay, n: int) -> None:
    """Visitor ``v<n>`` clicks aff-a's link ``c<n>`` to s1 (on 27 February, noon)."""
    await replay.apply(
        {
            "kind": "click",
            "click_id": f"c{n}",
            "affiliate_id": "aff-a",
            "store_id": "s1",
            "visitor_id": f"v{n}",
            "at": "2026-02-27T12:00:00Z",
        }
    )


def placed(n: int, at: str) -> dict[str, Any]:
    """Visitor ``v<n>`` places order ``o<n>`` of :data:`ITEMS` (120.00 of sales) at ``at``."""
    return {
        "kind": "order_placed",
        "order_id": f"o{n}",
        "store_id": "s1",
        "visitor_id": f"v{n}",
        "at": at,
        "currency": "USD",
        "items": ITEMS,
    }


def refunded(order: str, refund: str, product: str, amount: str, at: str) -> dict[str, Any]:
    """Refund ``refund`` of ``amount`` of ``product``'s sales in order ``order`` at ``at``."""
    return {
        "kind": "order_refunded",
        "order_id": order,
        "refund_id": refund,
        "at": at,
        "items": [{"product_id": product, "amount": amount}],
    }


async def settled(replay: Replay, settings: Settings) -> list[tuple[str, str, str, str]]:
    """aff-a's settlement: (currency, payable, reversed, net) per currency."""
    got = await replay.svc.commission.get(
        f"/v1/settlements/affiliates/{replay.id('aff-a')}", headers=admin(settings)
    )
    assert got.status_code == 200, got.text
    return [
        (t["currency"], t["commission_payable"], t["reversed"], t["net"])
        for t in got.json()["totals"]
    ]


async def order_view(
    replay: Replay, store: Store, order: str, want: dict[str, Any]
) -> dict[str, Any]:
    """The order's view once it shows ``want`` (the pipeline is asynchronous)."""

    async def probe() -> dict[str, Any] | None:
        got: dict[str, Any] = (
            await replay.svc.commission.get(replay.order_path(order), headers=store.auth)
        ).json()
        return got if all(got.get(k) == v for k, v in want.items()) else None

    return await eventually(probe)


async def assert_ledger_verifies(settings: Settings) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            checked = await verify(session)
            assert checked.ok, checked
    finally:
        await engine.dispose()


async def test_a_new_buyers_order_earns_the_bonus_in_force_when_it_was_placed(
    settings: Settings,
) -> None:
    """order_placed.new_buyer through the tracker, attribution and commission: the line's
    rate plus the bonus rate in force at placement (a later change does not count), its
    refunds reversed at the same rate, the ledger verified."""
    clock = FixedClock(ts("2026-02-27T00:00:00Z"))
    async with running(settings, clock) as svc:
        replay = Replay(svc, settings, clock)
        try:
            c = svc.commission
            store = await joined_store(replay)
            put = await c.put(
                f"/v1/stores/{store.store_id}/incentives/new-buyer",
                json={"extra_rate": "0.02"},
                headers=store.auth,
            )
            assert put.status_code == 200, put.text
            for n, first in ((1, True), (2, None), (3, False)):
                await click(replay, n)
                event = placed(n, "2026-03-01T12:00:00Z")
                if first is not None:
                    event["new_buyer"] = first
                await replay.apply(event)
            # a higher bonus set after placement does not count for these orders
            clock.set(ts("2026-03-02T00:00:00Z"))
            later = await c.put(
                f"/v1/stores/{store.store_id}/incentives/new-buyer",
                json={"extra_rate": "0.05"},
                headers=store.auth,
            )
            assert later.status_code == 200, later.text
            await replay.apply(
                {"kind": "order_completed", "order_id": "o1", "at": "2026-03-03T12:00:00Z"}
            )
            await replay.apply(refunded("o1", "r1", "p2", "20.00", "2026-03-04T12:00:00Z"))

            def view(order: str, want: dict[str, Any]) -> Awaitable[dict[str, Any]]:
                return order_view(replay, store, order, want)

            # 120.00 of sales at 10% + 2 points: 14.40; the refund of p2 (20.00) reverses 2.40
            o1 = await view("o1", {"status": "completed", "payable": "12.00"})
            assert (o1["commission"], o1["reversed"], o1["new_buyer"]) == ("14.40", "2.40", True)
            assert [(i["rate"], i["bonus_rate"]) for i in o1["items"]] == [("0.1", "0.02")] * 2
            for order in ("o2", "o3"):  # not marked, or marked false: no bonus
                plain = await view(order, {"attributed": True, "estimated": "12.00"})
                assert {i["bonus_rate"] for i in plain["items"]} == {"0"}
                assert plain["new_buyer"] is False

            # the month's tier standing: o1's 120.00 less 20.00 refunded qualifies (o2, o3 are
            # not completed); tier 1 (100.00) reached: 2.00, cut to 0.60 by the 15.00 cap
            # after o1's 14.40; not final before o1 locks (60 days after completion)
            tiers = {
                "currency": "USD",
                "tiers": [
                    {"from": "100.00", "extra_rate": "0.02"},
                    {"from": "1000.00", "extra_rate": "0.04"},
                ],
            }
            inc = f"/v1/stores/{store.store_id}/incentives"
            for path, body in (
                ("tiers", tiers),
                ("caps", {"per_affiliate_month": {"USD": "15.00"}}),
            ):
                resp = await c.put(f"{inc}/{path}", json=body, headers=store.auth)
                assert resp.status_code == 200, resp.text
            query = {"affiliate_id": replay.id("aff-a"), "month": "2026-03"}
            progress = await c.get(f"{inc}/tier-progress", params=query, headers=store.auth)
            assert progress.status_code == 200, progress.text
            assert progress.json()["currencies"] == [
                {
                    "currency": "USD",
                    "orders": 1,
                    "qualifying_sales": "100.00",
                    "tier": {"from": "100.00", "extra_rate": "0.02"},
                    "next_tier": {"from": "1000.00", "extra_rate": "0.04"},
                    "bonus": "2.00",
                    "capped_bonus": "0.60",
                    "settled": False,
                }
            ]
            clock.set(ts("2026-05-02T12:00:00Z"))  # o1 locks at completion + 60 days
            final = await c.get(f"{inc}/tier-progress", params=query, headers=admin(settings))
            assert final.json()["currencies"][0]["settled"] is True
            for month in ("2026-13", "0000-01", "9999-12", "2026-3"):
                bad = await c.get(
                    f"{inc}/tier-progress", params={**query, "month": month}, headers=store.auth
                )
                assert bad.status_code == 422, month
        finally:
            await replay.engine.dispose()
    await assert_ledger_verifies(settings)


async def test_a_capped_orders_completion_and_refunds_post_what_the_cap_leaves(
    settings: Settings,
) -> None:
    """The per-order cap in force at placement limits what completion posts; a refund of a
    capped order reverses the refunded share of what was paid, a full refund all of it; the
    order view shows the cut; the settlement and the ledger agree."""
    clock = FixedClock(ts("2026-02-27T00:00:00Z"))
    async with running(settings, clock) as svc:
        replay = Replay(svc, settings, clock)
        try:
            c = svc.commission
            store = await joined_store(replay)
            inc = f"/v1/stores/{store.store_id}/incentives"
            for n, cap, at in (
                (1, "5.00", "2026-02-27T13:00:00Z"),
                (2, "5.00", "2026-02-27T14:00:00Z"),
                # a higher cap set after o1 and o2 were placed counts for o3 only
                (3, "50.00", "2026-03-01T12:00:00Z"),
            ):
                clock.set(ts("2026-02-27T00:00:00Z") + timedelta(days=n - 1))
                put = await c.put(
                    f"{inc}/caps", json={"per_order": {"USD": cap}}, headers=store.auth
                )
                assert put.status_code == 200, put.text
                await click(replay, n)
                await replay.apply(placed(n, at))
            for n in (1, 2, 3):
                await replay.apply(
                    {"kind": "order_completed", "order_id": f"o{n}", "at": "2026-03-05T12:00:00Z"}
                )
            # o1: 12.00 capped to 5.00; a refund of p2 reverses 2.00 uncapped: 5 × 2 / 12 = 0.83
            # o2: refunded in full (in two refunds): reverses exactly the 5.00 paid
            for order, refund, product, amount in (
                ("o1", "r1", "p2", "20.00"),
                ("o2", "r2", "p1", "100.00"),
                ("o2", "r3", "p2", "20.00"),
            ):
                await replay.apply(refunded(order, refund, product, amount, "2026-03-06T12:00:00Z"))
            o1 = await order_view(replay, store, "o1", {"status": "completed", "reversed": "0.83"})
            assert (o1["commission"], o1["capped"], o1["net"], o1["payable"]) == (
                "5.00",
                "7.00",
                "4.17",
                "4.17",
            )
            assert [i["commission"] for i in o1["items"]] == ["10.00", "2.00"]  # before the cap
            o2 = await order_view(replay, store, "o2", {"status": "completed", "reversed": "5.00"})
            assert (o2["commission"], o2["capped"], o2["net"]) == ("5.00", "7.00", "0.00")
            o3 = await order_view(replay, store, "o3", {"status": "completed"})
            assert (o3["commission"], o3["capped"], o3["net"]) == ("12.00", "0.00", "12.00")

            # the affiliate's settlement is what the ledger posted: 5.00 + 5.00 + 12.00 paid
            assert await settled(replay, settings) == [("USD", "22.00", "5.83", "16.17")]
        finally:
            await replay.engine.dispose()
    await assert_ledger_verifies(settings)


async def test_the_month_cap_is_taken_in_the_order_the_completions_are_posted(
    settings: Settings,
) -> None:
    """The per-affiliate-month cap: each completion posted takes its commission, at most what
    the month's earlier postings left; an earlier order completing late takes what is left
    and changes nothing posted; a refund reverses its share of what was paid; another month
    has its own room; the ledger verifies."""
    clock = FixedClock(ts("2026-02-27T00:00:00Z"))
    async with running(settings, clock) as svc:
        replay = Replay(svc, settings, clock)
        try:
            c = svc.commission
            store = await joined_store(replay)
            put = await c.put(
                f"/v1/stores/{store.store_id}/incentives/caps",
                json={"per_affiliate_month": {"USD": "15.00"}},
                headers=store.auth,
            )
            assert put.status_code == 200, put.text
            for n in (1, 2, 3, 4):
                await click(replay, n)
                await replay.apply(placed(n, "2026-03-01T12:00:00Z"))
            # each 12.00 of commission; posted in this order (o3 completed first, posted last)
            for n, at, paid, cut in (
                (1, "2026-03-05T12:00:00Z", "12.00", "0.00"),
                (2, "2026-03-06T12:00:00Z", "3.00", "9.00"),
                (3, "2026-03-02T12:00:00Z", "0.00", "12.00"),
                (4, "2026-04-01T12:00:00Z", "12.00", "0.00"),  # April: a room of its own
            ):
                await replay.apply({"kind": "order_completed", "order_id": f"o{n}", "at": at})
                got = await order_view(replay, store, f"o{n}", {"status": "completed"})
                assert (got["commission"], got["capped"]) == (paid, cut), (n, got)
            await replay.apply(refunded("o2", "r1", "p2", "20.00", "2026-03-07T12:00:00Z"))
            # 2.00 of o2's uncapped 12.00 refunded: 3.00 × 2 / 12 = 0.50
            o2 = await order_view(replay, store, "o2", {"reversed": "0.50"})
            assert o2["net"] == "2.50"
            o1 = await order_view(replay, store, "o1", {"status": "completed"})
            assert (o1["commission"], o1["capped"]) == ("12.00", "0.00")  # posted: unchanged
            assert await settled(replay, settings) == [("USD", "27.00", "0.50", "26.50")]
        finally:
            await replay.engine.dispose()
    await assert_ledger_verifies(settings)
