"""`alliance demo` part two: a realistic quarter for three stores, replayed into the running
services, then the seed store's dashboard.

The quarter is in the past, so it is replayed the way it would have been recorded: the
tracker's clicks and the storefronts' page views and order events are written to their topics
with their own times (as the tracker writes them), and the stores' program history (joins,
a rate change, an exit) goes through the commission service's own program API, run in-process
with its clock at the times it happened. Stores and affiliates go through the running commission
service's admin API. Everything after that is the real pipeline: attribution, commission,
ledger, reports; the demo waits for it by the consumers' committed offsets on Kafka.

Sizes follow the seed program's store (about 86k clicks from 46k visitors and a few thousand
orders in three months); the figures differ from its run to run only by the seed.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from services.commission.app import create_app
from shared.clock import FixedClock
from shared.config import Settings
from shared.events import (
    Click,
    Event,
    OrderCancelled,
    OrderCompleted,
    OrderItem,
    OrderPlaced,
    OrderRefunded,
    PageView,
    ProductUpserted,
    RefundItem,
    Topic,
    encode,
)
from shared.ids import new_id
from shared.kafka import committed_offsets_of, consumer_group, end_offsets_of, make_producer

DAYS = 91
CATEGORIES = {
    "phone-cases": ("Phone case", Decimal("2.99"), Decimal("9.99")),
    "chargers": ("Charger", Decimal("4.50"), Decimal("14.00")),
    "cables": ("Cable", Decimal("1.49"), Decimal("6.00")),
    "earbuds": ("Earbuds", Decimal("5.90"), Decimal("24.00")),
}
ADJECTIVES = ["Slim", "Rugged", "Clear", "Magnetic", "Braided", "Fast", "Mini", "Pro", "Eco"]
AFFILIATES = 40
#: the consumers the demo waits for (their names in the services), and the topics each reads of
#: what the quarter sends and decides
CONSUMERS = {
    "attribution": [Topic.CLICKS, Topic.ORDERS],
    "reports": [Topic.CLICKS, Topic.PAGE_VIEWS, Topic.CATALOG, Topic.ORDERS],
    "commission": [Topic.ORDERS, Topic.ATTRIBUTIONS],
}


@dataclass(frozen=True)
class StorePlan:
    kind: str
    clicks: int
    visitors: int
    orders: int  # orders by affiliate visitors (most inside a window, some not)
    organic_orders: int
    exits_on_day: int | None = None  # the store leaves the program that day
    rate_change_on_day: int | None = None  # default rate 6% → 8% that day


PLANS = [
    StorePlan("seed", 86_000, 46_000, 2_600, 900, rate_change_on_day=45),
    StorePlan("gadgets", 12_000, 7_000, 380, 150),
    StorePlan("outlet", 9_000, 5_500, 300, 120, exits_on_day=60),
]


@dataclass(frozen=True)
class ProgramStep:
    """A change of a store's program, ``day`` days after the quarter's start, as a request to
    the commission service's program API."""

    day: int
    method: str
    path: str  # under /v1/stores/{store_id}
    body: dict[str, str] | None = None


def program_history(plan: StorePlan) -> list[ProgramStep]:
    """The store joins five days before the quarter (the default rate, 6%), then what the plan
    says."""
    steps = [ProgramStep(-5, "POST", "/program/join", {})]
    if plan.rate_change_on_day is not None:
        steps.append(
            ProgramStep(plan.rate_change_on_day, "PUT", "/rates/default", {"rate": "0.08"})
        )
    if plan.exits_on_day is not None:
        steps.append(ProgramStep(plan.exits_on_day, "POST", "/program/exit"))
    return steps


def bar(label: str, done: int, total: int, width: int = 30) -> None:
    """A progress bar on stderr, redrawn in place."""
    frac = done / total if total else 1.0
    filled = int(width * frac)
    sys.stderr.write(
        f"\r{label:28} [{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} {done:>9,}/{total:,}"
    )
    sys.stderr.flush()


@dataclass
class Quarter:
    start: datetime
    end: datetime
    store_ids: dict[str, str]
    events: list[tuple[Topic, str, Event]]


#: (product id, category, title, lowest price, highest price)
Product = tuple[str, str, str, Decimal, Decimal]
Events = list[tuple[Topic, str, Event]]


@dataclass(frozen=True)
class _Span:
    """The quarter's time, and its random source: every draw comes from ``rng`` in one fixed
    order, so that a seed gives the same quarter."""

    start: datetime
    end: datetime
    rng: random.Random

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def any_time(self) -> datetime:
        return self.start + timedelta(seconds=self.rng.random() * self.seconds)


