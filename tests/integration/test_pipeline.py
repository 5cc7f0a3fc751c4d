"""The walking skeleton end to end, through HTTP only, on real Kafka and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.config import Settings
from tests.integration.harness import Services, eventually, running

pytestmark = pytest.mark.integration


async def order_view(svc: Services, order_id: str, want: dict[str, Any]) -> dict[str, Any] | None:
    resp = await svc.commission.get(f"/v1/orders/{order_id}")
    if resp.status_code != 200:
        return None
    body: dict[str, Any] = resp.json()
    return body if all(body.get(k) == v for k, v in want.items()) else None


async def test_click_order_completion_pays_the_affiliate(settings: Settings) -> None:
    uid = uuid.uuid4().hex[:8]
    store, affiliate, order_id = f"s-{uid}", f"aff-{uid}", f"o-{uid}"
    async with running(settings) as svc:
        joined = await svc.commission.post(f"/v1/stores/{store}/program/join", json={})
        assert joined.status_code == 200, joined.text
        assert joined.json()["default_rate"] == "0.06"

        link = await svc.tracker.post(
            "/v1/links", json={"affiliate_id": affiliate, "store_id": store, "product_id": "p1"}
        )
        assert link.status_code == 201
        redirect = await svc.tracker.get(f"/r/{link.json()['code']}")
        assert redirect.status_code == 302
        query = parse_qs(urlsplit(redirect.headers["location"]).query)
        visitor = query["alliance_vid"][0]
        assert redirect.cookies.get("alliance_vid") == visitor

        now = datetime.now(UTC).isoformat()
        placed = {
            "event_id": f"{order_id}-placed",
            "type": "order_placed",
            "occurred_at": now,
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
        done = {
            "event_id": f"{order_id}-done",
            "type": "order_completed",
            "occurred_at": now,
            "order_id": order_id,
        }
        resp = await svc.tracker.post(
            "/v1/events", json={"events": [placed, done]}, headers={"X-Alliance-Store": store}
        )
        assert resp.status_code == 202, resp.text
        assert resp.json()["accepted"] == 2

        view = await eventually(
            lambda: order_view(svc, order_id, {"status": "completed", "affiliate_id": affiliate})
        )
        assert view["click_id"] == query["alliance_click"][0]
        assert view["payable"] == "2.19"  # (2 × 20.00 − 3.50) × 6%
        assert view["items"][0]["base"] == "36.50"

        ledger = (await svc.commission.get("/v1/ledger", params={"limit": 10000})).json()
        mine = [line for line in ledger if line["order_id"] == order_id]
        assert {(line["account"], line["amount"]) for line in mine} == {
            (f"store:{store}:commission", "-2.19"),
            (f"affiliate:{affiliate}:earned", "2.19"),
        }


async def test_organic_order_costs_nothing(settings: Settings) -> None:
    uid = uuid.uuid4().hex[:8]
    store, order_id = f"s-{uid}", f"o-{uid}"
    async with running(settings) as svc:
        await svc.commission.post(f"/v1/stores/{store}/program/join", json={})
        now = datetime.now(UTC).isoformat()
        events = [
            {
                "event_id": f"{order_id}-p",
                "type": "order_placed",
                "occurred_at": now,
                "order_id": order_id,
                "visitor_id": f"v-{uid}",
                "currency": "USD",
                "items": [
                    {"product_id": "p1", "quantity": 1, "unit_price": "50.00", "shipping_fee": "0"}
                ],
            },
            {
                "event_id": f"{order_id}-c",
                "type": "order_completed",
                "occurred_at": now,
                "order_id": order_id,
            },
        ]
        resp = await svc.tracker.post(
            "/v1/events", json={"events": events}, headers={"X-Alliance-Store": store}
        )
        assert resp.status_code == 202
        view = await eventually(
            lambda: order_view(svc, order_id, {"status": "completed", "attribution_decided": True})
        )
        assert view["affiliate_id"] is None
        assert view["payable"] == "0.00"
        ledger = (await svc.commission.get("/v1/ledger", params={"limit": 10000})).json()
        assert not [line for line in ledger if line["order_id"] == order_id]


async def test_tampered_link_is_404(settings: Settings) -> None:
    async with running(settings) as svc:
        link = await svc.tracker.post("/v1/links", json={"affiliate_id": "a1", "store_id": "s1"})
        code = link.json()["code"]
        forged = (
            code.replace("YTE", "YTI")
            if "YTE" in code
            else code[:-1] + ("A" if code[-1] != "A" else "B")
        )
        assert (await svc.tracker.get(f"/r/{forged}")).status_code == 404
        assert (await svc.tracker.get("/r/not-a-code")).status_code == 404


async def test_every_service_reports_health_and_readiness(settings: Settings) -> None:
    async with running(settings) as svc:
        for client in (svc.tracker, svc.attribution, svc.commission):
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["checks"].values()) == {"ok"}
        assert "postgres" in (await svc.commission.get("/readyz")).json()["checks"]


async def test_readyz_fails_when_postgres_is_unreachable(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://nobody:x@127.0.0.1:1/none"}
    )
    from services.commission.app import create_app

    app = create_app(broken, consume=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://c.test") as client:
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgres"].startswith("error")
    assert ready.json()["checks"]["kafka"] == "ok"
