"""The walking skeleton end to end, through HTTP only, on real Kafka and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.config import Settings
from tests.integration.harness import (
    commission_without_database,
    eventually,
    ledger_lines,
    new_affiliate,
    new_link,
    new_store,
    order_view,
    running,
    signed_post,
)

pytestmark = pytest.mark.integration


def uid() -> str:
    return uuid.uuid4().hex[:8]


def placed(
    order_id: str, visitor: str, price: str = "20.00", qty: int = 2, ship: str = "3.50"
) -> dict[str, Any]:
    return {
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
                "title": "Case",
                "quantity": qty,
                "unit_price": price,
                "shipping_fee": ship,
            }
        ],
    }


def completed(order_id: str) -> dict[str, Any]:
    return {
        "event_id": f"{order_id}-done",
        "type": "order_completed",
        "occurred_at": datetime.now(UTC).isoformat(),
        "order_id": order_id,
    }


async def test_click_order_completion_pays_the_affiliate(settings: Settings) -> None:
    u = uid()
    async with running(settings) as svc:
        store = await new_store(svc, settings, f"s-{u}")
        key = await new_affiliate(svc, settings, f"aff-{u}")
        link = await new_link(svc, key, store.store_id, "p1")
        redirect = await svc.tracker.get(f"/r/{link['code']}")
        assert redirect.status_code == 302
        assert redirect.headers["location"].startswith(
            f"https://{store.store_id}.shop.example/item/p1?"
        )
        query = parse_qs(urlsplit(redirect.headers["location"]).query)
        visitor = query["alliance_vid"][0]
        # the cookie carries the visitor id and its tag; the landing URL the plain id
        assert redirect.cookies["alliance_vid"].rsplit(".", 1)[0] == visitor

        order_id = f"o-{u}"
        resp = await signed_post(
            svc.tracker,
            "/v1/events",
            store,
            {"events": [placed(order_id, visitor), completed(order_id)]},
        )
        assert resp.status_code == 202, resp.text
        assert resp.json()["accepted"] == 2

        view = await eventually(
            lambda: order_view(
                svc,
                settings,
                (store.store_id, order_id),
                status="completed",
                affiliate_id=f"aff-{u}",
            )
        )
        assert view["click_id"] == query["alliance_click"][0]
        assert view["payable"] == "2.19"  # (2 × 20.00 − 3.50) × 6%
        assert view["items"][0]["base"] == "36.50"

        ledger = await ledger_lines(svc.commission, settings)
        mine = [line for line in ledger if line["order_id"] == order_id]
        assert {(line["account"], line["amount"]) for line in mine} == {
            (f"store:{store.store_id}:commission", "-2.19"),
            (f"affiliate:aff-{u}:earned", "2.19"),
        }
        # the store sees its own order, another store does not
        assert (
            await svc.commission.get(
                f"/v1/stores/{store.store_id}/orders/{order_id}", headers=store.auth
            )
        ).status_code == 200
        other = await new_store(svc, settings, f"s2-{u}", products=())
        for path in (
            f"/v1/stores/{store.store_id}/orders/{order_id}",
            f"/v1/stores/{other.store_id}/orders/{order_id}",
        ):
            assert (await svc.commission.get(path, headers=other.auth)).status_code == 404
        assert (
            await svc.commission.get(f"/v1/stores/{store.store_id}/orders/{order_id}")
        ).status_code == 401


async def test_organic_order_costs_nothing(settings: Settings) -> None:
    u = uid()
    async with running(settings) as svc:
        store = await new_store(svc, settings, f"s-{u}")
        order_id = f"o-{u}"
        resp = await signed_post(
            svc.tracker,
            "/v1/events",
            store,
            {"events": [placed(order_id, f"v-{u}"), completed(order_id)]},
        )
        assert resp.status_code == 202
        view = await eventually(
            lambda: order_view(
                svc,
                settings,
                (store.store_id, order_id),
                status="completed",
                attribution_decided=True,
            )
        )
        assert view["affiliate_id"] is None
        assert view["payable"] == "0.00"
        ledger = await ledger_lines(svc.commission, settings)
        assert not [line for line in ledger if line["order_id"] == order_id]


async def test_every_service_reports_health_and_readiness(settings: Settings) -> None:
    async with running(settings) as svc:
        for client in (svc.tracker, svc.attribution, svc.commission):
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["checks"].values()) == {"ok"}
        assert "postgres" in (await svc.commission.get("/readyz")).json()["checks"]


async def test_readyz_fails_when_postgres_is_unreachable(settings: Settings) -> None:
    async with commission_without_database(settings) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgres"].startswith("error")
    assert ready.json()["checks"]["kafka"] == "ok"
