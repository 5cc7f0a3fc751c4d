"""`alliance demo`: a small realistic run through the running services, over HTTP only."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from shared.config import Settings
from shared.ids import new_id
from shared.secrets import signature_header

T = TypeVar("T")
BROWSER = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
)
RATES = {"phones": "0.06", "garden": "0.08"}
AFFILIATES = ["blog-techie", "coupon-hub", "insta-anna"]
PRODUCTS = {
    "phones": [
        ("p-case", "cases", "Phone case", "12.99", "1.50"),
        ("p-charger", "chargers", "USB-C charger", "24.50", "0.00"),
    ],
    "garden": [
        ("p-hose", "hoses", "Garden hose 20m", "39.90", "6.00"),
        ("p-shears", "tools", "Pruning shears", "17.25", "2.75"),
    ],
}


async def _until(probe: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 60) -> T:
    deadline = time.monotonic() + timeout_s
    while (result := await probe()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)
    return result


async def _signed(
    client: httpx.AsyncClient, store: str, secret: str, events: list[dict[str, Any]]
) -> httpx.Response:
    body = orjson.dumps({"events": events})
    headers = {
        "X-Alliance-Store": store,
        "X-Alliance-Signature": signature_header(secret, int(time.time()), body),
        "Content-Type": "application/json",
    }
    return await client.post("/v1/events", content=body, headers=headers)


async def run_demo(settings: Settings, orders: int = 12, seed: int = 7) -> int:
    rng = random.Random(seed)
    run = new_id()[-6:]
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    tracker = httpx.AsyncClient(
        base_url=f"http://{settings.host}:{settings.tracker_port}", timeout=30
    )
    commission = httpx.AsyncClient(
        base_url=f"http://{settings.host}:{settings.commission_port}", timeout=30
    )
    async with tracker, commission:
        stores: dict[str, tuple[str, str]] = {}  # kind → (store id, webhook secret)
        for kind, rate in RATES.items():
            store_id = f"{kind}-{run}"
            created = await commission.post(
                "/v1/admin/stores",
                json={
                    "store_id": store_id,
                    "name": f"Demo {kind}",
                    "landing_url_template": f"https://{kind}.shop.example/item/{{product_id}}",
                },
                headers=admin,
            )
            created.raise_for_status()
            keys = created.json()
            auth = {"Authorization": f"Bearer {keys['api_key']}"}
            (
                await commission.post(
                    f"/v1/stores/{store_id}/program/join", json={"default_rate": rate}, headers=auth
                )
            ).raise_for_status()
            stores[kind] = (store_id, keys["webhook_secret"])
            catalog = [
                {
                    "event_id": f"cat-{p[0]}",
                    "type": "product_upserted",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "product_id": p[0],
                    "category_id": p[1],
                    "title": p[2],
                    "price": p[3],
                    "currency": "USD",
                }
                for p in PRODUCTS[kind]
            ]

            async def uploaded(
                sid: str = store_id,
                secret: str = keys["webhook_secret"],
                cat: list[dict[str, Any]] = catalog,
            ) -> bool | None:
                resp = await _signed(tracker, sid, secret, cat)
                return True if resp.status_code == 202 else None

            await _until(uploaded, f"the tracker to know {store_id}")
        affiliate_keys: dict[str, str] = {}
        for name in AFFILIATES:
            resp = await commission.post(
                "/v1/admin/affiliates",
                json={"affiliate_id": f"{name}-{run}", "name": name},
                headers=admin,
            )
            resp.raise_for_status()
            affiliate_keys[name] = resp.json()["api_key"]
        print(
            f"registered stores {', '.join(s for s, _ in stores.values())} and affiliates {', '.join(affiliate_keys)}"
        )

        async def link_for(affiliate: str, store_id: str, product: str) -> str:
            async def fetched() -> str | None:
                resp = await tracker.post(
                    "/v1/links",
                    json={"store_id": store_id, "product_id": product},
                    headers={
                        "Authorization": f"Bearer {affiliate_keys[affiliate]}",
                        "X-Forwarded-For": "198.51.100.20",
                    },
                )
                return str(resp.json()["code"]) if resp.status_code == 201 else None

            return await _until(fetched, "an affiliate link")

        placed: list[dict[str, Any]] = []
        for n in range(orders):
            kind = rng.choice(list(RATES))
            store_id, secret = stores[kind]
            product = rng.choice(PRODUCTS[kind])
            visitor = f"organic-{run}-{n}"
            cookies: dict[str, str] = {}
            if n % 4 != 3:  # three buyers in four came through affiliate links (one or two)
                for affiliate in rng.sample(AFFILIATES, k=rng.randint(1, 2)):
                    code = await link_for(affiliate, store_id, product[0])
                    resp = await tracker.get(
                        f"/r/{code}",
                        headers={
                            **cookies,
                            "User-Agent": BROWSER,
                            "X-Forwarded-For": f"203.0.113.{n + 1}",
                        },
                    )
                    visitor = parse_qs(urlsplit(resp.headers["location"]).query)["alliance_vid"][0]
                    # the browser sends back the cookie the tracker set (the id and its tag)
                    cookies = {"Cookie": f"alliance_vid={resp.cookies['alliance_vid']}"}
            order_id = f"demo-{run}-{n:03d}"
            qty = rng.randint(1, 3)
            status = "order_cancelled" if n % 6 == 5 else "order_completed"
            events: list[dict[str, Any]] = [
                {
                    "event_id": f"{order_id}-placed",
                    "type": "order_placed",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "order_id": order_id,
                    "visitor_id": visitor,
                    "currency": "USD",
                    "items": [
                        {
                            "product_id": product[0],
                            "category_id": product[1],
                            "title": product[2],
                            "quantity": qty,
                            "unit_price": product[3],
                            "shipping_fee": product[4],
                        }
                    ],
                },
                {
                    "event_id": f"{order_id}-{status}",
                    "type": status,
                    "order_id": order_id,
                    "occurred_at": datetime.now(UTC).isoformat(),
                },
            ]
            (await _signed(tracker, store_id, secret, events)).raise_for_status()
            placed.append(
                {
                    "store_id": store_id,
                    "order_id": order_id,
                    "status": status.removeprefix("order_"),
                }
            )
        print(f"sent {orders} orders through the tracker; waiting for the pipeline…")

        async def settled() -> list[dict[str, Any]] | None:
            views = []
            for p in placed:
                resp = await commission.get(
                    f"/v1/stores/{p['store_id']}/orders/{p['order_id']}", headers=admin
                )
                if resp.status_code != 200:
                    return None
                view = resp.json()
                if not view["attribution_decided"] or view["status"] != p["status"]:
                    return None
                views.append(view)
            return views

        views = await _until(settled, "the pipeline to settle the demo's orders")
        print()
        print(
            f"{'order':20} {'store':14} {'status':10} {'affiliate':19} {'sales':>8} {'commission':>10}"
        )
        for v in views:
            sales = sum(Decimal(i["base"]) for i in v["items"])
            print(
                f"{v['order_id']:20} {v['store_id']:14} {v['status']:10} {v['affiliate_id'] or '(organic)':19} {sales:>8} {v['payable']:>10}"
            )
        ledger: list[dict[str, Any]] = []
        cursor: int | None = 0
        while cursor is not None:
            page = (
                await commission.get(
                    "/v1/ledger", params={"cursor": cursor, "limit": 1000}, headers=admin
                )
            ).json()
            ledger += page["items"]
            cursor = page["next_cursor"]
        print()
        print("Commission ledger (each transaction's postings sum to zero):")
        print(f"{'txn':>5} {'kind':11} {'order':20} {'account':36} {'amount':>9}")
        for line in ledger:
            if line["order_id"] and line["order_id"].startswith(f"demo-{run}"):
                print(
                    f"{line['txn_id']:>5} {line['kind']:11} {line['order_id']:20} {line['account']:36} {line['amount']:>9} {line['currency']}"
                )
        total = sum((Decimal(v["payable"]) for v in views), Decimal(0))
        paid = sum(1 for v in views if v["payable"] != "0.00")
        print(f"\ncommission payable this run: {total} USD on {paid} of {len(views)} orders")
    return 0
