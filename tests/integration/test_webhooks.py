"""Postbacks and webhooks through HTTP, on real Kafka and PostgreSQL, to a receiver on
loopback: a receiver that is down gets every event once it is up, in order per order,
signed; 20 failures in a row disable an endpoint; redelivery; each owner sees its own."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from alliance_client import InvalidSignature, parse_event, signing
from alliance_client.signing import get_content
from services.commission.core.webhooks import SIGNATURE_HEADER, WebhookEvent
from shared.config import Settings
from tests.integration.harness import (
    Services,
    admin,
    bearer,
    buyer_clicks,
    eventually,
    new_affiliate,
    new_finance_user,
    new_store,
    order_view,
    running,
    signed_post,
)
from tests.integration.receiver import receiver

pytestmark = pytest.mark.integration


class ShiftedClock:
    """The delivery worker's clock: real time plus an offset the test moves forward, so that
    retries an hour apart happen without waiting."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"webhook_allow_private": True, "webhook_interval_s": 0.1, "webhook_timeout_s": 5}
    )


def shift_worker_clock(svc: Services) -> ShiftedClock:
    clock = ShiftedClock()
    svc.apps["commission"].state.webhook_worker.clock = clock
    return clock


async def advance_until(svc: Services, clock: ShiftedClock, done: Any, step: timedelta) -> None:
    """Move the worker's clock by ``step`` and poke it until ``done()`` holds."""
    worker = svc.apps["commission"].state.webhook_worker

    async def probe() -> bool | None:
        if done():
            return True
        clock.offset += step
        worker.poke()
        return None

    await eventually(probe, timeout_s=60)


# -- storefront events ------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat()


def placed(order_id: str, visitor: str) -> dict[str, Any]:
    return {
        "event_id": f"{order_id}-placed",
        "type": "order_placed",
        "occurred_at": _now(),
        "order_id": order_id,
        "visitor_id": visitor,
        "currency": "USD",
        "items": [
            {
                "product_id": "p1",
                "category_id": "c1",
                "title": "Case",
                "quantity": 2,
                "unit_price": "20.00",
                "shipping_fee": "3.50",
            }
        ],
    }


def completed(order_id: str) -> dict[str, Any]:
    return {
        "event_id": f"{order_id}-done",
        "type": "order_completed",
        "occurred_at": _now(),
        "order_id": order_id,
    }


def refunded(order_id: str, amount: str) -> dict[str, Any]:
    return {
        "event_id": f"{order_id}-refund",
        "type": "order_refunded",
        "occurred_at": _now(),
        "order_id": order_id,
        "refund_id": "r-1",
        "currency": "USD",
        "items": [{"product_id": "p1", "amount": amount}],
    }


async def _reversed(
    svc: Services, settings: Settings, order: tuple[str, str]
) -> dict[str, Any] | None:
    view = await order_view(svc, settings, order)
    return view if view is not None and view["reversed"] != "0.00" else None


async def register(
    svc: Services, prefix: str, key: str, url: str, events: list[str], method: str = "POST"
) -> dict[str, Any]:
    resp = await svc.commission.post(
        prefix, json={"url": url, "method": method, "events": events}, headers=bearer(key)
    )
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    assert created["secret"].startswith("whsec_")
    return created


async def all_delivered(svc: Services, prefix: str, key: str, endpoint_id: str) -> list[Any]:
    """The delivery log once every row of it is recorded ``delivered``: the receiver has a
    request before the worker (an attempt is a task of its own) records its answer."""

    async def done() -> list[Any] | None:
        log = await deliveries(svc, prefix, key, endpoint_id)
        return log if all(d["status"] == "delivered" for d in log) else None

    found: list[Any] = await eventually(done)
    return found


async def deliveries(svc: Services, prefix: str, key: str, endpoint_id: str) -> list[Any]:
    resp = await svc.commission.get(
        f"{prefix}/{endpoint_id}/deliveries", params={"limit": 2}, headers=bearer(key)
    )
    assert resp.status_code == 200, resp.text
    items: list[Any] = resp.json()["items"]
    cursor = resp.json()["next_cursor"]
    while cursor is not None:  # keyset pages, newest first
        page = await svc.commission.get(
            f"{prefix}/{endpoint_id}/deliveries",
            params={"limit": 2, "cursor": cursor},
            headers=bearer(key),
        )
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
    return items


ALL = ["order.attributed", "commission.payable", "commission.reversed", "payout.created"]
AFF = "/v1/affiliate/endpoints"


