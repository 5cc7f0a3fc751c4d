"""The affiliate product channel on the real stack: only stores in the program, keyword and
category search, the documented ranking (a rate change re-ranks at once), stable pages, and a
link request that the tracker accepts."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.commission.core.program import OpKind
from shared.config import Settings
from shared.events import Click, OrderItem, OrderPlaced, ProductUpserted, Topic, encode
from tests.integration.harness import Services, admin, eventually, new_affiliate, new_link, running
from tests.services.attribution.test_stream import NOW, produce
from tests.services.commission.reports.test_endpoints import all_pages

pytestmark = pytest.mark.integration


async def store_in_program(
    svc: Services, settings: Settings, store: str, *, join: bool, rates: dict[str, str]
) -> dict[str, str]:
    """A store (joined 60 days ago, when its rates were set, if ``join``); returns its key."""
    from services.commission.program.service import ProgramService
    from shared.clock import FixedClock

    resp = await svc.commission.post(
        "/v1/admin/stores",
        json={"store_id": store, "name": store, "landing_url_template": "https://x/{product_id}"},
        headers=admin(settings),
    )
    assert resp.status_code == 201, resp.text
    if join:
        service = ProgramService(FixedClock(NOW - timedelta(days=60)))
        async with svc.apps["commission"].state.sessions() as session, session.begin():
            await service.change_program(session, store, OpKind.JOIN, "test")
            for category, rate in rates.items():
                kind = OpKind.DEFAULT_RATE if category == "*" else OpKind.CATEGORY_RATE
                key = None if category == "*" else category
                await service.change_program(session, store, kind, "test", key, Decimal(rate))
            # as the join endpoint does: the tracker learns the store is in the program
            await svc.apps["commission"].state.admin.publish_store(session, store, NOW)
    return {"Authorization": f"Bearer {resp.json()['api_key']}"}


def product(store: str, pid: str, title: str, category: str) -> ProductUpserted:
    return ProductUpserted(
        event_id=f"cat-{store}-{pid}",
        occurred_at=NOW - timedelta(days=30),
        store_id=store,
        product_id=pid,
        category_id=category,
        title=title,
        price=Decimal("20.00"),
        currency="USD",
    )


async def channel(svc: Services, key: str, limit: str = "50", **params: str) -> list[Any]:
    """Every page of the channel, ``limit`` at a time."""
    auth = {"Authorization": f"Bearer {key}"}
    return await all_pages(svc, auth, "/v1/affiliate/products", params, int(limit))


async def test_the_channel_ranks_searches_and_hands_out_links(settings: Settings) -> None:
    u = uuid.uuid4().hex[:8]
    a, b, c = f"a-{u}", f"b-{u}", f"c-{u}"
    async with running(settings) as svc:
        await store_in_program(svc, settings, a, join=True, rates={"*": "0.05", "light": "0.09"})
        b_key = await store_in_program(svc, settings, b, join=True, rates={"*": "0.05"})
        await store_in_program(svc, settings, c, join=False, rates={})
        catalog = [
            product(a, "a1", "Desk LAMP", "light"),
            product(a, "a2", "Stoneware mug", "kitchen"),
            product(a, "a3", "Floor lamp", "light"),
            product(b, "b1", "Lamp oil", "kitchen"),
            product(c, "c1", "Lamp of a store outside", "light"),
        ]
        await produce(
            settings, [(Topic.CATALOG, f"{p.store_id}:{p.product_id}", encode(p)) for p in catalog]
        )
        # three affiliate orders of a2 (hot, and 3 orders in 90 days)
        events: list[tuple[Topic, str, bytes]] = []
        for n in range(3):
            visitor = f"{u}-v{n}"
            at = NOW - timedelta(days=2, hours=n)
            click = Click(
                event_id=f"{u}-c{n}",
                occurred_at=at,
                received_at=at,
                affiliate_id=f"aff-{u}",
                store_id=a,
                link_code="k1.x.y",
                visitor_id=visitor,
            )
            order = OrderPlaced(
                event_id=f"{u}-o{n}-p",
                occurred_at=at + timedelta(minutes=5),
                store_id=a,
                order_id=f"{u}-o{n}",
                visitor_id=visitor,
                currency="USD",
                items=[OrderItem(product_id="a2", quantity=1, unit_price=Decimal("20.00"))],
            )
            events += [
                (Topic.CLICKS, visitor, encode(click)),
                (Topic.ORDERS, visitor, encode(order)),
            ]
        await produce(settings, events)
        key = await new_affiliate(svc, settings, f"aff-{u}")
        refresher = svc.apps["commission"].state.products

        async def ranked() -> list[dict[str, Any]] | None:
            await refresher.run_once()
            items = [i for i in await channel(svc, key, limit="50") if i["store_id"] in (a, b, c)]
            mine = {i["product_id"]: i for i in items}
            return items if len(mine) == 4 and mine["a2"]["affiliate_orders_90d"] == 3 else None

        items = await eventually(ranked, timeout_s=60)
        assert [i["product_id"] for i in items] == ["a2", "a1", "a3", "b1"]
        a2, a1 = items[0], items[1]
        assert a2["hot"] is True
        # 30 (hot) + 100 × 0.05 + 10 × log10(1 + 3) (0.6021, to four places)
        assert Decimal(a2["score"]) == Decimal("41.021")
        assert (a1["rate"], a1["score"], a1["commission_per_unit"]) == ("0.09", "9", "1.80")
        assert a1["link_request"] == {"store_id": a, "product_id": "a1"}
        assert all(i["store_id"] != c for i in items)  # outside the program: never

        # search: keyword anywhere in the title, any case; category; both
        lamps = [
            i["product_id"] for i in await channel(svc, key, q="lamp") if i["store_id"] in (a, b, c)
        ]
        assert lamps == ["a1", "a3", "b1"]
        light = [
            i["product_id"]
            for i in await channel(svc, key, category_id="light")
            if i["store_id"] in (a, b, c)
        ]
        assert light == ["a1", "a3"]

        # a rate change re-ranks at once: b1 at 10% scores 10, above a1 and a3 (9)
        resp = await svc.commission.put(
            f"/v1/stores/{b}/rates/default", json={"rate": "0.10"}, headers=b_key
        )
        assert resp.status_code == 200, resp.text
        now = [
            i["product_id"]
            for i in await channel(svc, key, limit="50")
            if i["store_id"] in (a, b, c)
        ]
        assert now == ["a2", "b1", "a1", "a3"]
        # pages of one: the same order, nothing twice
        paged = [i["product_id"] for i in await channel(svc, key, q=u, limit="1")]
        assert paged == []  # no title holds the run id
        one_by_one = [
            i["product_id"]
            for i in await channel(svc, key, q="lamp", limit="1")
            if i["store_id"] in (a, b, c)
        ]
        assert one_by_one == ["b1", "a1", "a3"]
        by_rate = [
            i["product_id"]
            for i in await channel(svc, key, sort="rate", limit="2")
            if i["store_id"] in (a, b, c)
        ]
        assert by_rate == ["b1", "a1", "a3", "a2"]

        # the link request is what POST /v1/links takes
        link = await new_link(svc, key, a, "a1")
        assert str(link["url"]).startswith("http")

        bad = await svc.commission.get(
            "/v1/affiliate/products",
            params={"cursor": "zz"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "bad_cursor"
        store_key = await svc.commission.get("/v1/affiliate/products", headers=b_key)
        assert store_key.status_code == 403
