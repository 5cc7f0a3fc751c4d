"""`alliance demo`: a small realistic run through the running services, over HTTP only."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.config import Settings
from shared.ids import new_id

STORES = {"demo-phones": Decimal("0.06"), "demo-garden": Decimal("0.08")}
AFFILIATES = ["blog-techie", "coupon-hub", "insta-anna"]
PRODUCTS = {
    "demo-phones": [
        ("p-case", "cases", "Phone case", Decimal("12.99"), Decimal("1.50")),
        ("p-charger", "chargers", "USB-C charger", Decimal("24.50"), Decimal("0.00")),
    ],
    "demo-garden": [
        ("p-hose", "hoses", "Garden hose 20m", Decimal("39.90"), Decimal("6.00")),
        ("p-shears", "tools", "Pruning shears", Decimal("17.25"), Decimal("2.75")),
    ],
}


async def click(client: httpx.AsyncClient, tracker: str, code: str, cookies: dict[str, str]) -> str:
    resp = await client.get(f"{tracker}/r/{code}", cookies=cookies, follow_redirects=False)
    resp.raise_for_status() if resp.status_code != 302 else None
    return parse_qs(urlsplit(resp.headers["location"]).query)["alliance_vid"][0]


async def run_demo(settings: Settings, orders: int = 12, seed: int = 7) -> int:
    rng = random.Random(seed)
    tracker = f"http://{settings.host}:{settings.tracker_port}"
    commission = f"http://{settings.host}:{settings.commission_port}"
    run = new_id()[-6:]
    async with httpx.AsyncClient(timeout=30) as client:
        for store, rate in STORES.items():
            resp = await client.post(
                f"{commission}/v1/stores/{store}/program/join", json={"default_rate": str(rate)}
            )
            if resp.status_code not in (200, 409):
                resp.raise_for_status()
        placed: list[dict[str, Any]] = []
        for n in range(orders):
            store = rng.choice(list(STORES))
            product = rng.choice(PRODUCTS[store])
            visitor_cookie: dict[str, str] = {}
            visitor = f"organic-{run}-{n}"
            if n % 4 != 3:  # three in four buyers came through an affiliate link
                for affiliate in rng.sample(AFFILIATES, k=rng.randint(1, 2)):
                    link = await client.post(
                        f"{tracker}/v1/links",
                        json={
                            "affiliate_id": affiliate,
                            "store_id": store,
                            "product_id": product[0],
                        },
                    )
                    link.raise_for_status()
                    visitor = await click(client, tracker, link.json()["code"], visitor_cookie)
                    visitor_cookie = {"alliance_vid": visitor}
            order_id = f"demo-{run}-{n:03d}"
            qty = rng.randint(1, 3)
            event = {
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
                        "unit_price": str(product[3]),
                        "shipping_fee": str(product[4]),
                    }
                ],
            }
            status = "order_cancelled" if n % 6 == 5 else "order_completed"
            finish = {"event_id": f"{order_id}-{status}", "type": status, "order_id": order_id}
            resp = await client.post(
                f"{tracker}/v1/events",
                json={"events": [event]},
                headers={"X-Alliance-Store": store},
            )
            resp.raise_for_status()
            finish["occurred_at"] = datetime.now(UTC).isoformat()
            resp = await client.post(
                f"{tracker}/v1/events",
                json={"events": [finish]},
                headers={"X-Alliance-Store": store},
            )
            resp.raise_for_status()
            placed.append(
                {"order_id": order_id, "store": store, "status": status.removeprefix("order_")}
            )
        print(f"sent {orders} orders through {tracker}; waiting for the pipeline…")
        views = await _wait_for(client, commission, placed)
        print()
        print(
            f"{'order':22} {'store':12} {'status':10} {'affiliate':12} {'sales':>8} {'commission':>10}"
        )
        for v in views:
            sales = sum(Decimal(i["base"]) for i in v["items"])
            print(
                f"{v['order_id']:22} {v['store_id']:12} {v['status']:10} "
                f"{v['affiliate_id'] or '(organic)':12} {sales:>8} {v['payable']:>10}"
            )
        ledger = (await client.get(f"{commission}/v1/ledger")).json()
        print()
        print("Commission ledger (every transaction balances to zero):")
        print(f"{'txn':>5} {'kind':11} {'order':22} {'account':34} {'amount':>9}")
        for line in ledger:
            if line["order_id"] and line["order_id"].startswith(f"demo-{run}"):
                print(
                    f"{line['txn_id']:>5} {line['kind']:11} {line['order_id']:22} {line['account']:34} {line['amount']:>9} {line['currency']}"
                )
        total = sum((Decimal(v["payable"]) for v in views), Decimal(0))
        print(
            f"\ncommission payable this run: {total} USD over {sum(1 for v in views if v['payable'] != '0.00')} orders"
        )
    return 0


async def _wait_for(
    client: httpx.AsyncClient, commission: str, placed: list[dict[str, Any]], timeout_s: float = 60
) -> list[dict[str, Any]]:
    """Poll until every order is attributed and has reached the status the demo sent."""
    deadline = time.monotonic() + timeout_s
    while True:
        views = []
        for p in placed:
            resp = await client.get(f"{commission}/v1/orders/{p['order_id']}")
            if resp.status_code == 200:
                views.append(resp.json())
        if len(views) == len(placed) and all(
            v["attribution_decided"] and v["status"] == p["status"]
            for v, p in zip(views, placed, strict=True)
        ):
            return views
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not settle the demo's orders in time")
        await asyncio.sleep(0.5)