async def test_a_receiver_that_was_down_gets_every_event_once_up_in_order_and_signed(
    settings: Settings,
) -> None:
    settings = hook_settings(settings)
    u = uuid.uuid4().hex[:8]
    with receiver(fail_first=3) as hooks:
        async with running(settings) as svc:
            clock = shift_worker_clock(svc)
            store = await new_store(svc, settings, f"s-{u}")
            aff_key = await new_affiliate(svc, settings, f"aff-{u}")
            fin_key = await new_finance_user(svc, settings, f"fin-{u}")
            mine = await register(svc, AFF, aff_key, hooks.url("/aff"), ALL)
            finance = await register(
                svc, "/v1/finance/endpoints", fin_key, hooks.url("/fin"), ["payout.created"]
            )
            postback = await register(
                svc,
                f"/v1/stores/{store.store_id}/endpoints",
                store.api_key,
                hooks.url("/pb?o={order_id}&c={commission}&cur={currency}&e={event_id}"),
                ["commission.payable"],
                method="GET",
            )

            orders = [f"o1-{u}", f"o2-{u}"]
            for order_id in orders:
                visitor = await buyer_clicks(svc, aff_key, store.store_id)
                resp = await signed_post(
                    svc.tracker,
                    "/v1/events",
                    store,
                    {"events": [placed(order_id, visitor), completed(order_id)]},
                )
                assert resp.status_code == 202, resp.text
            for order_id in orders:
                key = (store.store_id, order_id)
                await eventually(
                    partial(order_view, svc, settings, key, status="completed", payable="2.19")
                )
            resp = await signed_post(
                svc.tracker, "/v1/events", store, {"events": [refunded(orders[0], "10.00")]}
            )
            assert resp.status_code == 202, resp.text
            after_refund = await eventually(
                lambda: _reversed(svc, settings, (store.store_id, orders[0]))
            )
            reversed_amount = Decimal(after_refund["reversed"])
            assert reversed_amount > 0
            payout = await svc.commission.post(
                "/v1/payouts",
                json={"affiliate_id": f"aff-{u}", "up_to": _now()},
                headers={**bearer(fin_key), "Idempotency-Key": f"pay-{u}"},
            )
            assert payout.status_code == 201, payout.text

            # 2 × (attributed, payable) + a reversal + the payout to the affiliate; the payout
            # to finance; the two payable postbacks to the store
            await advance_until(
                svc,
                clock,
                lambda: (
                    len(set(hooks.event_ids("/aff"))) == 6
                    and len(hooks.delivered("/fin")) == 1
                    and len(hooks.delivered("/pb")) == 2
                ),
                timedelta(minutes=10),
            )
            assert sum(1 for r in hooks.requests if r.answered == 500) == 3

            # once each: nothing delivered twice
            assert len(hooks.event_ids("/aff")) == 6
            by_order: dict[str, list[str]] = {}
            for r in hooks.delivered("/aff"):
                # signed with the secret shown at creation, over the raw body
                header = r.headers[SIGNATURE_HEADER.lower()]
                stamp = int(header.split(",")[0].removeprefix("t="))
                # as a receiver does it, with the Python client: verified, then parsed
                received = parse_event(mine["secret"], header, r.body, now=stamp)
                with pytest.raises(InvalidSignature):
                    parse_event(postback["secret"], header, r.body, now=stamp)
                event = orjson.loads(r.body)
                assert event["id"] == r.headers["alliance-event-id"] == received.id
                if "order_id" in event["data"]:
                    by_order.setdefault(event["data"]["order_id"], []).append(event["type"])
                else:
                    assert event["type"] == "payout.created"
                    paid = Decimal("2.19") * 2 - reversed_amount
                    assert event["data"]["amounts"] == {"USD": str(paid)}
            # in order per order, whatever the failures in between
            assert by_order == {
                orders[0]: ["order.attributed", "commission.payable", "commission.reversed"],
                orders[1]: ["order.attributed", "commission.payable"],
            }
            reversal = next(
                orjson.loads(r.body)
                for r in hooks.delivered("/aff")
                if orjson.loads(r.body)["type"] == "commission.reversed"
            )
            assert reversal["data"]["commission"] == str(-reversed_amount)
            assert reversal["data"]["refund_id"] == "r-1"

            # the GET postback: macros filled in, URL-encoded, the path and query signed
            for r in hooks.delivered("/pb"):
                assert r.method == "GET"
                query = parse_qs(urlsplit(r.path).query)
                assert query["c"] == ["2.19"]
                assert query["cur"] == ["USD"]
                assert query["o"][0] in orders
                assert query["e"] == [r.headers["alliance-event-id"]]
                header = r.headers[SIGNATURE_HEADER.lower()]
                stamp = int(header.split(",")[0].removeprefix("t="))
                content = get_content(r.path)
                assert signing.verify(postback["secret"], header, content, now=stamp) == stamp
            fin = hooks.delivered("/fin")[0]
            stamp = int(fin.headers[SIGNATURE_HEADER.lower()].split(",")[0][2:])
            header = fin.headers[SIGNATURE_HEADER.lower()]
            assert parse_event(finance["secret"], header, fin.body, now=stamp).id

            # the delivery log: every delivery delivered, the failed attempts counted
            log = await all_delivered(svc, AFF, aff_key, mine["id"])
            assert len(log) == 6
            assert {d["status"] for d in log} == {"delivered"}
            assert [d["id"] for d in log] == sorted((d["id"] for d in log), reverse=True)
            assert sum(d["attempts"] for d in log) == 6 + sum(
                1 for r in hooks.requests if r.answered == 500 and r.path.startswith("/aff")
            )
            assert all(d["last_status_code"] == 200 for d in log)
            assert all(d["last_latency_ms"] is not None for d in log)
            assert all(d["next_attempt_at"] is None for d in log)
            sent = {
                r.headers["alliance-event-id"]: orjson.loads(r.body)
                for r in hooks.delivered("/aff")
            }
            assert all(d["event"] == sent[d["event_id"]] for d in log)  # the log shows what went
            # every attempt kept: as many as the log counts, the last one each time a 200
            for d in log:
                resp = await svc.commission.get(
                    f"{AFF}/{mine['id']}/deliveries/{d['id']}/attempts", headers=bearer(aff_key)
                )
                assert resp.status_code == 200, resp.text
                tried = resp.json()["items"]
                assert [a["attempt"] for a in tried] == list(range(d["attempts"], 0, -1))
                assert tried[0]["status_code"] == 200
                assert all(a["status_code"] == 500 for a in tried[1:])

            # a replayed storefront event changes nothing: no second delivery
            again = await signed_post(
                svc.tracker, "/v1/events", store, {"events": [refunded(orders[0], "10.00")]}
            )
            assert again.status_code == 202
            await svc.commission.get("/healthz")
            assert len(await deliveries(svc, AFF, aff_key, mine["id"])) == 6