def plan_events(run: str, start: datetime, end: datetime, rng: random.Random) -> Quarter:
    """Every event of the quarter, in time order per topic (as recorded)."""
    span = _Span(start, end, rng)
    events: Events = []
    store_ids = {p.kind: f"{p.kind}-{run}" for p in PLANS}
    affiliates = affiliate_ids(run)
    for plan in PLANS:
        store = store_ids[plan.kind]
        products = _products(plan, rng)
        events += _catalog(store, products, start)
        clicks = _clicks(plan, store, products, affiliates, span)
        last_click: dict[str, datetime] = {}
        for c in clicks:
            events.append((Topic.CLICKS, c.visitor_id, c))
            if not c.suspicious:
                last_click[c.visitor_id] = max(
                    last_click.get(c.visitor_id, c.occurred_at), c.occurred_at
                )
            events += _landing_views(c, span)
        events += _organic_views(plan, store, span)
        clickers = list(last_click)
        for n in range(plan.orders + plan.organic_orders):
            events += _order(plan, store, n, products, (clickers, last_click), span)
    return Quarter(start, end, store_ids, events)


def affiliate_ids(run: str) -> list[str]:
    return [f"aff{n:02d}-{run}" for n in range(AFFILIATES)]


def _products(plan: StorePlan, rng: random.Random) -> list[Product]:
    """Thirty products of the store, of random categories."""
    return [
        (f"{plan.kind}-p{n:02d}", cat, f"{rng.choice(ADJECTIVES)} {name} {n}", lo, hi)
        for n, (cat, (name, lo, hi)) in enumerate(
            (c, CATEGORIES[c]) for c in rng.choices(list(CATEGORIES), k=30)
        )
    ]


def _catalog(store: str, products: list[Product], at: datetime) -> Events:
    return [
        (
            Topic.CATALOG,
            f"{store}:{product_id}",
            ProductUpserted(
                event_id=f"cat-{product_id}",
                occurred_at=at,
                store_id=store,
                product_id=product_id,
                category_id=cat,
                title=title,
                price=((lo + hi) / 2).quantize(Decimal("0.01")),
                currency="USD",
            ),
        )
        for product_id, cat, title, lo, hi in products
    ]


def _clicks(
    plan: StorePlan, store: str, products: list[Product], affiliates: list[str], span: _Span
) -> list[Click]:
    """Every visitor clicks once, some again; a few big affiliates and a long tail; a
    promotion week mid-quarter; 3% suspicious. In time order."""
    rng = span.rng
    weights = [1 / (n + 1) for n in range(len(affiliates))]
    visitors = [f"{store}-v{n}" for n in range(plan.visitors)]
    clicks: list[Click] = []
    for n in range(plan.clicks):
        visitor = visitors[n] if n < len(visitors) else rng.choice(visitors)
        at = span.any_time()
        if rng.random() < 0.15:
            at = span.start + timedelta(days=50 + rng.random() * 7)  # the promotion week
        clicks.append(
            Click(
                event_id=f"{store}-c{n}",
                occurred_at=at,
                received_at=at,
                affiliate_id=rng.choices(affiliates, weights)[0],
                store_id=store,
                product_id=rng.choice(products)[0],
                link_code="k1.demo.replay",
                visitor_id=visitor,
                suspicious=rng.random() < 0.03,
            )
        )
    clicks.sort(key=lambda c: c.occurred_at)
    return clicks


def _landing_views(click: Click, span: _Span) -> Events:
    """The landing page after a click, and a few more pages."""
    views: Events = []
    for k in range(span.rng.choice([1, 1, 2, 3])):
        view_at = click.occurred_at + timedelta(seconds=5 + 60 * k)
        if view_at < span.end:
            view = PageView(
                event_id=f"{click.click_id}-v{k}",
                occurred_at=view_at,
                store_id=click.store_id,
                visitor_id=click.visitor_id,
                product_id=click.product_id,
            )
            views.append((Topic.PAGE_VIEWS, click.visitor_id, view))
    return views


