"""Running the three services in-process against the real stack, talking HTTP to them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from alliance_client import (
    AdminClient,
    AffiliateClient,
    ApiError,
    Conflict,
    FinanceClient,
    NotFound,
    StoreClient,
    StorefrontClient,
    Unauthorized,
)
from alliance_client.signing import store_headers
from shared.clock import Clock
from shared.config import Settings

T = TypeVar("T")

#: Buyers use browsers: httpx's own user agent is (rightly) a bot to the click-quality check.
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@dataclass
class Services:
    tracker: httpx.AsyncClient
    attribution: httpx.AsyncClient
    commission: httpx.AsyncClient
    apps: dict[str, FastAPI]


@asynccontextmanager
async def running(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Services]:
    """The three apps with their lifespans (consumers included) and an HTTP client each."""
    from services.attribution.app import create_app as attribution_app
    from services.commission.app import create_app as commission_app
    from services.tracker.app import create_app as tracker_app

    apps = {
        "tracker": tracker_app(settings, clock),
        "attribution": attribution_app(settings, clock),
        "commission": commission_app(settings, clock),
    }
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url=f"http://{name}.test",
                    headers={"User-Agent": BROWSER_UA},
                )
            )
        yield Services(clients["tracker"], clients["attribution"], clients["commission"], apps)


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 30.0) -> T:
    """Poll ``probe`` until it returns something other than None (the pipeline is async)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Store:
    store_id: str
    api_key: str
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.api_key)


def uid() -> str:
    """A short random suffix for the ids of one test."""
    return uuid.uuid4().hex[:8]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin(settings: Settings) -> dict[str, str]:
    return bearer(settings.admin_token)


def visitor_of(redirect: httpx.Response) -> str:
    """The buyer's visitor id, off the landing URL a click's redirect sends the buyer to."""
    return parse_qs(urlsplit(redirect.headers["location"]).query)["alliance_vid"][0]


async def signed_post(
    client: httpx.AsyncClient, path: str, store: Store, payload: object, *, at: int | None = None
) -> httpx.Response:
    """POST ``payload`` signed with the store's webhook secret, as a storefront does (the
    Python client's signing; the raw answer, whatever its status)."""
    import orjson

    body = orjson.dumps(payload)
    headers = store_headers(store.store_id, store.secret, body, timestamp=at)
    return await client.post(path, content=body, headers=headers)


def storefront(svc: Services, store: Store) -> StorefrontClient:
    """The store's storefront client of the tracker."""
    return StorefrontClient(store.store_id, store.secret, svc.tracker)


async def register_store(
    svc: Services, settings: Settings, store_id: str, *, landing: str | None = None
) -> Store:
    """A store created through the admin API: not in the program, and unknown to the tracker
    until the directory reaches it. ``landing``: its landing URL template (by default one
    host per store)."""
    created = await AdminClient(settings.admin_token, svc.commission).create_store(
        store_id, store_id, landing or f"https://{store_id}.shop.example/item/{{product_id}}"
    )
    return Store(store_id, created.api_key, created.webhook_secret)


async def new_store(
    svc: Services,
    settings: Settings,
    store_id: str,
    *,
    products: tuple[str, ...] = ("p1",),
    join: bool = True,
    rate: str | None = None,
    landing: str | None = None,
) -> Store:
    """Register a store, join it (unless ``join=False``), and upload its products once the
    tracker knows the store (with no products: once the tracker knows it)."""
    store = await register_store(svc, settings, store_id, landing=landing)
    if join:
        joined = await StoreClient(store_id, store.api_key, svc.commission).join(rate)
        assert joined.state == "joined", joined
    events = [
        {
            "event_id": f"cat-{store_id}-{p}",
            "type": "product_upserted",
            "occurred_at": _now(),
            "product_id": p,
            "category_id": "c1",
            "title": f"Product {p}",
            "price": "10.00",
            "currency": "USD",
        }
        for p in products
    ]

    async def known() -> Store | None:
        try:
            await storefront(svc, store).post_events(events)
        except Unauthorized:
            return None  # the tracker has not seen the store yet
        return store

    return await eventually(known)


async def new_finance_user(svc: Services, settings: Settings, user_id: str) -> str:
    """A finance user's API key."""
    admin = AdminClient(settings.admin_token, svc.commission)
    return (await admin.create_finance_user(user_id)).api_key


async def new_affiliate(svc: Services, settings: Settings, affiliate_id: str) -> str:
    """An affiliate's API key."""
    admin = AdminClient(settings.admin_token, svc.commission)
    return (await admin.create_affiliate(affiliate_id, affiliate_id)).api_key


async def new_link(
    svc: Services, key: str, store_id: str, product_id: str | None = None
) -> dict[str, object]:
    """An affiliate's link, fetched from the affiliate's own address (not the buyers': a click
    from the address that created the link is a self-referral). Retries until the tracker has
    caught up with the directory and catalog."""
    if "tracker" in svc.apps:
        transport = httpx.ASGITransport(app=svc.apps["tracker"], client=("198.51.100.7", 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://tracker.test")
    else:
        # through the (trusted, loopback) proxy header: the affiliate is not the buyer
        client = httpx.AsyncClient(
            base_url=str(svc.tracker.base_url), headers={"X-Forwarded-For": "198.51.100.7"}
        )

    affiliate = AffiliateClient(key, tracker=client)

    async def fetched() -> dict[str, object] | None:
        try:
            link = await affiliate.create_link(store_id, product_id)
        except (Unauthorized, NotFound, Conflict):
            return None
        return link.model_dump(mode="json")

    async with client:
        return await eventually(fetched)


async def order_view(
    svc: Services, settings: Settings, order: tuple[str, str], **want: Any
) -> dict[str, Any] | None:
    """The commission service's view of ``order`` (store id, order id) once it shows every
    field of ``want``; None until then (for `eventually`)."""
    store_id, order_id = order
    try:
        view = await StoreClient(store_id, settings.admin_token, svc.commission).order(order_id)
    except ApiError:
        return None
    body: dict[str, Any] = view.model_dump(mode="json")
    return body if all(body.get(k) == v for k, v in want.items()) else None


async def buyer_clicks(svc: Services, key: str, store_id: str, product_id: str = "p1") -> str:
    """A buyer follows the affiliate's (``key``) link to the store's product: the buyer's
    visitor id."""
    link = await new_link(svc, key, store_id, product_id)
    redirect = await svc.tracker.get(f"/r/{link['code']}")
    assert redirect.status_code == 302, redirect.text
    return visitor_of(redirect)


#: a database nobody can reach (port 1), with a user and password that must never leak
UNREACHABLE_DATABASE = "postgresql+asyncpg://nobody:secretpw@127.0.0.1:1/none"


@asynccontextmanager
async def commission_without_database(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The commission app (without its consumers) on a database nobody can reach, started, and
    a client of it."""
    from services.commission.app import create_app

    app = create_app(
        settings.model_copy(update={"database_url": UNREACHABLE_DATABASE}), consume=False
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://commission.test"
        ) as client,
    ):
        yield client


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


async def ledger_lines(
    client: httpx.AsyncClient, settings: Settings, **params: str
) -> list[dict[str, Any]]:
    """Every ledger posting (all pages), optionally filtered like the API (``account``)."""
    finance = FinanceClient(settings.admin_token, client)
    return [line.model_dump(mode="json") for line in await finance.ledger_lines(**params)]
