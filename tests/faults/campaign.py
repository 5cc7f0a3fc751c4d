"""The fault campaign's parts: the services as real processes, the faults, a storefront client
that retries as storefronts do, and a generated history with its expected outcome (computed by
the pure core, never by the services)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from deploy import procs
from deploy.stack import kafka, orchestrate, postgres
from services.attribution.core import Click, OrderRef, decide
from services.commission.core.commission import (
    LineItem,
    OrderCommission,
    OrderFacts,
    OrderStatus,
    Refund,
    RefundItem,
    compute_order,
)
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp
from shared.config import Settings
from shared.secrets import signature_header
from tests.integration.harness import BROWSER_UA

SERVICES = ("tracker", "attribution", "commission")

log_lines: list[str] = []


def note(message: str) -> None:
    """What the campaign did and when (printed at the end, kept for the figures of
    docs/reliability.md)."""
    log_lines.append(f"{time.strftime('%H:%M:%S')} {message}")


# -- the services as processes ---------------------------------------------------------------


@dataclass
class Processes:
    settings: Settings
    run_dir: Path
    ports: dict[str, int]
    env: dict[str, str]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str) -> None:
        procs.start(name, [name], self.run_dir, self.env)

    def kill(self, name: str) -> None:
        """SIGKILL: no graceful anything (the process group, as a crash would)."""
        pid = procs.read_pid(self.run_dir / f"{name}.pid")
        assert pid is not None, f"{name} is not running"
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while procs.read_pid(self.run_dir / f"{name}.pid") is not None:
            assert time.monotonic() < deadline, f"{name} survived SIGKILL"
            time.sleep(0.05)
        note(f"SIGKILL {name} (pid {pid})")

    def stop_all(self) -> None:
        for name in SERVICES:
            procs.stop(name, self.run_dir)

    async def all_ready(self, timeout_s: float = 60) -> float:
        """Seconds until every service's /readyz is 200 (fails past ``timeout_s``)."""
        start = time.monotonic()
        async with httpx.AsyncClient(timeout=5) as http:
            pending = set(SERVICES)
            while pending:
                for name in sorted(pending):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"{self.url(name)}/readyz")).status_code == 200:
                            pending.discard(name)
                if pending:
                    assert time.monotonic() - start < timeout_s, f"not ready: {pending}"
                    await asyncio.sleep(0.25)
        return time.monotonic() - start


# -- the stack's faults ----------------------------------------------------------------------


def kill_broker(stack: orchestrate.Stack) -> None:
    kafka.kill(stack.kafka)
    note("SIGKILL Kafka broker")


def start_broker(stack: orchestrate.Stack) -> None:
    kafka.start(stack.kafka)
    note("Kafka broker restarted")


def crash_postgres(stack: orchestrate.Stack) -> None:
    """``pg_ctl stop -m immediate``: every process exits at once, no checkpoint; the next
    start recovers from the WAL."""
    postgres.crash(stack.postgres)
    note("PostgreSQL stopped immediately")


def start_postgres(stack: orchestrate.Stack) -> None:
    postgres.start(stack.postgres)
    note("PostgreSQL restarted")


# -- a storefront that retries ---------------------------------------------------------------


@dataclass
class Store:
    store_id: str
    api_key: str
    secret: str
    rate: Decimal


@dataclass
class Storefront:
    """Posts signed requests as a storefront does: a 10 s client timeout, and on any error or
    5xx a retry with backoff until the tracker answers 202 (a 4xx other than a not-yet-known
    store is a bug of the test and fails at once)."""

    tracker: str
    sent: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    http: httpx.AsyncClient | None = None

    async def post(self, store: Store, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        import orjson

        body = orjson.dumps(payload)
        backoff = 0.2
        if self.http is None:  # one pool of kept-alive connections, as a storefront keeps
            self.http = httpx.AsyncClient(
                base_url=self.tracker,
                timeout=10,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            )
        http = self.http
        while True:
            stamp = int(time.time())
            headers = {
                "X-Alliance-Store": store.store_id,
                "X-Alliance-Signature": signature_header(store.secret, stamp, body),
                "Content-Type": "application/json",
                "User-Agent": BROWSER_UA,
            }
            try:
                resp = await http.post(path, content=body, headers=headers)
            except httpx.HTTPError as exc:
                what = type(exc).__name__
            else:
                if resp.status_code == 202:
                    self.sent += 1
                    result: dict[str, Any] = resp.json()
                    return result
                what = str(resp.status_code)
                assert resp.status_code >= 500 or resp.status_code == 401, resp.text
            self.errors[what] = self.errors.get(what, 0) + 1
            self.retries += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 3.0)


# -- the history and its expected outcome ----------------------------------------------------


@dataclass
class History:
    """Clicks (server to server), order events in time order, and the programs, generated
    from a seed. Ids are namespaced by ``ns`` so that runs never collide."""

    ns: str
    joined_at: datetime
    stores: list[str]
    rates: dict[str, Decimal]
    affiliates: list[str]
    clicks: list[dict[str, Any]] = field(default_factory=list)  # POST /v1/clicks bodies + store
    placed: list[dict[str, Any]] = field(default_factory=list)
    later: list[dict[str, Any]] = field(default_factory=list)  # completions, cancels, refunds

    def order_count(self) -> int:
        return len(self.placed)