def _organic_views(plan: StorePlan, store: str, span: _Span) -> Events:
    """Visitors who never clicked an affiliate link (a third as many as those who did)."""
    views: Events = []
    for n in range(plan.visitors // 3):
        who = f"{store}-o{n}"
        view = PageView(
            event_id=f"{store}-ov{n}", occurred_at=span.any_time(), store_id=store, visitor_id=who
        )
        views.append((Topic.PAGE_VIEWS, who, view))
    return views


def _order(
    plan: StorePlan,
    store: str,
    n: int,
    products: list[Product],
    clicked: tuple[list[str], dict[str, datetime]],
    span: _Span,
) -> Events:
    """Order ``n``: the first ``plan.orders`` by clickers, about 30 hours after their last
    click (some outside the window), the rest organic at any time; then its fate. Nothing
    placed in the quarter's last hour."""
    rng = span.rng
    clickers, last_click = clicked  # who clicked (not suspiciously), and when last
    if n < plan.orders:
        visitor = rng.choice(clickers)
        at = last_click[visitor] + timedelta(hours=rng.expovariate(1 / 30))
    else:
        visitor = f"{store}-o{rng.randrange(plan.visitors // 3)}"
        at = span.any_time()
    if at >= span.end - timedelta(hours=1):
        return []
    lines = _order_lines(products, rng)
    oid = f"{store}-o{n:05d}"
    placed = OrderPlaced(
        event_id=f"{oid}-p",
        occurred_at=at,
        store_id=store,
        order_id=oid,
        visitor_id=visitor,
        currency="USD",
        items=lines,
    )
    return [(Topic.ORDERS, visitor, placed), *_fate(placed, span)]


def _order_lines(products: list[Product], rng: random.Random) -> list[OrderItem]:
    """One product (three orders in four) or two, at a price in its range."""
    lines = []
    for product_id, cat, title, lo, hi in rng.sample(products, rng.choice([1, 1, 1, 2])):
        price = (lo + (hi - lo) * Decimal(rng.random())).quantize(Decimal("0.01"))
        lines.append(
            OrderItem(
                product_id=product_id,
                category_id=cat,
                title=title,
                quantity=rng.choice([1, 1, 1, 2, 3]),
                unit_price=price,
                shipping_fee=rng.choice([Decimal(0), Decimal("1.99")]),
            )
        )
    return lines


def _fate(order: OrderPlaced, span: _Span) -> Events:
    """7% cancelled within six hours; most completed 3 to 20 days later, 6% of those refunded
    in part (half a line) up to 10 days after; the rest still open at the quarter's end."""
    rng = span.rng
    store, oid, at, visitor = order.store_id, order.order_id, order.occurred_at, order.visitor_id
    fate = rng.random()
    done_at = min(at + timedelta(days=rng.uniform(3, 20)), span.end - timedelta(minutes=5))
    if fate < 0.07:
        cancelled = OrderCancelled(
            event_id=f"{oid}-x",
            occurred_at=min(at + timedelta(hours=6), done_at),
            store_id=store,
            order_id=oid,
        )
        return [(Topic.ORDERS, visitor, cancelled)]
    if not (fate < 0.9 and done_at > at):
        return []
    completed = OrderCompleted(
        event_id=f"{oid}-c", occurred_at=done_at, store_id=store, order_id=oid
    )
    events: Events = [(Topic.ORDERS, visitor, completed)]
    if rng.random() < 0.06:
        line = rng.choice(order.items)
        base = line.unit_price * line.quantity - line.shipping_fee
        refund_at = min(
            done_at + timedelta(days=rng.uniform(1, 10)), span.end - timedelta(minutes=1)
        )
        refunded = OrderRefunded(
            event_id=f"{oid}-r",
            occurred_at=refund_at,
            store_id=store,
            order_id=oid,
            refund_id="r1",
            items=[
                RefundItem(
                    product_id=line.product_id,
                    amount=max(Decimal("0.01"), (base / 2).quantize(Decimal("0.01"))),
                )
            ],
        )
        events.append((Topic.ORDERS, visitor, refunded))
    return events


async def run_quarter(settings: Settings, seed: int = 11) -> int:
    rng = random.Random(seed)
    run = new_id()[-5:]
    end = datetime.now(UTC).replace(microsecond=0)
    quarter = plan_events(run, end - timedelta(days=DAYS), end, rng)
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    base = f"http://{settings.host}:{settings.commission_port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as commission:
        keys = await create_stores(commission, admin, quarter)
        await replay_program_history(settings, quarter, keys)
        await create_affiliates(commission, admin, run)
        await replay(settings, quarter)
        await wait_for_pipeline(settings)
        seed_store = quarter.store_ids["seed"]
        auth = {"Authorization": f"Bearer {keys[seed_store]}"}
        resp = await commission.get(f"/v1/stores/{seed_store}/reports/dashboard", headers=auth)
        resp.raise_for_status()
    print_dashboard(resp.json(), seed_store)
    print()
    print(f"The seller dashboard: {base}/dashboard")
    print(f"  store id  {seed_store}")
    print(f"  store key {keys[seed_store]}")
    return 0


async def create_stores(
    commission: httpx.AsyncClient, admin: dict[str, str], quarter: Quarter
) -> dict[str, str]:
    """The three stores through the admin API; returns each one's API key."""
    keys: dict[str, str] = {}
    for plan in PLANS:
        store = quarter.store_ids[plan.kind]
        resp = await commission.post(
            "/v1/admin/stores",
            json={
                "store_id": store,
                "name": f"Demo {plan.kind} store",
                "landing_url_template": f"https://{plan.kind}.shop.example/{{product_id}}",
            },
            headers=admin,
        )
        resp.raise_for_status()
        keys[store] = resp.json()["api_key"]
    return keys


async def replay_program_history(
    settings: Settings, quarter: Quarter, keys: dict[str, str]
) -> None:
    """Each store's program changes through the commission service's program API, each at the
    time it happened: the service runs in-process (no consumers) on a clock set to that time,
    so its rules apply, the operation record shows those times, and its outbox tells the
    tracker and attribution (the directory), as for any change."""
    clock = FixedClock(quarter.start)
    app = create_app(settings, clock, consume=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://commission", timeout=60
        ) as commission,
    ):
        for plan in PLANS:
            store = quarter.store_ids[plan.kind]
            auth = {"Authorization": f"Bearer {keys[store]}"}  # the store changes its own program
            for step in program_history(plan):
                clock.set(quarter.start + timedelta(days=step.day))
                resp = await commission.request(
                    step.method, f"/v1/stores/{store}{step.path}", json=step.body, headers=auth
                )
                resp.raise_for_status()


