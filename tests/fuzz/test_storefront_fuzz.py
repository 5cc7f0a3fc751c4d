"""A correctly signed, Hypothesis-driven fuzzer of ``POST /v1/events`` and ``POST /v1/clicks``
on the real broker: no request is answered with a server error, every answer is one the
OpenAPI documents with the body it documents, and afterwards — with whatever the fuzzer got
accepted already on the topics — every service is ready and a normal order flows end to end
within a minute."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import hypothesis
from hypothesis import strategies as st

from services.attribution.rebuild import rebuild
from services.tracker.endpoints import MAX_BODY_BYTES, MAX_EVENTS
from services.tracker.schemas import ClickAccepted, EventsResponse
from shared.config import Settings
from shared.http import ErrorBody
from shared.secrets import signature_header
from tests.fuzz.bridge import FUZZ_MARKS, LoopBridge
from tests.fuzz.openapi import ARTIFACTS, fuzz_settings
from tests.fuzz.pipeline import a_flooding_visitor_orders, a_normal_order_flows, placements_agree
from tests.fuzz.storefront import batches, server_clicks
from tests.integration.harness import (
    Services,
    Store,
    new_affiliate,
    new_link,
    new_store,
    running,
)

pytestmark = FUZZ_MARKS

#: examples per route (each is one request: 15 to 50 ms here, an accepted batch waits for Kafka)
EVENT_EXAMPLES = 500
CLICK_EXAMPLES = 200

#: bodies no strategy draws, always sent first: the limits and the parser's corners
EXPLICIT_EVENT_BODIES = [
    b"x" * (MAX_BODY_BYTES + 1),
    json.dumps({"events": [{"type": "page_view"}] * (MAX_EVENTS + 1)}).encode(),
    b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
    b'{"events": [{"type": "page_view", "occurred_at": 1e999999}]}',
    b'{"events": [{"type": "page_view", "event_id": "\xff\xfe"}]}',
    b'{"events": [{"a": 1}], "events": 5}',
    b"",
    b"null",
    b'"\\u0000"',
]


async def post_signed(
    client: httpx.AsyncClient, path: str, store: Store, body: bytes, at: int | None = None
) -> httpx.Response:
    stamp = int(time.time()) if at is None else at
    headers = {
        "X-Alliance-Store": store.store_id,
        "X-Alliance-Signature": signature_header(store.secret, stamp, body),
        "Content-Type": "application/json",
    }
    return await client.post(path, content=body, headers=headers)


def check_events_answer(resp: httpx.Response, events: object) -> None:
    """What the OpenAPI of ``POST /v1/events`` promises: 202 with a result per event, 413,
    422 (each with the error body), 401 only for a stale signature."""
    assert resp.status_code in (202, 413, 422), (resp.status_code, resp.text[:500])
    if resp.status_code == 202:
        answer = EventsResponse.model_validate_json(resp.content)
        assert isinstance(events, list)
        assert len(answer.results) == len(events)
        assert answer.accepted + answer.duplicates + answer.rejected == len(events)
        assert answer.rejected < len(events)
    else:
        ErrorBody.model_validate_json(resp.content)


def encode(payload: object, ascii_only: bool) -> bytes:
    """JSON as a storefront might write it (Python's encoder: integers of any size, and
    ``NaN`` for a float NaN, which is not JSON at all)."""
    return json.dumps(payload, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


#: clicks of the one flooding visitor (past the per-day cap, so both cap and decision are met)
FLOOD_CLICKS = 1_500


class Fuzz:
    """The fuzzer's side: runs in a worker thread, each request on the test's loop."""

    def __init__(self, svc: Services, bridge: LoopBridge, store: Store) -> None:
        self.svc, self.bridge, self.store = svc, bridge, store
        self.statuses: Counter[tuple[str, int]] = Counter()

    def post(self, path: str, body: bytes, at: int | None = None) -> httpx.Response:
        resp = self.bridge.run(post_signed(self.svc.tracker, path, self.store, body, at))
        self.statuses[path, resp.status_code] += 1
        return resp

    def events(self, orders: list[str], products: list[str], visitors: list[str]) -> None:
        now = datetime.now(UTC)

        @fuzz_settings(EVENT_EXAMPLES)
        @hypothesis.given(
            payload=batches(now, orders, products, visitors, self.store.store_id),
            ascii_only=st.booleans(),
            stale=st.sampled_from([False] * 19 + [True]),
        )
        def run(payload: object, ascii_only: bool, stale: bool) -> None:
            at = int(time.time()) - 3600 if stale else None
            resp = self.post("/v1/events", encode(payload, ascii_only), at)
            if stale:
                assert resp.status_code == 401, resp.text[:500]
                ErrorBody.model_validate_json(resp.content)
                return
            events = payload.get("events") if isinstance(payload, dict) else None
            check_events_answer(resp, events)

        for body in EXPLICIT_EVENT_BODIES:
            resp = self.post("/v1/events", body)
            assert resp.status_code in (413, 422), (resp.status_code, resp.text[:300])
            ErrorBody.model_validate_json(resp.content)
        run()

    def clicks(self, codes: list[str], visitors: list[str]) -> None:
        now = datetime.now(UTC)

        @fuzz_settings(CLICK_EXAMPLES)
        @hypothesis.given(
            payload=server_clicks(now, codes, visitors, self.store.store_id),
            ascii_only=st.booleans(),
        )
        def run(payload: object, ascii_only: bool) -> None:
            resp = self.post("/v1/clicks", encode(payload, ascii_only))
            # 403: another store's link; 404: a code we never signed
            assert resp.status_code in (202, 403, 404, 413, 422), resp.text[:500]
            if resp.status_code == 202:
                ClickAccepted.model_validate_json(resp.content)
            else:
                ErrorBody.model_validate_json(resp.content)

        run()

    def save(self, seconds: float) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        lines = [f"{path:12} {status} {n}" for (path, status), n in sorted(self.statuses.items())]
        total = self.statuses.total()
        lines.append(f"{total} requests, {seconds:.0f} s")
        (ARTIFACTS / "fuzz-storefront.txt").write_text("\n".join(lines) + "\n")


async def test_signed_storefront_posts_never_get_a_server_error_and_the_pipeline_carries_on(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    products = ["p1", "p2", "p3"]
    async with running(settings) as svc:
        store = await new_store(svc, settings, f"fz-{u}", products=tuple(products))
        other = await new_store(svc, settings, f"fz-other-{u}", products=("p1",))
        key = await new_affiliate(svc, settings, f"fz-aff-{u}")
        codes, visitors = [], []
        for store_id, product in ((store.store_id, "p1"), (store.store_id, None)):
            link = await new_link(svc, key, store_id, product)
            codes.append(str(link["code"]))
            redirect = await svc.tracker.get(f"/r/{link['code']}")
            visitors.append(
                parse_qs(urlsplit(redirect.headers["location"]).query)["alliance_vid"][0]
            )
        codes.append(str((await new_link(svc, key, other.store_id, "p1"))["code"]))
        orders = [f"o-{u}-{n}" for n in range(4)]

        fuzz = Fuzz(svc, LoopBridge(svc.apps["tracker"], asyncio.get_running_loop()), store)
        started = time.monotonic()
        started_at = datetime.now(UTC)
        await asyncio.to_thread(fuzz.events, orders, products, visitors)
        await asyncio.to_thread(fuzz.clicks, codes, visitors)
        fuzz.save(time.monotonic() - started)
        assert not [s for (_, s), n in fuzz.statuses.items() if s >= 500]
        # a good share got in, and travelled on to the consumers
        assert fuzz.statuses["/v1/events", 202] > EVENT_EXAMPLES // 4
        assert fuzz.statuses["/v1/clicks", 202] > CLICK_EXAMPLES // 10

        for client in (svc.tracker, svc.attribution, svc.commission):
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
        # one visitor's flood of clicks then an order: decided and paid like any other
        await a_flooding_visitor_orders(svc, settings, FLOOD_CLICKS)
        await a_normal_order_flows(svc, settings)
        # the fuzzer placed its orders several times with differing visitors and amounts
        # (and ids shaped like decisions'): one placement per order all the same
        await placements_agree(settings, store.store_id)
        report = await rebuild(
            settings.kafka,
            settings.topic_prefix,
            started_at - timedelta(days=60),
            timedelta(days=settings.attribution_window_days),
        )
        # and deciding again from the topics, from the placements decided, changes nothing
        assert report.orders > 0
        assert report.differences == []
