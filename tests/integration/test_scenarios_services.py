"""Every worked example (tests/scenarios) replayed through the running services, over
HTTP, with the services' clock set to each event's time: the figures must match to the cent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.attribution.models import clicks as clicks_table
from services.attribution.models import coupons as coupons_table
from services.attribution.models import store_coupon_policies as policies_table
from services.tracker.links import Link, LinkSigner
from shared.clock import FixedClock
from shared.config import Settings
from shared.coupons import coupon_key
from shared.db import make_engine
from tests.integration.harness import (
    BROWSER_UA,
    Services,
    Store,
    admin,
    eventually,
    ledger_lines,
    running,
    signed_post,
)
from tests.scenarios import load, scenario_files, ts

pytestmark = pytest.mark.integration

BOT_UA = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
PROGRAM_CALLS = {
    "program.join": ("POST", "program/join"),
    "program.exit": ("POST", "program/exit"),
    "program.default": ("PUT", "rates/default"),
    "program.category": ("PUT", "rates/categories/{category_id}"),
    "program.main": ("PUT", "main-products/{product_id}"),
    "program.unmain": ("DELETE", "main-products/{product_id}"),
    "program.coupon_policy": ("PUT", "coupon-policy"),
}


class Replay:
    """Sends a scenario's events to the services, namespaced so that runs never collide."""

    def __init__(self, svc: Services, settings: Settings, clock: FixedClock) -> None:
        self.svc, self.settings, self.clock = svc, settings, clock
        self.ns = uuid.uuid4().hex[:6]
        self.stores: dict[str, Store] = {}
        self.signer = LinkSigner.from_config(settings.link_keys)
        self.engine = make_engine(settings.database_url, pool_size=1)
        self.order_stores: dict[str, str] = {}
        self.affiliates: set[str] = set()

    def id(self, name: str) -> str:
        return f"{self.ns}-{name}"

    async def store(self, store_id: str) -> Store:
        if store_id not in self.stores:
            resp = await self.svc.commission.post(
                "/v1/admin/stores",
                json={
                    "store_id": self.id(store_id),
                    "name": store_id,
                    "landing_url_template": "https://shop.example/item/{product_id}",
                },
                headers=admin(self.settings),
            )
            assert resp.status_code == 201, resp.text
            body = resp.json()
            self.stores[store_id] = Store(
                self.id(store_id), body["api_key"], body["webhook_secret"]
            )
        return self.stores[store_id]

    async def known_to_tracker(self, store: Store) -> None:
        async def known() -> bool | None:
            directory = self.svc.apps["tracker"].state.tracker.directory
            return True if store.store_id in directory.stores else None

        await eventually(known)

    async def apply(self, event: dict[str, Any]) -> None:
        self.clock.set(ts(event["at"]))
        kind = event["kind"]
        if kind in PROGRAM_CALLS:
            store = await self.store(event["store_id"])
            method, path = PROGRAM_CALLS[kind]
            body = (
                {"default_rate": event["rate"]}
                if kind == "program.join"
                else ({"rate": event["rate"]} if "rate" in event else None)
            )
            if "policy" in event:
                body = {"policy": event["policy"]}
            url = f"/v1/stores/{store.store_id}/" + path.format(**event)
            resp = await self.svc.commission.request(method, url, json=body, headers=store.auth)
            assert resp.status_code == 200, resp.text
            if "policy" in event:
                await self._policy_reached_attribution(store.store_id)
        elif kind in ("coupon.put", "coupon.delete"):
            await self._coupon(event)
        elif kind == "click":
            store = await self.store(event["store_id"])
            await self.known_to_tracker(store)
            code = self.signer.sign(Link(self.id(event["affiliate_id"]), store.store_id))
            resp = await signed_post(
                self.svc.tracker,
                "/v1/clicks",
                store,
                {
                    "event_id": event["click_id"],
                    "code": code,
                    "visitor_id": self.id(event["visitor_id"]),
                    "occurred_at": event["at"],
                    "user_agent": BOT_UA if event.get("suspicious") else BROWSER_UA,
                },
                at=int(self.clock.now().timestamp()),
            )
            assert resp.status_code == 202, resp.text
            assert resp.json()["suspicious"] == bool(event.get("suspicious"))
            await self._click_stored(resp.json()["click_id"])
        else:
            store = await self.store(event.get("store_id") or self._store_of(event["order_id"]))
            await self.known_to_tracker(store)
            payload = {k: v for k, v in event.items() if k not in ("kind", "at", "store_id")}
            payload |= {
                "type": kind,
                "occurred_at": event["at"],
                "order_id": self.id(event["order_id"]),
                "event_id": f"{kind}-{event['order_id']}-{event.get('refund_id', '')}",
            }
            if "visitor_id" in payload:
                payload["visitor_id"] = self.id(payload["visitor_id"])
            if kind == "order_placed":
                self.order_stores[event["order_id"]] = event["store_id"]
            resp = await signed_post(
                self.svc.tracker,
                "/v1/events",
                store,
                {"events": [payload]},
                at=int(self.clock.now().timestamp()),
            )
            assert resp.status_code == 202, resp.text
            assert resp.json()["accepted"] == 1, resp.text

    async def _coupon(self, event: dict[str, Any]) -> None:
        """A code registered or deleted through the API, then awaited in attribution (the
        directory and the orders are two topics: in real time the code is there long before
        an order that uses it)."""
        store = await self.store(event["store_id"])
        url = f"/v1/stores/{store.store_id}/coupons/{event['code']}"
        if event["kind"] == "coupon.delete":
            resp = await self.svc.commission.delete(url, headers=store.auth)
            assert resp.status_code == 200, resp.text
        else:
            affiliate = self.id(event["affiliate_id"])
            if affiliate not in self.affiliates:
                created = await self.svc.commission.post(
                    "/v1/admin/affiliates",
                    json={"affiliate_id": affiliate, "name": event["affiliate_id"]},
                    headers=admin(self.settings),
                )
                assert created.status_code == 201, created.text
                self.affiliates.add(affiliate)
            body = {"affiliate_id": affiliate} | {
                k: event[k] for k in ("valid_from", "valid_to") if k in event
            }
            resp = await self.svc.commission.put(url, json=body, headers=store.auth)
            assert resp.status_code == 201, resp.text
        code = coupon_key(event["code"])

        async def recorded() -> bool | None:
            t = coupons_table
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(t.c.code).where(
                            t.c.store_id == store.store_id,
                            t.c.code == code,
                            t.c.effective_at == self.clock.now(),
                        )
                    )
                ).first()
            return True if row else None

        await eventually(recorded)

    async def _policy_reached_attribution(self, store_id: str) -> None:
        async def recorded() -> bool | None:
            t = policies_table
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(t.c.policy).where(
                            t.c.store_id == store_id, t.c.effective_at == self.clock.now()
                        )
                    )
                ).first()
            return True if row else None

        await eventually(recorded)

    def _store_of(self, order_id: str) -> str:
        return self.order_stores[order_id]

    def order_path(self, order_id: str) -> str:
        """The API path of a scenario order (orders are named within their store)."""
        return f"/v1/stores/{self.id(self._store_of(order_id))}/orders/{self.id(order_id)}"

    async def _click_stored(self, click_id: str) -> None:
        """Clicks and orders travel on different topics: let the click land before the next
        event, as it would in real time (late clicks are attribution's own test)."""

        async def stored() -> bool | None:
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(clicks_table.c.click_id).where(clicks_table.c.click_id == click_id)
                    )
                ).first()
            return True if row else None

        await eventually(stored)