async def test_twenty_failures_in_a_row_disable_and_the_owner_sees_why(
    settings: Settings,
) -> None:
    settings = hook_settings(settings)
    u = uuid.uuid4().hex[:8]
    with receiver(down=True) as hooks:
        async with running(settings) as svc:
            clock = shift_worker_clock(svc)
            store = await new_store(svc, settings, f"s-{u}")
            aff_key = await new_affiliate(svc, settings, f"aff-{u}")
            mine = await register(svc, AFF, aff_key, hooks.url("/aff"), ALL)
            order_id = f"o-{u}"
            visitor = await buyer_clicks(svc, aff_key, store.store_id)
            resp = await signed_post(
                svc.tracker,
                "/v1/events",
                store,
                {"events": [placed(order_id, visitor), completed(order_id)]},
            )
            assert resp.status_code == 202, resp.text
            await eventually(
                lambda: order_view(
                    svc, settings, (store.store_id, order_id), status="completed", payable="2.19"
                )
            )

            async def disabled() -> dict[str, Any] | None:
                got = await svc.commission.get(f"{AFF}/{mine['id']}", headers=bearer(aff_key))
                body: dict[str, Any] = got.json()
                return body if body["status"] == "disabled" else None

            await advance_until(
                svc, clock, lambda: len(hooks.requests) >= 20, timedelta(minutes=15)
            )
            endpoint = await eventually(disabled)
            assert endpoint["disabled_reason"] == (
                "20 consecutive failed deliveries; last: HTTP 500"
            )
            assert endpoint["consecutive_failures"] == 20
            # a disabled endpoint is sent nothing more, however much time passes
            clock.offset += timedelta(hours=5)
            svc.apps["commission"].state.webhook_worker.poke()
            await svc.apps["commission"].state.webhook_worker.drain()
            assert len(hooks.requests) == 20
            # only the order's first event was tried: its second waits behind it
            assert {r.headers["alliance-event-id"] for r in hooks.requests} == {
                orjson.loads(hooks.requests[0].body)["id"]
            }
            listed = await svc.commission.get(AFF, headers=bearer(aff_key))
            assert listed.json()["items"][0]["status"] == "disabled"

            # the receiver is back: the owner re-enables, everything arrives in order
            hooks.down = False
            enabled = await svc.commission.post(
                f"{AFF}/{mine['id']}/enable", headers=bearer(aff_key)
            )
            assert enabled.status_code == 200, enabled.text
            assert enabled.json()["status"] == "active"
            assert enabled.json()["disabled_reason"] is None
            await advance_until(
                svc, clock, lambda: len(hooks.delivered()) == 2, timedelta(seconds=1)
            )
            assert [orjson.loads(r.body)["type"] for r in hooks.delivered()] == [
                "order.attributed",
                "commission.payable",
            ]

            # redelivery: the same event (same id) once more, recorded in the log
            log = await all_delivered(svc, AFF, aff_key, mine["id"])
            payable = next(d for d in log if d["event_type"] == "commission.payable")
            again = await svc.commission.post(
                f"{AFF}/{mine['id']}/deliveries/{payable['id']}/redeliver",
                headers=bearer(aff_key),
            )
            assert again.status_code == 202, again.text
            assert again.json()["status"] == "pending"
            # in the affiliate's audit log: the delivery before (delivered) and after (pending)
            audit = await svc.commission.get(
                "/v1/audit", params={"kind": "delivery.redeliver"}, headers=bearer(aff_key)
            )
            (entry,) = audit.json()["items"]
            assert entry["subject"] == f"endpoint:{mine['id']}/delivery/{payable['id']}"
            assert entry["before"]["status"] == "delivered"
            assert entry["after"]["status"] == "pending"
            enabled_entries = await svc.commission.get(
                "/v1/audit", params={"kind": "endpoint.enable"}, headers=bearer(aff_key)
            )
            (enabled_entry,) = enabled_entries.json()["items"]
            assert enabled_entry["before"]["status"] == "disabled"
            assert enabled_entry["after"]["status"] == "active"
            await advance_until(
                svc, clock, lambda: len(hooks.delivered()) == 3, timedelta(seconds=1)
            )
            assert hooks.event_ids()[2] == payable["event_id"]
            log = await all_delivered(svc, AFF, aff_key, mine["id"])
            again_row = next(d for d in log if d["id"] == payable["id"])
            assert again_row["status"] == "delivered"
            assert again_row["attempts"] == 1  # counted again from the redelivery

            # a rotated secret: both signatures for a day, the new one verifies
            clock.offset = timedelta()
            rotated = await svc.commission.post(
                f"{AFF}/{mine['id']}/rotate-secret", headers=bearer(aff_key)
            )
            assert rotated.status_code == 200, rotated.text
            assert rotated.json()["secret"] != mine["secret"]
            await svc.commission.post(
                f"{AFF}/{mine['id']}/deliveries/{payable['id']}/redeliver",
                headers=bearer(aff_key),
            )
            await advance_until(
                svc, clock, lambda: len(hooks.delivered()) == 4, timedelta(seconds=1)
            )
            last = hooks.delivered()[3]
            header = last.headers[SIGNATURE_HEADER.lower()]
            stamp = int(header.split(",")[0][2:])
            assert header.count("v1=") == 2
            for secret in (rotated.json()["secret"], mine["secret"]):
                assert signing.verify(secret, header, last.body, now=stamp) == stamp


