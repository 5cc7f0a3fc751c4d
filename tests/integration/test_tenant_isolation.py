"""The boundaries between stores and affiliates, through HTTP as a user would go: orders
belong to their store, explanations show each caller only what is theirs, and a backdated
completion cannot skip its holding period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.commission.core.program import OpKind
from services.commission.program.service import ProgramService
from services.tracker.links import Link, LinkSigner
from shared.clock import FixedClock
from shared.config import Settings
from tests.integration import harness
from tests.integration.test_pipeline import placed

pytestmark = pytest.mark.integration


def now() -> str:
    return datetime.now(UTC).isoformat()


def status(kind: str, order_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"{order_id}-{kind}-{harness.uid()}",
        "type": kind,
        "occurred_at": now(),
        "order_id": order_id,
        **extra,
    }


async def post(svc: harness.Services, store: harness.Store, events: list[dict[str, Any]]) -> None:
    resp = await harness.signed_post(svc.tracker, "/v1/events", store, {"events": events})
    assert resp.status_code == 202, resp.text
    assert resp.json()["rejected"] == 0, resp.text


async def test_two_stores_may_use_the_same_order_number(settings: Settings) -> None:
    u = harness.uid()
    async with harness.running(settings) as svc:
        a = await harness.new_store(svc, settings, f"sa-{u}", rate="0.10")
        b = await harness.new_store(svc, settings, f"sb-{u}", rate="0.20")
        key_a = await harness.new_affiliate(svc, settings, f"affa-{u}")
        key_b = await harness.new_affiliate(svc, settings, f"affb-{u}")
        visitor_a = await harness.buyer_clicks(svc, key_a, a.store_id)
        visitor_b = await harness.buyer_clicks(svc, key_b, b.store_id)
        number = f"1001-{u}"
        await post(
            svc,
            a,
            [
                placed(number, visitor_a, "50.00", qty=1, ship="0.00"),
                status("order_completed", number),
            ],
        )
        await post(
            svc,
            b,
            [
                placed(number, visitor_b, "80.00", qty=1, ship="0.00"),
                status("order_completed", number),
            ],
        )
        view_a = await harness.eventually(
            lambda: harness.order_view(
                svc, settings, (a.store_id, number), status="completed", payable="5.00"
            )
        )
        view_b = await harness.eventually(
            lambda: harness.order_view(
                svc, settings, (b.store_id, number), status="completed", payable="16.00"
            )
        )
        assert (view_a["affiliate_id"], view_b["affiliate_id"]) == (f"affa-{u}", f"affb-{u}")
        assert (view_a["items"][0]["base"], view_b["items"][0]["base"]) == ("50.00", "80.00")
        ledger = await harness.ledger_lines(svc.commission, settings)
        keys = {line["key"] for line in ledger if line["order_id"] == number}
        assert keys == {f"commission:{a.store_id}:{number}", f"commission:{b.store_id}:{number}"}
        stores = {
            (line["store_id"], line["account"]) for line in ledger if line["order_id"] == number
        }
        assert (a.store_id, f"affiliate:affa-{u}:earned") in stores
        assert (b.store_id, f"affiliate:affb-{u}:earned") in stores
        # each store reads its own order under its own id; the other store's is not there
        for store, view in ((a, view_a), (b, view_b)):
            resp = await svc.commission.get(
                f"/v1/stores/{store.store_id}/orders/{number}", headers=store.auth
            )
            assert resp.json() == view
        resp = await svc.commission.get(f"/v1/stores/{b.store_id}/orders/{number}", headers=a.auth)
        assert resp.status_code == 404
        # the affiliate's list shows both ids
        orders = (
            await svc.commission.get(
                "/v1/affiliate/orders", headers={"Authorization": f"Bearer {key_a}"}
            )
        ).json()["items"]
        assert [(o["store_id"], o["order_id"]) for o in orders] == [(a.store_id, number)]


async def test_a_store_cannot_cancel_another_stores_order(settings: Settings) -> None:
    """harness.Store A sends every kind of order event for an order number store B uses: B's order
    stays exactly as B's own events make it."""
    u = harness.uid()
    async with harness.running(settings) as svc:
        a = await harness.new_store(svc, settings, f"sa-{u}")
        b = await harness.new_store(svc, settings, f"sb-{u}", rate="0.10")
        key = await harness.new_affiliate(svc, settings, f"aff-{u}")
        visitor = await harness.buyer_clicks(svc, key, b.store_id)
        number = f"7-{u}"
        await post(svc, b, [placed(number, visitor, "40.00", qty=1, ship="0.00")])
        await harness.eventually(
            lambda: harness.order_view(svc, settings, (b.store_id, number), affiliate_id=f"aff-{u}")
        )
        hostile = [
            placed(number, "v-hostile", "9999.00", qty=1, ship="0.00"),
            status("order_cancelled", number),
            status("order_completed", number),
            status(
                "order_refunded",
                number,
                refund_id="r1",
                items=[{"product_id": "p1", "amount": "40.00"}],
            ),
        ]
        await post(svc, a, hostile)
        # A's events made an order of A's own under that number
        await harness.eventually(
            lambda: harness.order_view(svc, settings, (a.store_id, number), status="cancelled")
        )
        before = await harness.order_view(svc, settings, (b.store_id, number))
        assert before is not None
        assert (before["status"], before["reversed"], before["items"][0]["base"]) == (
            "placed",
            "0.00",
            "40.00",
        )
        assert before["affiliate_id"] == f"aff-{u}"
        # B's own completion still pays the commission of B's order in full
        await post(svc, b, [status("order_completed", number)])
        done = await harness.eventually(
            lambda: harness.order_view(
                svc, settings, (b.store_id, number), status="completed", payable="4.00"
            )
        )
        assert done["reversed"] == "0.00"