async def settle_all(replay: Replay, scenario: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Wait until every expected order is decided and has its expected status."""
    views: dict[str, dict[str, Any]] = {}
    for expected in scenario["expected"]:
        path = replay.order_path(expected["order_id"])

        async def settled(
            oid: str = path, want: dict[str, Any] = expected
        ) -> dict[str, Any] | None:
            resp = await replay.svc.commission.get(oid, headers=admin(replay.settings))
            if resp.status_code != 200:
                return None
            view: dict[str, Any] = resp.json()
            ok = view["attribution_decided"] and view["status"] == want["status"]
            return view if ok else None

        views[expected["order_id"]] = await eventually(settled)
    return views


def money(value: str) -> Decimal:
    return Decimal(value)


def item_figures(items: list[dict[str, Any]]) -> list[dict[str, str | Decimal]]:
    return [
        {
            k: (i[k] if k == "product_id" else money(i[k]))
            for k in ("product_id", "base", "rate", "commission", "reversed", "net")
        }
        for i in items
    ]


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
async def test_each_worked_example_matches_to_the_cent_through_the_services(
    settings: Settings, path: Path
) -> None:
    async with replayed(settings, path.stem) as r:
        replay, scenario = r.replay, r.scenario
        # the ledger once every order is settled: it holds exactly each one's payable commission
        ledger = await ledger_lines(r.svc.commission, settings)
    for expected in scenario["expected"]:
        order_id = replay.id(expected["order_id"])
        view = r.views[expected["order_id"]]
        name = f"{path.stem}/{expected['order_id']}"
        want_aff = replay.id(expected["affiliate"]) if expected["affiliate"] else None
        assert view["affiliate_id"] == want_aff, name
        want_click = (
            f"s2s:{view['store_id']}:{expected['click_id']}" if expected["click_id"] else None
        )
        assert view["click_id"] == want_click, name
        assert view["chargeable"] == expected["chargeable"], name
        if "rule" in expected:
            assert (view["rule"], view["coupon_code"]) == (
                expected["rule"],
                expected["coupon_code"],
            ), name
        assert money(view["estimated"]) == money(expected["estimated"]), name
        assert money(view["payable"]) == money(expected["payable"]), name
        assert item_figures(view["items"]) == item_figures(expected["items"]), name
        earned = sum(
            (
                money(x["amount"])
                for x in ledger
                if (x["store_id"], x["order_id"]) == (view["store_id"], order_id)
                and x["account"].startswith("affiliate:")
            ),
            Decimal(0),
        )
        assert earned == money(expected["payable"]), name


@dataclass
class Replayed:
    svc: Services
    replay: Replay
    scenario: dict[str, Any]
    clock: FixedClock
    #: each expected order's view once settled, by the scenario's order id
    views: dict[str, dict[str, Any]]


@asynccontextmanager
async def replayed(settings: Settings, name: str) -> AsyncIterator[Replayed]:
    """The services running with the worked example ``name`` replayed and settled in them."""
    scenario = load(next(p for p in scenario_files() if p.stem == name))
    clock = FixedClock(ts(scenario["events"][0]["at"]))
    async with running(settings, clock) as svc:
        replay = Replay(svc, settings, clock)
        try:
            for event in scenario["events"]:
                await replay.apply(event)
            views = await settle_all(replay, scenario)
            yield Replayed(svc, replay, scenario, clock, views)
        finally:
            await replay.engine.dispose()
