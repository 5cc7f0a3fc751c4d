"""`alliance demo`: a small realistic run through the running services, over HTTP only."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

from alliance_client import (
    AdminClient,
    AffiliateClient,
    ApiError,
    FinanceClient,
    NotFound,
    StoreClient,
    StorefrontClient,
)
from deploy.demo.payouts import payout_run
from shared.config import Settings
from shared.ids import new_id

T = TypeVar("T")
BROWSER = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
)
RATES = {"phones": "0.06", "garden": "0.08"}
AFFILIATES = ["blog-techie", "coupon-hub", "insta-anna"]
#: per store kind: (product id, category, title, unit price, shipping fee)
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
Product = tuple[str, str, str, str, str]


async def _until(probe: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 60) -> T:
    deadline = time.monotonic() + timeout_s
    while (result := await probe()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)
    return result


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class LiveRun:
    """One run of the live demo: its connections to the running services and what it created.
    Every call but a buyer's (the link redirect, the camp) goes through the Python client
    (``alliance_client``), as a storefront, an affiliate, a store or the operator would."""

    tracker: httpx.AsyncClient
    commission: httpx.AsyncClient
    admin: dict[str, str]  # the admin token's header
    run: str  # suffix of every id this run creates
    rng: random.Random
    stores: dict[str, tuple[str, str]] = field(default_factory=dict)  # kind → (id, secret)
    affiliate_keys: dict[str, str] = field(default_factory=dict)  # name → API key
    store_keys: dict[str, str] = field(default_factory=dict)  # store id → its API key
    buyer_cookie: str = ""  # the sealed alliance_vid of the last buyer who followed a link

    @property
    def token(self) -> str:
        return self.admin["Authorization"].removeprefix("Bearer ")

    def storefront(self, kind: str) -> StorefrontClient:
        store_id, secret = self.stores[kind]
        return StorefrontClient(store_id, secret, self.tracker)

    async def register_stores(self) -> None:
        """Each store through the admin API, joined at its rate, its catalog uploaded once the
        tracker knows it (the directory reaches the tracker through Kafka)."""
        admin = AdminClient(self.token, self.commission)
        for kind, rate in RATES.items():
            store_id = f"{kind}-{self.run}"
            created = await admin.create_store(
                store_id, f"Demo {kind}", f"https://{kind}.shop.example/item/{{product_id}}"
            )
            await StoreClient(store_id, created.api_key, self.commission).join(rate)
            self.stores[kind] = (store_id, created.webhook_secret)
            self.store_keys[store_id] = created.api_key
            await self.upload_catalog(kind)

    async def upload_catalog(self, kind: str) -> None:
        store_id, _ = self.stores[kind]
        catalog = [
            {
                "event_id": f"cat-{product_id}",
                "type": "product_upserted",
                "occurred_at": _now(),
                "product_id": product_id,
                "category_id": category,
                "title": title,
                "price": price,
                "currency": "USD",
            }
            for product_id, category, title, price, _ in PRODUCTS[kind]
        ]

        async def uploaded() -> bool | None:
            try:
                await self.storefront(kind).post_events(catalog)
            except ApiError:  # the directory has not reached the tracker yet: 401 or 503
                return None
            return True

        await _until(uploaded, f"the tracker to know {store_id}")

    async def register_affiliates(self) -> None:
        admin = AdminClient(self.token, self.commission)
        for name in AFFILIATES:
            created = await admin.create_affiliate(f"{name}-{self.run}", name)
            self.affiliate_keys[name] = created.api_key
        stores = ", ".join(s for s, _ in self.stores.values())
        print(f"registered stores {stores} and affiliates {', '.join(self.affiliate_keys)}")

    async def link_for(self, affiliate: str, store_id: str, product: str) -> str:
        """An affiliate link, once the tracker knows the affiliate's key (from the directory)."""

        # from the affiliate's own address (through the trusted loopback proxy header), not
        # the buyer's: a click from the address that made the link is a self-referral
        tracker = httpx.AsyncClient(
            base_url=self.tracker.base_url,
            headers={"X-Forwarded-For": "198.51.100.20"},
            timeout=self.tracker.timeout,
        )
        key = self.affiliate_keys[affiliate]

        async def fetched() -> str | None:
            try:
                link = await AffiliateClient(key, tracker=tracker).create_link(store_id, product)
            except ApiError:  # the tracker has not caught up with the directory yet
                return None
            return link.code

        async with tracker:
            return await _until(fetched, "an affiliate link")

    async def visit_through_links(self, n: int, store_id: str, product_id: str) -> str:
        """Buyer ``n`` follows one or two affiliates' links like a browser (the cookie the
        tracker set goes back with the next click); returns the visitor id the landing URL
        carries, as a storefront would report it."""
        visitor = ""
        cookies: dict[str, str] = {}
        for affiliate in self.rng.sample(AFFILIATES, k=self.rng.randint(1, 2)):
            code = await self.link_for(affiliate, store_id, product_id)
            resp = await self.tracker.get(
                f"/r/{code}",
                headers={**cookies, "User-Agent": BROWSER, "X-Forwarded-For": f"203.0.113.{n + 1}"},
            )
            visitor = parse_qs(urlsplit(resp.headers["location"]).query)["alliance_vid"][0]
            self.buyer_cookie = resp.cookies["alliance_vid"]
            cookies = {"Cookie": f"alliance_vid={self.buyer_cookie}"}
        return visitor

    async def send_orders(self, orders: int) -> list[dict[str, Any]]:
        """``orders`` orders through the storefront API, three buyers in four after affiliate
        links, one in six cancelled; returns (store, order, the status expected) of each."""
        placed: list[dict[str, Any]] = []
        for n in range(orders):
            kind = self.rng.choice(list(RATES))
            store_id, _ = self.stores[kind]
            product = self.rng.choice(PRODUCTS[kind])
            visitor = f"organic-{self.run}-{n}"
            if n % 4 != 3:
                visitor = await self.visit_through_links(n, store_id, product[0])
            order_id = f"demo-{self.run}-{n:03d}"
            status = "order_cancelled" if n % 6 == 5 else "order_completed"
            events = order_events(order_id, visitor, product, self.rng.randint(1, 3), status)
            await self.storefront(kind).post_events(events)
            placed.append(
                {
                    "store_id": store_id,
                    "order_id": order_id,
                    "status": status.removeprefix("order_"),
                }
            )
        print(f"sent {orders} orders through the tracker; waiting for the pipeline…")
        return placed

    async def settled(self, placed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The orders' views, once each is decided and in its final status."""

        async def views() -> list[dict[str, Any]] | None:
            found = []
            for p in placed:
                store = StoreClient(p["store_id"], self.token, self.commission)
                try:
                    view = await store.order(p["order_id"])
                except NotFound:
                    return None
                if not view.attribution_decided or view.status != p["status"]:
                    return None
                found.append(view.model_dump(mode="json"))
            return found

        return await _until(views, "the pipeline to settle the demo's orders")

    async def ledger(self) -> list[dict[str, Any]]:
        """Every ledger line, page by page."""
        lines = await FinanceClient(self.token, self.commission).ledger_lines()
        return [line.model_dump(mode="json") for line in lines]

    async def coupon_program(self) -> str:
        """The phones store lets a spoken code win: the policy ``coupon_wins`` and a code of
        insta-anna's (registered before any order, so attribution knows it in time)."""
        store_id, _ = self.stores["phones"]
        store = StoreClient(store_id, self.store_keys[store_id], self.commission)  # its own key
        code = f"ANNA-{self.run}".upper()
        await store.set_coupon_policy("coupon_wins")
        owner = f"insta-anna-{self.run}"
        await store.put_coupon(code, owner)
        print(f"{store_id}: coupon policy coupon_wins, code {code} for {owner}")
        return code

    async def coupon_order(self, code: str, n: int) -> dict[str, Any]:
        """A buyer who never clicked types the code: the order is placed, and completed once
        attribution has decided it by the code (a decision made before the code reached
        attribution is corrected while the order is open)."""
        store_id, _ = self.stores["phones"]
        order_id = f"demo-{self.run}-{n:03d}"
        placed, done = order_events(
            order_id, f"podcast-{self.run}", PRODUCTS["phones"][1], 2, "order_completed"
        )
        placed["coupon_code"] = code.lower()  # as the listener typed it: codes match any case
        await self.storefront("phones").post_events([placed])
        store = StoreClient(store_id, self.token, self.commission)

        async def by_code() -> bool | None:
            try:
                return True if (await store.order(order_id)).rule == "coupon" else None
            except NotFound:
                return None

        await _until(by_code, "the coupon order to be attributed by its code")
        await self.storefront("phones").post_events([done])
        return {"store_id": store_id, "order_id": order_id, "status": "completed"}

    async def camp(self, limit: int = 5) -> None:
        """The alliance camp as a stranger sees it and as the last buyer does (ranked with
        what they viewed, clicked and bought, once the reports consumer has it)."""
        cookie = {"Cookie": f"alliance_vid={self.buyer_cookie}"}

        async def personal() -> dict[str, Any] | None:
            resp = await self.commission.get(
                "/v1/camp/products", params={"limit": limit}, headers=cookie
            )
            page: dict[str, Any] = resp.json()
            return page if resp.status_code == 200 and page["personalised"] else None

        mine = await _until(personal, "the camp to know the buyer's history")
        plain = (await self.commission.get("/v1/camp/products", params={"limit": limit})).json()
        print()
        print("The alliance camp, first page: a stranger's | the last buyer's (boost, why)")
        for a, b in zip(plain["items"], mine["items"], strict=False):
            why = ",".join(b["because"]) or "-"
            left = f"{a['store_id']}/{a['product_id']}"
            right = f"{b['store_id']}/{b['product_id']}"
            print(f"  {left:32} | {right:32} ×{b['boost']} ({why})")


def order_events(
    order_id: str, visitor: str, product: Product, quantity: int, status: str
) -> list[dict[str, Any]]:
    """A storefront's events of one order: placed, then completed or cancelled."""
    product_id, category, title, unit_price, shipping = product
    return [
        {
            "event_id": f"{order_id}-placed",
            "type": "order_placed",
            "occurred_at": _now(),
            "order_id": order_id,
            "visitor_id": visitor,
            "currency": "USD",
            "items": [
                {
                    "product_id": product_id,
                    "category_id": category,
                    "title": title,
                    "quantity": quantity,
                    "unit_price": unit_price,
                    "shipping_fee": shipping,
                }
            ],
        },
        {
            "event_id": f"{order_id}-{status}",
            "type": status,
            "order_id": order_id,
            "occurred_at": _now(),
        },
    ]


def print_orders(views: list[dict[str, Any]]) -> None:
    print()
    head = ("order", "store", "status", "affiliate", "rule", "sales", "commission")
    print(
        f"{head[0]:20} {head[1]:14} {head[2]:10} {head[3]:19} {head[4]:10} {head[5]:>8} "
        f"{head[6]:>10}"
    )
    for v in views:
        sales = sum(Decimal(i["base"]) for i in v["items"])
        affiliate = v["affiliate_id"] or "(organic)"
        print(
            f"{v['order_id']:20} {v['store_id']:14} {v['status']:10} {affiliate:19} "
            f"{v['rule'] or '-':10} {sales:>8} {v['payable']:>10}"
        )


def print_ledger(lines: list[dict[str, Any]], run: str) -> None:
    """This run's ledger lines."""
    print()
    print("Commission ledger (each transaction's postings sum to zero):")
    print(f"{'txn':>5} {'kind':11} {'order':20} {'account':36} {'amount':>9}")
    for line in lines:
        if line["order_id"] and line["order_id"].startswith(f"demo-{run}"):
            print(
                f"{line['txn_id']:>5} {line['kind']:11} {line['order_id']:20} "
                f"{line['account']:36} {line['amount']:>9} {line['currency']}"
            )


def print_total(views: list[dict[str, Any]]) -> None:
    total = sum((Decimal(v["payable"]) for v in views), Decimal(0))
    paid = sum(1 for v in views if v["payable"] != "0.00")
    print(f"\ncommission payable this run: {total} USD on {paid} of {len(views)} orders")


async def run_demo(
    settings: Settings,
    orders: int = 12,
    seed: int = 7,
    out_dir: Path | None = None,
    quarter: Callable[[], Awaitable[int]] | None = None,
) -> int:
    """The live run, then ``quarter`` (the quarter's replay) when given; it ends with a payout
    run whose pain.001 file and one invoice are written under ``out_dir`` (default: the state
    folder's ``demo/``), in a folder per run."""
    tracker = httpx.AsyncClient(
        base_url=f"http://{settings.host}:{settings.tracker_port}", timeout=30
    )
    commission = httpx.AsyncClient(
        base_url=f"http://{settings.host}:{settings.commission_port}", timeout=30
    )
    async with tracker, commission:
        live = LiveRun(
            tracker,
            commission,
            admin={"Authorization": f"Bearer {settings.admin_token}"},
            run=new_id()[-6:],
            rng=random.Random(seed),
        )
        await live.register_stores()
        await live.register_affiliates()
        code = await live.coupon_program()
        placed = await live.send_orders(orders)
        placed.append(await live.coupon_order(code, orders))
        views = await live.settled(placed)
        print_orders(views)
        print_ledger(await live.ledger(), live.run)
        print_total(views)
        await live.camp()
        if quarter is not None:
            print("\nNow a realistic quarter for three stores (the seed store's size), replayed:")
            if failed := await quarter():
                return failed
        await payout_run(
            commission,
            live.admin,
            live.run,
            live.affiliate_keys,
            out_dir or settings.state_dir / "demo",
            settings.payout_holding_days,
        )
    return 0
