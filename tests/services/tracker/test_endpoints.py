"""The tracker's HTTP edge against the real broker: links, clicks, signed events."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.config import Settings
from shared.events import Topic
from tests.integration.harness import (
    BROWSER_UA,
    Services,
    Store,
    new_affiliate,
    new_link,
    new_store,
    running,
    signed_post,
)
from tests.integration.test_pipeline import placed
from tests.integration.topics import read_topic

pytestmark = pytest.mark.integration


def uid() -> str:
    return uuid.uuid4().hex[:8]


async def clicks_on_topic(settings: Settings) -> list[dict[str, Any]]:
    return await read_topic(settings.kafka, settings.topic(Topic.CLICKS))


async def ready_link(svc: Services, settings: Settings, u: str) -> tuple[Store, dict[str, Any]]:
    store = await new_store(svc, settings, f"s-{u}", products=("p1",))
    key = await new_affiliate(svc, settings, f"aff-{u}")
    return store, await new_link(svc, key, store.store_id, "p1")


class TestLinksAndClicks:
    async def test_click_lands_on_the_topic_with_affiliate_store_product_visitor_and_time(
        self, settings: Settings
    ) -> None:
        u = uid()
        async with running(settings) as svc:
            store, link = await ready_link(svc, settings, u)
            before = time.time()
            first = await svc.tracker.get(f"/r/{link['code']}?utm=x")
            second = await svc.tracker.get(f"/r/{link['code']}")  # the cookie is sent back
            after = time.time()
        assert first.status_code == second.status_code == 302
        q1 = parse_qs(urlsplit(first.headers["location"]).query)
        q2 = parse_qs(urlsplit(second.headers["location"]).query)
        assert q1["alliance_vid"] == q2["alliance_vid"], "the visitor cookie is reused"
        assert "HttpOnly" in first.headers["set-cookie"]
        assert "samesite=lax" in first.headers["set-cookie"].lower()
        clicks = {c["event_id"]: c for c in await clicks_on_topic(settings)}
        assert set(clicks) == {q1["alliance_click"][0], q2["alliance_click"][0]}
        click = clicks[q1["alliance_click"][0]]
        assert (click["affiliate_id"], click["store_id"], click["product_id"]) == (
            f"aff-{u}",
            store.store_id,
            "p1",
        )
        assert click["visitor_id"] == q1["alliance_vid"][0]
        assert click["suspicious"] is False
        from datetime import datetime

        at = datetime.fromisoformat(click["occurred_at"].replace("Z", "+00:00")).timestamp()
        assert before - 1 <= at <= after + 1

    async def test_existing_query_of_the_landing_url_is_kept(self, settings: Settings) -> None:
        from services.tracker.service import append_query

        url = append_query("https://shop.example/item/p1?color=red&x=", {"alliance_vid": "v1"})
        assert url == "https://shop.example/item/p1?color=red&x=&alliance_vid=v1"

    async def test_tampered_or_unknown_code_is_404_and_writes_nothing(
        self, settings: Settings
    ) -> None:
        u = uid()
        async with running(settings) as svc:
            _, link = await ready_link(svc, settings, u)
            code = str(link["code"])
            kid, payload, tag = code.split(".")
            forged_payload = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
            for bad in (
                f"{kid}.{forged_payload}.{tag}",
                code[:-1] + ("x" if code[-1] != "x" else "y"),
                "nope",
            ):
                assert (await svc.tracker.get(f"/r/{bad}")).status_code == 404
        assert await clicks_on_topic(settings) == []

    async def test_head_and_prefetch_redirect_without_a_click(self, settings: Settings) -> None:
        async with running(settings) as svc:
            _, link = await ready_link(svc, settings, uid())
            head = await svc.tracker.head(f"/r/{link['code']}")
            prefetch = await svc.tracker.get(
                f"/r/{link['code']}", headers={"Sec-Purpose": "prefetch"}
            )
        assert head.status_code == prefetch.status_code == 302
        assert await clicks_on_topic(settings) == []

    async def test_bots_and_previews_are_recorded_but_marked(self, settings: Settings) -> None:
        async with running(settings) as svc:
            _, link = await ready_link(svc, settings, uid())
            for ua in (
                "facebookexternalhit/1.1",
                "Twitterbot/1.0",
                "Slackbot-LinkExpanding 1.0",
                "",
            ):
                resp = await svc.tracker.get(f"/r/{link['code']}", headers={"User-Agent": ua})
                assert resp.status_code == 302
        clicks = await clicks_on_topic(settings)
        assert len(clicks) == 4
        assert {(c["suspicious"], c["suspicious_reason"]) for c in clicks} == {(True, "bot")}

    async def test_a_flood_from_one_visitor_is_marked_after_n_clicks(
        self, settings: Settings
    ) -> None:
        s = settings.model_copy(update={"flood_clicks_per_minute": 3})
        async with running(s) as svc:
            _, link = await ready_link(svc, s, uid())
            for _ in range(5):
                await svc.tracker.get(f"/r/{link['code']}")
        flags = sorted((c["received_at"], c["suspicious_reason"]) for c in await clicks_on_topic(s))
        assert [reason for _, reason in flags] == [None, None, None, "flood", "flood"]

    async def test_the_affiliate_clicking_its_own_link_is_marked(self, settings: Settings) -> None:
        async with running(settings) as svc:
            _, link = await ready_link(svc, settings, uid())
            transport = httpx.ASGITransport(app=svc.apps["tracker"], client=("198.51.100.7", 40001))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://t", headers={"User-Agent": BROWSER_UA}
            ) as own:
                await own.get(f"/r/{link['code']}")
        (click,) = await clicks_on_topic(settings)
        assert click["suspicious_reason"] == "self_referral"

    async def test_a_link_for_an_unknown_store_or_product_an_outsider_or_no_key_is_refused(
        self, settings: Settings
    ) -> None:
        u = uid()
        async with running(settings) as svc:
            store, _ = await ready_link(svc, settings, u)
            key = await new_affiliate(svc, settings, f"aff2-{u}")
            outsider = await new_store(svc, settings, f"out-{u}", products=(), join=False)
            auth = {"Authorization": f"Bearer {key}"}
            unknown_store = await svc.tracker.post(
                "/v1/links", json={"store_id": "nope"}, headers=auth
            )
            unknown_product = await svc.tracker.post(
                "/v1/links", json={"store_id": store.store_id, "product_id": "nope"}, headers=auth
            )
            not_in_program = await svc.tracker.post(
                "/v1/links", json={"store_id": outsider.store_id}, headers=auth
            )
            no_key = await svc.tracker.post("/v1/links", json={"store_id": store.store_id})
        assert (unknown_store.status_code, unknown_store.json()["error"]["code"]) == (
            404,
            "store_not_found",
        )
        assert (unknown_product.status_code, unknown_product.json()["error"]["code"]) == (
            404,
            "product_not_found",
        )
        assert (not_in_program.status_code, not_in_program.json()["error"]["code"]) == (
            409,
            "store_not_in_program",
        )
        assert no_key.status_code == 401

    async def test_a_server_click_keeps_its_past_time_and_one_ahead_is_422(
        self, settings: Settings
    ) -> None:
        from datetime import UTC, datetime, timedelta

        async with running(settings) as svc:
            store, link = await ready_link(svc, settings, uid())
            past = (datetime.now(UTC) - timedelta(days=3)).isoformat()
            future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
            body = {
                "event_id": "imp-1",
                "code": link["code"],
                "visitor_id": "v-imp",
                "occurred_at": past,
                "user_agent": BROWSER_UA,
            }
            ok = await signed_post(svc.tracker, "/v1/clicks", store, body)
            late = await signed_post(
                svc.tracker, "/v1/clicks", store, body | {"occurred_at": future}
            )
        assert ok.status_code == 202, ok.text
        assert late.status_code == 422
        (click,) = await clicks_on_topic(settings)
        assert click["event_id"] == f"s2s:{store.store_id}:imp-1"
        assert click["occurred_at"].startswith(past[:19])


class TestStorefrontEvents:
    async def test_forged_stale_and_unsigned_posts_are_401(self, settings: Settings) -> None:
        u = uid()
        async with running(settings) as svc:
            store = await new_store(svc, settings, f"s-{u}", products=())
            batch = {"events": [placed(f"o-{u}", "v1")]}
            forged = await signed_post(
                svc.tracker, "/v1/events", Store(store.store_id, "", "whsec_wrong"), batch
            )
            stale = await signed_post(
                svc.tracker, "/v1/events", store, batch, at=int(time.time()) - 301
            )
            unsigned = await svc.tracker.post(
                "/v1/events", json=batch, headers={"X-Alliance-Store": store.store_id}
            )
            other_store = await signed_post(
                svc.tracker, "/v1/events", Store("nobody", "", store.secret), batch
            )
        for resp in (forged, stale, unsigned, other_store):
            assert resp.status_code == 401, resp.text
            assert resp.json()["error"]["code"] == "unauthorized"
        assert stale.json()["error"]["reason"] == "signature stale"
        assert await read_topic(settings.kafka, settings.topic(Topic.ORDERS)) == []

    @pytest.mark.parametrize("path", ["/v1/events", "/v1/clicks"])
    async def test_a_non_ascii_or_non_hex_signature_is_a_401_not_a_500(
        self, settings: Settings, path: str
    ) -> None:
        u = uid()
        async with running(settings) as svc:
            store = await new_store(svc, settings, f"s-{u}", products=())
            now = int(time.time())
            answers = [
                await svc.tracker.post(
                    path,
                    content=b'{"events": []}',
                    headers={
                        b"X-Alliance-Store": store.store_id.encode(),
                        b"X-Alliance-Signature": signature,
                        b"Content-Type": b"application/json",
                    },
                )
                for signature in (
                    f"t={now},v1=\u00e9".encode("latin-1"),
                    f"t={now},v1=\u00e9".encode(),
                    f"t={now},v1={'z' * 64}".encode(),
                    f"t={now},v1={'0' * 63}\u00e9".encode(),
                    f"t={'9' * 5000},v1={'0' * 64}".encode(),
                    f"t=\u0663,v1={'0' * 64}".encode(),
                )
            ]
        for resp in answers:
            assert resp.status_code == 401, resp.text
            assert resp.json()["error"]["code"] == "unauthorized"

    async def test_one_bad_event_keeps_its_valid_neighbours(self, settings: Settings) -> None:
        u = uid()
        async with running(settings) as svc:
            store = await new_store(svc, settings, f"s-{u}", products=())
            bad = placed(f"o-bad-{u}", "v1") | {"currency": "usd"}
            floaty = placed(f"o-float-{u}", "v1")
            floaty["items"][0]["unit_price"] = 20.5
            resp = await signed_post(
                svc.tracker,
                "/v1/events",
                store,
                {"events": [placed(f"o-1-{u}", "v1"), bad, floaty, "x", placed(f"o-2-{u}", "v2")]},
            )
            all_bad = await signed_post(svc.tracker, "/v1/events", store, {"events": [bad]})
        assert resp.status_code == 202
        body = resp.json()
        assert (body["accepted"], body["rejected"]) == (2, 3)
        assert [r["status"] for r in body["results"]] == [
            "accepted",
            "rejected",
            "rejected",
            "rejected",
            "accepted",
        ]
        assert body["results"][1]["errors"][0]["loc"][-1] == "currency"
        assert "never floats" in body["results"][2]["errors"][0]["msg"]
        assert all_bad.status_code == 422
        on_topic = {
            e["order_id"] for e in await read_topic(settings.kafka, settings.topic(Topic.ORDERS))
        }
        assert on_topic == {f"o-1-{u}", f"o-2-{u}"}

    async def test_duplicates_are_reported_and_not_resent(self, settings: Settings) -> None:
        u = uid()
        async with running(settings) as svc:
            store = await new_store(svc, settings, f"s-{u}", products=())
            event = placed(f"o-{u}", "v1")
            first = await signed_post(svc.tracker, "/v1/events", store, {"events": [event, event]})
            again = await signed_post(svc.tracker, "/v1/events", store, {"events": [event]})
        assert (first.json()["accepted"], first.json()["duplicates"]) == (1, 1)
        assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1)
        assert len(await read_topic(settings.kafka, settings.topic(Topic.ORDERS))) == 1

    async def test_a_restarted_tracker_still_knows_recent_event_ids(
        self, settings: Settings
    ) -> None:
        u = uid()
        event = placed(f"o-{u}", "v1")
        async with running(settings) as svc:
            store = await new_store(svc, settings, f"s-{u}", products=())
            assert (
                await signed_post(svc.tracker, "/v1/events", store, {"events": [event]})
            ).json()["accepted"] == 1
        async with running(settings) as svc:
            again = await signed_post(svc.tracker, "/v1/events", store, {"events": [event]})
        assert again.json()["duplicates"] == 1

    async def test_rotated_secret_and_the_previous_one_both_verify(
        self, settings: Settings
    ) -> None:
        from tests.integration.harness import admin, eventually

        u = uid()
        async with running(settings) as svc:
            store = await new_store(svc, settings, f"s-{u}", products=())
            rotated = await svc.commission.post(
                f"/v1/admin/stores/{store.store_id}/rotate-secret", headers=admin(settings)
            )
            assert rotated.status_code == 200
            new = Store(store.store_id, store.api_key, rotated.json()["webhook_secret"])

            async def accepted_with_new() -> bool | None:
                resp = await signed_post(
                    svc.tracker, "/v1/events", new, {"events": [placed(f"o-new-{u}", "v")]}
                )
                return True if resp.status_code == 202 else None

            await eventually(accepted_with_new)
            old = await signed_post(
                svc.tracker, "/v1/events", store, {"events": [placed(f"o-old-{u}", "v")]}
            )
        assert old.status_code == 202

    async def test_oversized_body_is_413(self, settings: Settings) -> None:
        u = uid()
        async with running(settings) as svc:
            store = await new_store(svc, settings, f"s-{u}", products=())
            many = {"events": [placed(f"o-{u}-{n}", "v") for n in range(1001)]}
            resp = await signed_post(svc.tracker, "/v1/events", store, many)
        assert resp.status_code == 413


async def test_openapi_documents_every_endpoint_with_examples(settings: Settings) -> None:
    async with running(settings) as svc:
        spec = (await svc.tracker.get("/openapi.json")).json()
        docs = await svc.tracker.get("/docs")
    assert docs.status_code == 200
    # the public endpoints at least (the spec also documents health, readiness and metrics)
    assert {"/v1/links", "/r/{code}", "/v1/clicks", "/v1/events"} <= set(spec["paths"])
    text = str(spec)
    assert "examples" in text


async def test_fast_path_and_documented_route_answer_alike(settings: Settings) -> None:
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

    from shared.visitors import VisitorCookies

    same = f"alliance_vid={VisitorCookies(settings.secret_key).seal('v-same')}"
    async with running(settings) as svc:
        _, link = await ready_link(svc, settings, uid())
        app = svc.apps["tracker"]

        async def documented(scope: Scope, receive: Receive, send: Send) -> None:
            await FastAPI.__call__(app, scope, receive, send)  # skips the fast path

        transport = httpx.ASGITransport(app=documented)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://t", headers={"User-Agent": BROWSER_UA}
        ) as slow:
            via_route = await slow.get(f"/r/{link['code']}", headers={"Cookie": same})
            missing = await slow.get("/r/nope")
        via_fast = await svc.tracker.get(
            f"/r/{link['code']}",
            headers={"X-Forwarded-Proto": "https", "Cookie": same, "X-Request-Id": "click-1"},
        )
    assert via_fast.headers["x-request-id"] == "click-1"  # a sane id is kept (RequestIds)
    for resp in (via_route, via_fast):
        assert resp.status_code == 302
        # what the middleware gives every answer, the fast path gives its own too
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-request-id"]
        assert "alliance_vid=v-same" in resp.headers["location"]
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith(same + ";")
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Secure" in cookie  # TLS, directly or behind the proxy
    assert missing.status_code == 404
    assert len(await clicks_on_topic(settings)) == 2