async def test_an_owner_sees_and_changes_only_its_own_endpoints(settings: Settings) -> None:
    u = uuid.uuid4().hex[:8]
    async with running(settings.model_copy(update={"webhook_allow_private": False})) as svc:
        store = await new_store(svc, settings, f"s-{u}", products=())
        other_store = await new_store(svc, settings, f"t-{u}", products=())
        key = await new_affiliate(svc, settings, f"aff-{u}")
        intruder = await new_affiliate(svc, settings, f"bad-{u}")
        fin = await new_finance_user(svc, settings, f"fin-{u}")
        mine = await register(svc, AFF, key, "https://hooks.example.com/a", ["commission.payable"])
        eid = mine["id"]

        listed = await svc.commission.get(AFF, headers=bearer(intruder))
        assert listed.json() == {"items": []}
        for method, path in [
            ("GET", f"{AFF}/{eid}"),
            ("GET", f"{AFF}/{eid}/deliveries"),
            ("POST", f"{AFF}/{eid}/rotate-secret"),
            ("POST", f"{AFF}/{eid}/enable"),
            ("POST", f"{AFF}/{eid}/deliveries/1/redeliver"),
            ("GET", f"{AFF}/{eid}/deliveries/1/attempts"),
            ("DELETE", f"{AFF}/{eid}"),
            ("GET", f"/v1/stores/{store.store_id}/endpoints/{eid}"),
            ("GET", f"/v1/finance/endpoints/{eid}"),
        ]:
            who = fin if "finance" in path else store.api_key if "stores" in path else intruder
            resp = await svc.commission.request(method, path, headers=bearer(who))
            assert resp.status_code == 404, (method, path, resp.text)
            assert resp.json()["error"]["code"] == "not_found"
        # a store may not manage another store's endpoints; an affiliate no finance ones
        resp = await svc.commission.get(
            f"/v1/stores/{store.store_id}/endpoints", headers=other_store.auth
        )
        assert resp.status_code == 403
        assert (
            await svc.commission.get("/v1/finance/endpoints", headers=bearer(key))
        ).status_code == 403
        assert (await svc.commission.get(AFF, headers=admin(settings))).status_code == 403
        assert (await svc.commission.get(AFF)).status_code == 401

        # hostile URLs: a clear 422 with the reason
        for url, method in [
            ("http://127.0.0.1:9/x", "POST"),
            ("http://169.254.169.254/latest/meta-data", "POST"),
            ("http://localhost/x", "POST"),
            ("https://user:pw@hooks.example.com/", "POST"),
            ("file:///etc/passwd", "POST"),
            ("https://hooks.example.com/pb?x={password}", "GET"),
            ("https://{store_id}.example.com/pb", "GET"),
        ]:
            resp = await svc.commission.post(
                AFF,
                json={"url": url, "method": method, "events": ["order.attributed"]},
                headers=bearer(key),
            )
            assert resp.status_code == 422, (url, resp.text)
            assert resp.json()["error"]["code"] == "invalid_endpoint", resp.text
        resp = await svc.commission.post(
            AFF, json={"url": "https://h.example.com/", "events": ["nope"]}, headers=bearer(key)
        )
        assert resp.status_code == 422
        resp = await svc.commission.post(
            AFF, json={"url": "https://h.example.com/", "events": []}, headers=bearer(key)
        )
        assert resp.status_code == 422

        templates = await svc.commission.get(f"{AFF}/templates", headers=bearer(key))
        assert templates.status_code == 200
        assert {m["name"] for m in templates.json()["macros"]} >= {"{order_id}", "{sub_id}"}
        # every event type (program controls' too: docs/program-controls.md)
        assert {e["type"] for e in templates.json()["events"]} == {e.value for e in WebhookEvent}
        assert set(ALL) < {e.value for e in WebhookEvent}

        # the secret is shown once: the list does not carry it
        listed = await svc.commission.get(AFF, headers=bearer(key))
        assert [e["id"] for e in listed.json()["items"]] == [eid]
        assert "secret" not in listed.json()["items"][0]

        deleted = await svc.commission.delete(f"{AFF}/{eid}", headers=bearer(key))
        assert deleted.status_code == 204
        assert (await svc.commission.get(f"{AFF}/{eid}", headers=bearer(key))).status_code == 404
        assert (await svc.commission.get(AFF, headers=bearer(key))).json() == {"items": []}


