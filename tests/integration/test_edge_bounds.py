"""The tracker's edge against hostile input, through HTTP on the real broker: forged visitor
cookies, odd bytes, NUL characters, out-of-bounds times and amounts, the longest legal ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from shared.config import Settings
from shared.events import Topic
from shared.kafka import partitions_of
from tests.integration import harness
from tests.integration.test_pipeline import placed
from tests.integration.topics import read_topic

pytestmark = pytest.mark.integration


def iso(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def cookie_of(resp: httpx.Response) -> str:
    return resp.headers["set-cookie"].split(";")[0].removeprefix("alliance_vid=")


async def keyed(settings: Settings, topic: Topic) -> list[tuple[str, dict[str, Any]]]:
    """``(key, value)`` of every message on one of the test's topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, [settings.topic(topic)])
        consumer.assign(tps)
        first, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, first[tp])
        out: list[tuple[str, dict[str, Any]]] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [(r.key.decode(), orjson.loads(r.value)) for r in records]
        return out
    finally:
        await consumer.stop()


def documented_route(app: FastAPI) -> httpx.AsyncClient:
    """A client of the FastAPI routes, without the redirect's fast path."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi),
        base_url="http://tracker.test",
        headers={"User-Agent": harness.BROWSER_UA},
    )


async def ready_link(svc: harness.Services, settings: Settings) -> tuple[harness.Store, str]:
    u = harness.uid()
    store = await harness.new_store(svc, settings, f"s-{u}", products=("p1",))
    key = await harness.new_affiliate(svc, settings, f"aff-{u}")
    return store, str((await harness.new_link(svc, key, store.store_id, "p1"))["code"])


class TestVisitorCookie:
    async def test_a_forged_visitor_cookie_is_ignored(self, settings: Settings) -> None:
        async with harness.running(settings) as svc:
            _, code = await ready_link(svc, settings)
            first = await svc.tracker.get(f"/r/{code}")
            victim, sealed = harness.visitor_of(first), cookie_of(first)
            tag = sealed.rpartition(".")[2]
            forged_tag = tag[:-2] + ("AA" if tag[-2:] != "AA" else "BB")
            answers: dict[str, list[httpx.Response]] = {}
            async with documented_route(svc.apps["tracker"]) as route:
                for client in (svc.tracker, route):
                    for name, value in (
                        ("genuine", sealed),
                        ("plain", victim),  # read off the landing URL
                        ("forged", f"{victim}.{forged_tag}"),
                        ("foreign", f"v-other.{tag}"),
                    ):
                        client.cookies.clear()
                        answers.setdefault(name, []).append(
                            await client.get(
                                f"/r/{code}", headers={"Cookie": f"alliance_vid={value}"}
                            )
                        )
        assert cookie_of(first) == f"{victim}.{tag}"
        for resp in answers["genuine"]:
            assert resp.status_code == 302
            assert harness.visitor_of(resp) == victim
        others = [r for name in ("plain", "forged", "foreign") for r in answers[name]]
        for resp in others:
            assert resp.status_code == 302
            assert harness.visitor_of(resp) != victim, "a new visitor is minted"
            assert cookie_of(resp).startswith(harness.visitor_of(resp) + ".")
        minted = {harness.visitor_of(r) for r in others}
        assert len(minted) == len(others)
        clicks = await read_topic(settings.kafka, settings.topic(Topic.CLICKS))
        assert sum(c["visitor_id"] == victim for c in clicks) == 1 + len(answers["genuine"])

    async def test_a_malformed_or_non_ascii_cookie_is_ignored_never_an_error(
        self, settings: Settings
    ) -> None:
        async with harness.running(settings) as svc:
            _, code = await ready_link(svc, settings)
            async with documented_route(svc.apps["tracker"]) as route:
                for client in (svc.tracker, route):
                    for raw in (
                        b"alliance_vid=\xc3\xa9.abc",
                        b"alliance_vid=\xff\xfe",
                        b"alliance_vid=" + b"v" * 5000,
                        b"alliance_vid=v-1.",
                        b"alliance_vid=.",
                        b'alliance_vid="quoted"',
                        b"alliance_vid",
                    ):
                        client.cookies.clear()
                        resp = await client.get(f"/r/{code}", headers={b"Cookie": raw})
                        assert resp.status_code == 302, raw
                        assert len(harness.visitor_of(resp)) == 32  # minted


class TestOddBytes:
    async def test_a_link_code_with_non_ascii_bytes_is_404(self, settings: Settings) -> None:
        async with harness.running(settings) as svc:
            _, code = await ready_link(svc, settings)
            kid, payload, tag = code.split(".")
            async with documented_route(svc.apps["tracker"]) as route:
                for client in (svc.tracker, route):
                    for path in (
                        "/r/%C3%A9",
                        "/r/%FF%FE",
                        f"/r/{kid}.{payload}.{tag[:-1]}%C3%A9",
                        f"/r/{kid}.{payload}%FF.{tag}",
                        "/r/" + "A" * 3000,
                    ):
                        resp = await client.get(path)
                        assert resp.status_code == 404, path
                        assert resp.json()["error"]["code"] == "not_found"
        assert await read_topic(settings.kafka, settings.topic(Topic.CLICKS)) == []

    async def test_a_nul_in_the_path_or_query_is_422_on_every_service(
        self, settings: Settings
    ) -> None:
        async with harness.running(settings) as svc:
            _, code = await ready_link(svc, settings)
            async with documented_route(svc.apps["tracker"]) as route:
                answers = [
                    await svc.tracker.get(f"/r/{code}%00"),  # the fast path
                    await svc.tracker.get(f"/r/{code}?x=%00"),
                    await route.get(f"/r/{code}%00"),  # the documented route
                    await svc.tracker.post("/v1/links?store_id=%00", json={}),
                    await svc.tracker.get("/metrics?%00"),
                    await svc.attribution.get("/healthz?probe=%00"),
                    await svc.commission.get(
                        "/v1/ledger?store_id=s%00", headers=harness.admin(settings)
                    ),
                    await svc.commission.get(
                        "/v1/stores/s%00/orders/o-1", headers=harness.admin(settings)
                    ),
                ]
        for resp in answers:
            assert resp.status_code == 422, resp.request.url
            assert resp.json()["error"]["code"] == "nul_character"
        assert await read_topic(settings.kafka, settings.topic(Topic.CLICKS)) == []


class TestUserAgent:
    async def test_the_user_agent_is_cut_to_512_characters_before_matching(
        self, settings: Settings
    ) -> None:
        hidden = harness.BROWSER_UA + " " * (600 - len(harness.BROWSER_UA)) + "Googlebot/2.1"
        async with harness.running(settings) as svc:
            _, code = await ready_link(svc, settings)
            async with documented_route(svc.apps["tracker"]) as route:
                for client in (svc.tracker, route):
                    for ua in (hidden, "Googlebot/2.1 " + "x" * 20_000):
                        resp = await client.get(f"/r/{code}", headers={"User-Agent": ua})
                        assert resp.status_code == 302
        clicks = await read_topic(settings.kafka, settings.topic(Topic.CLICKS))
        assert sorted(str(c["suspicious_reason"]) for c in clicks) == ["None", "None", "bot", "bot"]
        assert {len(c["user_agent"]) for c in clicks} == {512}


class TestEventBounds:
    async def test_a_mixed_batch_gets_a_code_per_event_and_the_accepted_reach_kafka(
        self, settings: Settings
    ) -> None:
        u = harness.uid()
        line = {"product_id": "p1", "quantity": 1, "unit_price": "10.00"}

        def order(n: str, **fields: Any) -> dict[str, Any]:
            return placed(f"o-{n}-{u}", "v-1") | {"received_at": "2000-01-01T00:00:00Z"} | fields

        refund = {
            "event_id": f"r-ok-{u}",
            "type": "order_refunded",
            "occurred_at": iso(),
            "order_id": f"o-ok-{u}",
            "refund_id": "rf-1",
            "currency": "USD",
            "items": [{"product_id": "p1", "amount": "1.50"}],
        }
        batch: list[tuple[dict[str, Any], str | None]] = [
            (order("ok"), None),
            (order("old", occurred_at=iso(-timedelta(days=91))), "occurred_too_long_ago"),
            (order("ahead", occurred_at=iso(timedelta(minutes=10))), "occurred_in_future"),
            (order("range", occurred_at="0001-01-01T00:00:00+01:00"), "datetime_out_of_range"),
            (order("nul", items=[line | {"title": "Lamp\u0000"}]), "nul_character"),
            (order("gold", currency="XAU"), "currency_unknown"),
            (order("many", items=[line] * 501), "too_long"),
            (
                order("huge", items=[line | {"quantity": 1_000_000, "unit_price": "1000001"}]),
                "order_total_out_of_range",
            ),
            (order("float", items=[line | {"unit_price": 10.5}]), "value_error"),
            (order("other", store_id="someone-else"), "store_mismatch"),
            (
                {
                    "event_id": f"c-ok-{u}",
                    "type": "order_completed",
                    "occurred_at": iso(),
                    "order_id": f"o-ok-{u}",
                },
                None,
            ),
            (
                refund
                | {"event_id": f"r-fine-{u}", "items": [{"product_id": "p1", "amount": "1.505"}]},
                "amount_too_precise",
            ),
            (refund, None),
        ]
        async with harness.running(settings) as svc:
            store = await harness.new_store(svc, settings, f"s-{u}", products=())
            before = datetime.now(UTC)
            resp = await harness.signed_post(
                svc.tracker, "/v1/events", store, {"events": [e for e, _ in batch]}
            )
            after = datetime.now(UTC)
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert [r["code"] for r in body["results"]] == [code for _, code in batch]
        assert [r["status"] for r in body["results"]] == [
            "accepted" if code is None else "rejected" for _, code in batch
        ]
        assert (body["accepted"], body["rejected"]) == (3, len(batch) - 3)
        on_topic = await keyed(settings, Topic.ORDERS)
        assert sorted(v["event_id"] for _, v in on_topic) == sorted(
            e["event_id"] for e, code in batch if code is None
        )
        for key, value in on_topic:
            stamped = datetime.fromisoformat(value["received_at"])
            assert before <= stamped <= after, "the tracker's arrival time, not the client's"
            want = "v-1" if value["type"] == "order_placed" else f"{store.store_id}:o-ok-{u}"
            assert key == want

    async def test_server_clicks_obey_the_same_bounds(self, settings: Settings) -> None:
        async with harness.running(settings) as svc:
            store, code = await ready_link(svc, settings)
            click = {
                "event_id": "imp-1",
                "code": code,
                "visitor_id": "v-imp",
                "occurred_at": iso(-timedelta(days=89)),
                "user_agent": harness.BROWSER_UA,
            }
            ok = await harness.signed_post(svc.tracker, "/v1/clicks", store, click)
            answers = {
                name: await harness.signed_post(svc.tracker, "/v1/clicks", store, click | change)
                for name, change in {
                    "occurred_too_long_ago": {"occurred_at": iso(-timedelta(days=91))},
                    "occurred_in_future": {"occurred_at": iso(timedelta(minutes=10))},
                    "out_of_range": {"occurred_at": "9999-12-31T23:59:59-23:59"},
                    "nul": {"user_agent": "Mozilla\u0000"},
                    "non_ascii_code": {"code": code + "é"},
                }.items()
            }
        assert ok.status_code == 202, ok.text
        for name in ("occurred_too_long_ago", "occurred_in_future"):
            assert answers[name].status_code == 422
            assert answers[name].json()["error"]["code"] == name
        for name in ("out_of_range", "nul"):
            assert answers[name].status_code == 422
            assert answers[name].json()["error"]["code"] == "invalid_click"
        assert answers["non_ascii_code"].status_code == 404
        clicks = await read_topic(settings.kafka, settings.topic(Topic.CLICKS))
        assert [c["event_id"] for c in clicks] == [f"s2s:{store.store_id}:imp-1"]


class TestLongestIds:
    async def test_the_longest_legal_ids_pass_through_the_tracker(self, settings: Settings) -> None:
        """64 characters each (the identifier budget): the store, affiliate, product, event,
        order, refund and visitor ids, and the click id derived from two of them."""

        def longest(prefix: str) -> str:
            return (prefix + "-" + uuid.uuid4().hex * 2)[:64]

        store_id, affiliate_id, product_id = longest("s"), longest("a"), longest("p")
        order_id, visitor_id = longest("o"), longest("v")
        async with harness.running(settings) as svc:
            # a 64-character store id is too long for a host name: one landing host for all
            store = await harness.new_store(
                svc,
                settings,
                store_id,
                products=(),
                landing="https://shop.example/item/{product_id}",
            )
            product = {
                "event_id": longest("e"),
                "type": "product_upserted",
                "occurred_at": iso(),
                "product_id": product_id,
                "title": "Lamp",
                "price": "10.00",
                "currency": "USD",
            }
            catalogued = await harness.signed_post(
                svc.tracker, "/v1/events", store, {"events": [product]}
            )
            assert catalogued.json()["accepted"] == 1, catalogued.text
            key = await harness.new_affiliate(svc, settings, affiliate_id)
            code = str((await harness.new_link(svc, key, store_id, product_id))["code"])
            redirect = await svc.tracker.get(f"/r/{code}")
            click_event = longest("c")
            s2s = await harness.signed_post(
                svc.tracker,
                "/v1/clicks",
                store,
                {
                    "event_id": click_event,
                    "code": code,
                    "visitor_id": visitor_id,
                    "occurred_at": iso(),
                    "user_agent": harness.BROWSER_UA,
                },
            )
            placed_event = placed(order_id, visitor_id) | {"event_id": longest("e")}
            placed_event["items"][0]["product_id"] = product_id
            refund = {
                "event_id": longest("e"),
                "type": "order_refunded",
                "occurred_at": iso(),
                "order_id": order_id,
                "refund_id": longest("r"),
                "items": [{"product_id": product_id, "amount": "1.00"}],
            }
            done = {
                "event_id": longest("e"),
                "type": "order_completed",
                "occurred_at": iso(),
                "order_id": order_id,
            }
            events = await harness.signed_post(
                svc.tracker, "/v1/events", store, {"events": [placed_event, done, refund]}
            )

            # ... and on through attribution and commission into the ledger
            async def settled() -> dict[str, Any] | None:
                resp = await svc.commission.get(
                    f"/v1/stores/{store_id}/orders/{order_id}", headers=harness.admin(settings)
                )
                view: dict[str, Any] = resp.json()
                ok = resp.status_code == 200 and view["reversed"] != "0.00"
                return view if ok and view["status"] == "completed" else None

            view = await harness.eventually(settled)
            ledger = await harness.ledger_lines(svc.commission, settings)
            keys = {line["key"] for line in ledger if line["order_id"] == order_id}
        assert view["affiliate_id"] == affiliate_id
        assert view["click_id"] == f"s2s:{store_id}:{click_event}"
        assert keys == {
            f"commission:{store_id}:{order_id}",
            f"reversal:{store_id}:{order_id}/{refund['refund_id']}",
        }
        assert redirect.status_code == 302
        assert s2s.status_code == 202, s2s.text
        click_id = f"s2s:{store_id}:{click_event}"
        assert s2s.json()["click_id"] == click_id
        assert len(click_id) == 133
        assert events.status_code == 202, events.text
        assert events.json()["accepted"] == 3, events.text
        clicks = await read_topic(settings.kafka, settings.topic(Topic.CLICKS))
        assert click_id in {c["event_id"] for c in clicks}
        assert {(c["store_id"], c["affiliate_id"], c["product_id"]) for c in clicks} == {
            (store_id, affiliate_id, product_id)
        }
        orders = await keyed(settings, Topic.ORDERS)
        assert sorted(k for k, _ in orders) == sorted(
            [visitor_id, f"{store_id}:{order_id}", f"{store_id}:{order_id}"]
        )
