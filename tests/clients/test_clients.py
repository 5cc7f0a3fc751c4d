"""The clients over a fake transport: what goes on the wire (routes, credentials, signed
bodies) and how error answers become exceptions carrying the API's error body."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from alliance_client import (
    AffiliateClient,
    ApiError,
    Conflict,
    FinanceClient,
    InvalidRequest,
    NotFound,
    RateLimited,
    StoreClient,
    StorefrontClient,
    Unauthorized,
)
from alliance_client.signing import SIGNATURE_HEADER, STORE_HEADER
from shared.secrets import verify_signature

Handler = Callable[[httpx.Request], httpx.Response]


def fake(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://api.test")


def error(status: int, code: str, message: str, **details: object) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **details}})


class TestStorefront:
    async def test_events_are_posted_as_signed_and_verified_by_the_trackers_check(self) -> None:
        seen: list[httpx.Request] = []

        def tracker(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            problem = verify_signature(
                ["whsec_x"], request.headers[SIGNATURE_HEADER], request.content, 1_767_000_000
            )
            if problem:
                return error(401, "unauthorized", f"signature {problem}")
            count = len(json.loads(request.content)["events"])
            results = [
                {"index": i, "event_id": f"e{i}", "status": "accepted"} for i in range(count)
            ]
            body = {"accepted": count, "duplicates": 0, "rejected": 0, "results": results}
            return httpx.Response(202, json=body)

        store = StorefrontClient("s1", "whsec_x", fake(tracker), clock=lambda: 1_767_000_000)
        events = [
            {
                "event_id": "e0",
                "type": "order_placed",
                "occurred_at": datetime(2026, 3, 1, 12, tzinfo=UTC),
                "order_id": "o-1",
                "visitor_id": "v-1",
                "currency": "USD",
                "items": [{"product_id": "p1", "quantity": 1, "unit_price": Decimal("9.90")}],
            }
        ]
        answer = await store.post_events(events)
        assert answer.accepted == 1
        assert answer.results[0].status == "accepted"
        sent = seen[0]
        assert sent.url.path == "/v1/events"
        assert sent.headers[STORE_HEADER] == "s1"
        placed = json.loads(sent.content)["events"][0]
        assert placed["occurred_at"] == "2026-03-01T12:00:00Z"
        assert placed["items"][0]["unit_price"] == "9.90"  # never a float

        stale = StorefrontClient("s1", "whsec_x", fake(tracker), clock=lambda: 1_766_000_000)
        with pytest.raises(Unauthorized) as refused:
            await stale.post_events(events)
        assert refused.value.code == "unauthorized"
        assert refused.value.message == "signature stale"
        other = StorefrontClient("s1", "whsec_y", fake(tracker), clock=lambda: 1_767_000_000)
        with pytest.raises(Unauthorized, match="signature mismatch"):
            await other.post_events(events)

    async def test_a_server_click_is_signed_too(self) -> None:
        def tracker(request: httpx.Request) -> httpx.Response:
            header = request.headers[SIGNATURE_HEADER]
            assert verify_signature(["sec"], header, request.content, 1_767_000_000) is None
            click = json.loads(request.content)
            assert click == {
                "event_id": "c-1",
                "code": "abc",
                "visitor_id": "v-1",
                "occurred_at": "2026-03-01T12:00:00Z",
                "ip": None,
                "user_agent": None,
            }
            body = {"click_id": "s2s:s1:c-1", "suspicious": False, "suspicious_reason": None}
            return httpx.Response(202, json=body)

        store = StorefrontClient("s1", "sec", fake(tracker), clock=lambda: 1_767_000_000)
        accepted = await store.post_click(
            event_id="c-1",
            code="abc",
            visitor_id="v-1",
            occurred_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        )
        assert accepted.click_id == "s2s:s1:c-1"


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "kind"),
        [(404, NotFound), (409, Conflict), (422, InvalidRequest), (418, ApiError)],
    )
    async def test_each_status_has_its_exception_with_the_error_body(
        self, status: int, kind: type[ApiError]
    ) -> None:
        def commission(request: httpx.Request) -> httpx.Response:
            return error(status, "exit_too_early", "not yet", exit_allowed_at="2026-04-01")

        store = StoreClient("s 1/x", "als_k", fake(commission))
        with pytest.raises(kind) as raised:
            await store.exit()
        exc = raised.value
        assert type(exc) is kind
        assert (exc.status_code, exc.code, exc.message) == (status, "exit_too_early", "not yet")
        assert exc.details == {"exit_allowed_at": "2026-04-01"}
        assert exc.body == {
            "error": {
                "code": "exit_too_early",
                "message": "not yet",
                "exit_allowed_at": "2026-04-01",
            }
        }
        assert "/v1/stores/s%201%2Fx/program/exit" in exc.url  # path values are encoded

    async def test_rate_limited_says_when_to_retry(self) -> None:
        def commission(request: httpx.Request) -> httpx.Response:
            answer = error(429, "rate_limited", "slow down")
            answer.headers["Retry-After"] = "7"
            return answer

        with pytest.raises(RateLimited) as raised:
            await FinanceClient("alf_k", fake(commission)).ledger()
        assert raised.value.retry_after == 7.0

    async def test_an_answer_that_is_not_alliances_still_raises(self) -> None:
        def proxy(request: httpx.Request) -> httpx.Response:
            return httpx.Response(502, text="<html>bad gateway</html>")

        with pytest.raises(ApiError) as raised:
            await FinanceClient("alf_k", fake(proxy)).ledger()
        assert raised.value.code == "http_502"
        assert raised.value.body is None


class TestAffiliate:
    async def test_links_from_the_tracker_orders_from_commission_with_the_key(self) -> None:
        seen: list[httpx.Request] = []

        def tracker(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            body = {
                "code": "c1",
                "url": "http://t/r/c1",
                "affiliate_id": "a1",
                "store_id": "s1",
                "product_id": None,
                "sub_id": "blog",
            }
            return httpx.Response(201, json=body)

        def commission(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json={"items": [], "next_cursor": None})

        affiliate = AffiliateClient("ala_k", tracker=fake(tracker), commission=fake(commission))
        link = await affiliate.create_link("s1", sub_id="blog")
        assert link.code == "c1"
        assert json.loads(seen[0].content) == {"store_id": "s1", "sub_id": "blog"}
        page = await affiliate.orders(start=datetime(2026, 3, 1, tzinfo=UTC), status="completed")
        assert page.items == []
        assert seen[1].url.params["from"] == "2026-03-01T00:00:00+00:00"
        assert "cursor" not in seen[1].url.params
        assert {r.headers["authorization"] for r in seen} == {"Bearer ala_k"}

    async def test_a_service_not_given_is_named(self) -> None:
        with pytest.raises(ValueError, match="tracker"):
            await AffiliateClient("ala_k", commission="http://c.test").create_link("s1")