async def test_the_worker_never_sends_to_a_private_address_when_they_are_refused(
    settings: Settings,
) -> None:
    """An endpoint registered while private targets were allowed (or a name that resolves to
    one later) is refused at delivery time: the attempt fails without a request."""
    u = uuid.uuid4().hex[:8]
    with receiver() as hooks:
        async with running(hook_settings(settings)) as svc:
            store = await new_store(svc, settings, f"s-{u}")
            aff_key = await new_affiliate(svc, settings, f"aff-{u}")
            mine = await register(svc, AFF, aff_key, hooks.url("/aff"), ["order.attributed"])
            worker = svc.apps["commission"].state.webhook_worker
            worker.allow_private = False
            order_id = f"o-{u}"
            visitor = await buyer_clicks(svc, aff_key, store.store_id)
            await signed_post(
                svc.tracker, "/v1/events", store, {"events": [placed(order_id, visitor)]}
            )

            async def refused() -> dict[str, Any] | None:
                log = await deliveries(svc, AFF, aff_key, mine["id"])
                return log[0] if log and log[0]["attempts"] >= 1 else None

            row = await eventually(refused)
            assert row["status"] == "pending"
            assert row["last_status_code"] is None
            assert row["last_error"].startswith("refused: 127.0.0.1 resolves to a private")
            await asyncio.sleep(0.2)
            assert hooks.requests == []