async def test_an_explanation_shows_each_caller_only_what_is_theirs(settings: Settings) -> None:
    u = harness.uid()
    async with harness.running(settings) as svc:
        a = await harness.new_store(svc, settings, f"sa-{u}")
        b = await harness.new_store(svc, settings, f"sb-{u}")
        key_1 = await harness.new_affiliate(svc, settings, f"aff1-{u}")
        key_2 = await harness.new_affiliate(svc, settings, f"aff2-{u}")
        # one buyer: first to store B through affiliate 2, then to store A through affiliate 1
        link_b = await harness.new_link(svc, key_2, b.store_id, "p1")
        first = await svc.tracker.get(f"/r/{link_b['code']}")
        assert "alliance_vid" in svc.tracker.cookies  # the buyer's browser keeps the cookie
        link_a = await harness.new_link(svc, key_1, a.store_id, "p1")
        second = await svc.tracker.get(f"/r/{link_a['code']}")
        visitor = harness.visitor_of(second)
        assert harness.visitor_of(first) == visitor
        number = f"o-{u}"
        await post(svc, a, [placed(number, visitor, "10.00", qty=1, ship="0.00")])
        await harness.eventually(
            lambda: harness.order_view(
                svc, settings, (a.store_id, number), affiliate_id=f"aff1-{u}"
            )
        )
        path = f"/v1/stores/{a.store_id}/orders/{number}/attribution"

        async def explained(headers: dict[str, str]) -> dict[str, Any] | None:
            resp = await svc.commission.get(path, headers=headers)
            body: dict[str, Any] = resp.json()
            return body if resp.status_code == 200 and len(body["considered"]) == 2 else None

        full = await harness.eventually(lambda: explained(harness.admin(settings)))
        by_verdict = {c["verdict"]: c for c in full["considered"]}
        assert by_verdict["other_store"]["store_id"] == b.store_id
        assert by_verdict["other_store"]["affiliate_id"] == f"aff2-{u}"

        store_view = await explained(a.auth)
        assert store_view is not None
        mine = {c["verdict"]: c for c in store_view["considered"]}
        assert mine["won"] == by_verdict["won"]
        foreign = mine["other_store"]
        assert (foreign["store_id"], foreign["affiliate_id"], foreign["click_id"]) == (
            None,
            None,
            None,
        )
        assert foreign["occurred_at"] == by_verdict["other_store"]["occurred_at"]

        affiliate_view = await explained({"Authorization": f"Bearer {key_1}"})
        assert affiliate_view is not None
        seen = {c["verdict"]: c for c in affiliate_view["considered"]}
        assert seen["won"] == by_verdict["won"]
        assert seen["other_store"]["affiliate_id"] is None
        assert seen["other_store"]["click_id"] is None
        # nobody else sees the order at all
        for headers in (b.auth, {"Authorization": f"Bearer {key_2}"}):
            assert (await svc.commission.get(path, headers=headers)).status_code == 404