def generate(ns: str, orders: int, now: datetime, seed: int = 7) -> History:
    rng = random.Random(seed)
    stores = [f"{ns}-s{n}" for n in range(3)]
    rates = dict(zip(stores, (Decimal("0.06"), Decimal("0.08"), Decimal("0.10")), strict=True))
    h = History(
        ns,
        now - timedelta(days=30),
        stores,
        rates,
        [f"{ns}-a{n}" for n in range(5)],
    )
    start = now - timedelta(hours=2)
    visitors = [f"{ns}-v{n}" for n in range(orders * 2 // 3)]
    for n in range(orders):
        store = rng.choice(stores)
        visitor = rng.choice(visitors)
        placed_at = start + timedelta(seconds=n * 3)
        for c in range(rng.choice((0, 1, 1, 2))):
            at = placed_at - timedelta(minutes=rng.randint(1, 3 * 24 * 60))
            h.clicks.append(
                {
                    "store_id": store,
                    "affiliate_id": rng.choice(h.affiliates),
                    "event_id": f"c{n}-{c}",
                    "visitor_id": visitor,
                    "occurred_at": at,
                }
            )
        order_id = f"o{n}"
        items = [
            {
                "product_id": f"p{rng.randint(1, 20)}",
                "category_id": "c1",
                "title": "Thing",
                "quantity": rng.randint(1, 3),
                "unit_price": f"{rng.randint(100, 20_000) / 100:.2f}",
                "shipping_fee": f"{rng.choice((0, 0, 199, 499)) / 100:.2f}",
            }
            for _ in range(rng.randint(1, 3))
        ]
        h.placed.append(
            {
                "store_id": store,
                "event_id": f"{order_id}-placed",
                "type": "order_placed",
                "occurred_at": placed_at,
                "order_id": order_id,
                "visitor_id": visitor,
                "currency": "USD",
                "items": items,
            }
        )
        fate = rng.random()
        done_at = placed_at + timedelta(seconds=30)
        refund_at = placed_at + timedelta(seconds=rng.choice((10, 60)))  # before or after
        if fate < 0.6:
            h.later.append(_status(store, order_id, "order_completed", done_at))
        elif fate < 0.75:
            h.later.append(_status(store, order_id, "order_cancelled", done_at))
        if rng.random() < 0.2:
            price, quantity, product = (
                items[0]["unit_price"],
                items[0]["quantity"],
                items[0]["product_id"],
            )
            amount = Decimal(str(price)) * int(str(quantity)) * Decimal("0.3")
            h.later.append(
                _status(store, order_id, "order_refunded", refund_at)
                | {
                    "refund_id": "r1",
                    "items": [{"product_id": product, "amount": f"{amount:.2f}"}],
                }
            )
    return h


def _status(store: str, order_id: str, kind: str, at: datetime) -> dict[str, Any]:
    return {
        "store_id": store,
        "event_id": f"{order_id}-{kind}",
        "type": kind,
        "occurred_at": at,
        "order_id": order_id,
    }


def expected(h: History, store_ids: dict[str, str]) -> dict[tuple[str, str], OrderCommission]:
    """Every order's commission as the pure core computes it from the history."""
    clicks = [
        Click(
            f"s2s:{store_ids[c['store_id']]}:{c['event_id']}",
            store_ids[c["store_id"]],
            c["visitor_id"],
            c["affiliate_id"],
            c["occurred_at"],
        )
        for c in h.clicks
    ]
    programs = {
        store_ids[s]: ProgramHistory((ProgramOp(OpKind.JOIN, h.joined_at, rate=h.rates[s]),))
        for s in h.stores
    }
    facts: dict[tuple[str, str], OrderFacts] = {}
    visitors: dict[tuple[str, str], str] = {}
    for p in h.placed:
        key = (store_ids[p["store_id"]], p["order_id"])
        visitors[key] = p["visitor_id"]
        facts[key] = OrderFacts(
            order_id=p["order_id"],
            store_id=key[0],
            currency=p["currency"],
            placed_at=p["occurred_at"],
            items=tuple(
                LineItem(
                    i["product_id"],
                    i["category_id"],
                    i["quantity"],
                    Decimal(i["unit_price"]),
                    Decimal(i["shipping_fee"]),
                    i["title"],
                )
                for i in p["items"]
            ),
        )
    for e in h.later:
        key = (store_ids[e["store_id"]], e["order_id"])
        f = facts[key]
        if e["type"] == "order_refunded":
            refund = Refund(
                e["refund_id"],
                e["occurred_at"],
                tuple(RefundItem(i["product_id"], Decimal(i["amount"])) for i in e["items"]),
            )
            facts[key] = _replace(f, refunds=(*f.refunds, refund))
        elif f.status is OrderStatus.PLACED:
            status = (
                OrderStatus.COMPLETED if e["type"] == "order_completed" else OrderStatus.CANCELLED
            )
            facts[key] = _replace(f, status=status)
    out = {}
    for key, f in facts.items():
        ref = OrderRef(f.order_id, f.store_id, visitors[key], f.placed_at)
        decision = decide(ref, clicks)
        attributed = _replace(
            f,
            affiliate_id=decision.affiliate_id,
            click_id=decision.click.click_id if decision.click else None,
            click_at=decision.click.occurred_at if decision.click else None,
        )
        out[key] = compute_order(attributed, programs[f.store_id])
    return out


def _replace(facts: OrderFacts, **changes: Any) -> OrderFacts:
    from dataclasses import replace

    return replace(facts, **changes)


def wire(event: dict[str, Any]) -> dict[str, Any]:
    """An event as a storefront posts it (no store id: the signature says which store)."""
    out = {k: v for k, v in event.items() if k != "store_id"}
    out["occurred_at"] = event["occurred_at"].isoformat()
    return out


async def in_chunks(
    items: list[Any], size: int, send: Callable[[list[Any]], Awaitable[None]], parallel: int = 4
) -> None:
    """Send ``items`` in chunks of ``size``, ``parallel`` requests at a time."""
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    queue: asyncio.Queue[list[Any]] = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)

    async def worker() -> None:
        while not queue.empty():
            await send(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(parallel)))