async def create_affiliates(commission: httpx.AsyncClient, admin: dict[str, str], run: str) -> None:
    for n, affiliate in enumerate(affiliate_ids(run)):
        resp = await commission.post(
            "/v1/admin/affiliates",
            json={"affiliate_id": affiliate, "name": f"Affiliate {n}"},
            headers=admin,
        )
        resp.raise_for_status()


async def replay(settings: Settings, quarter: Quarter) -> None:
    """The quarter's events to their topics, as the tracker would have written them."""
    producer = make_producer(settings.kafka, linger_ms=20, client_id="alliance-demo")
    await producer.start()
    total = len(quarter.events)
    try:
        pending: list[Any] = []
        for n, (topic, key, event) in enumerate(quarter.events, start=1):
            pending.append(
                await producer.send(settings.topic(topic), encode(event), key=key.encode())
            )
            if len(pending) >= 5000 or n == total:
                await asyncio.gather(*pending)
                pending.clear()
                bar("replaying the quarter", n, total)
        sys.stderr.write("\n")
    finally:
        await producer.stop()


async def lag(settings: Settings) -> tuple[int, int]:
    """(records behind, records in all) of the consumers the demo waits for, by the offsets
    each committed to Kafka after committing its batch."""
    topics = {settings.topic(t) for ts in CONSUMERS.values() for t in ts}
    ends = await end_offsets_of(settings.kafka, sorted(topics))  # one request a round
    behind = grand = 0
    for consumer, ts in CONSUMERS.items():
        names = {settings.topic(t) for t in ts}
        group = consumer_group(settings.topic_prefix, consumer)
        committed = await committed_offsets_of(settings.kafka, group)
        for tp, end in ends.items():
            if tp.topic in names:
                grand += end
                behind += max(0, end - committed.get(tp, 0))
    return behind, grand


async def wait_for_pipeline(settings: Settings, quiet_rounds: int = 3) -> None:
    """Until every consumer has committed its topics' ends, ``quiet_rounds`` times in a row
    with nothing new on them (decisions flow on through a topic: attribution's outbox publishes
    after its commit)."""
    deadline = time.monotonic() + 900
    quiet = 0
    last = -1
    while quiet < quiet_rounds:
        behind, grand = await lag(settings)
        bar("the pipeline catching up", grand - behind, grand)
        quiet = quiet + 1 if behind == 0 and grand == last else 0
        last = grand
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not catch up within 15 minutes")
        await asyncio.sleep(1)
    sys.stderr.write("\n")


def print_dashboard(dash: dict[str, Any], store: str) -> None:
    t = dash["traffic"]
    print()
    print(f"Seed store {store}, {dash['first_day']} to {dash['last_day']}:")
    print(
        f"  affiliate clicks     {t['affiliate_clicks']:>10,}  (suspicious apart: "
        f"{t['suspicious_clicks']:,})"
    )
    print(f"  affiliate visitors   {t['affiliate_visitors']:>10,}")
    for tot in dash["totals"]:
        c = tot["currency"]
        print(f"  affiliate orders     {tot['orders']:>10,}  (cancelled {tot['cancelled_orders']})")
        print(f"  affiliate sales      {tot['affiliate_sales']:>10} {c}")
        print(f"  commission payable   {tot['commission_payable']:>10} {c}")
        print(f"  commission estimated {tot['commission_estimated']:>10} {c}")