async def test_a_backdated_completion_counts_from_its_arrival(settings: Settings) -> None:
    """A completion dated 20 days ago that arrives now settles now: it cannot land in a past
    settlement period, nor skip the holding period, by its own date."""
    u = harness.uid()
    async with harness.running(settings) as svc:
        store = await harness.new_store(svc, settings, f"s-{u}", join=False)
        long_ago = datetime.now(UTC) - timedelta(days=30)
        async with svc.apps["commission"].state.sessions() as session, session.begin():
            # the store joined before the order, which is dated in the past
            joining = ProgramService(FixedClock(long_ago - timedelta(days=10)))
            await joining.change_program(
                session, store.store_id, OpKind.JOIN, "test", rate=Decimal("0.10")
            )
        await harness.new_affiliate(svc, settings, f"aff-{u}")
        signer = LinkSigner.from_config(settings.link_keys)
        code = signer.sign(Link(f"aff-{u}", store.store_id, "p1"))
        resp = await harness.signed_post(
            svc.tracker,
            "/v1/clicks",
            store,
            {
                "event_id": f"c-{u}",
                "code": code,
                "visitor_id": f"v-{u}",
                "occurred_at": long_ago.isoformat(),
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0",
                "ip": "203.0.113.9",
            },
        )
        assert resp.status_code == 202, resp.text
        number = f"o-{u}"
        order = placed(number, f"v-{u}", "100.00", qty=1, ship="0.00") | {
            "occurred_at": (long_ago + timedelta(hours=1)).isoformat()
        }
        completion = status("order_completed", number) | {
            "occurred_at": (long_ago + timedelta(days=2)).isoformat()
        }
        await post(svc, store, [order])
        await harness.eventually(
            lambda: harness.order_view(
                svc, settings, (store.store_id, number), affiliate_id=f"aff-{u}"
            )
        )
        await post(svc, store, [completion])
        await harness.eventually(
            lambda: harness.order_view(svc, settings, (store.store_id, number), status="completed")
        )

        async def settled(start: datetime, end: datetime) -> dict[str, Any]:
            resp = await svc.commission.get(
                f"/v1/settlements/stores/{store.store_id}",
                params={"from": start.isoformat(), "to": end.isoformat()},
                headers=harness.admin(settings),
            )
            assert resp.status_code == 200, resp.text
            body: dict[str, Any] = resp.json()
            return body

        past = await settled(long_ago, datetime.now(UTC) - timedelta(days=1))
        assert [t["orders_completed"] for t in past["totals"]] in ([], [0])
        recent = await settled(datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
        assert [(t["orders_completed"], t["commission_payable"]) for t in recent["totals"]] == [
            (1, "10.00")
        ]


async def test_a_key_works_as_soon_as_its_creation_is_answered(settings: Settings) -> None:
    """Over real HTTP (where a response may leave before the request's teardown): the
    transaction commits before the answer, so a store may use its new key at once."""
    import httpx

    from tests.services.commission.reports.test_dashboard_browser import served

    u = harness.uid()
    async with (
        harness.running(settings) as svc,
        served(svc.apps["commission"]) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        for n in range(20):
            store_id = f"s{n}-{u}"
            created = await http.post(
                "/v1/admin/stores",
                json={
                    "store_id": store_id,
                    "name": store_id,
                    "landing_url_template": "https://shop.example/item/{product_id}",
                },
                headers=harness.admin(settings),
            )
            assert created.status_code == 201, created.text
            key = created.json()["api_key"]
            joined = await http.post(
                f"/v1/stores/{store_id}/program/join",
                json={},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert joined.status_code == 200, joined.text
