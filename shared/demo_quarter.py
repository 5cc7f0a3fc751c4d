"""`alliance demo` part two: a realistic quarter for three stores, replayed into the running
services, then the seed store's dashboard.

The quarter is in the past, so it is replayed the way it would have been recorded: the
tracker's clicks and the storefronts' page views and order events are written to their topics
with their own times (as the tracker writes them), and the stores' program history (joins,
a rate change, an exit) is written with the times it happened through the commission
service's own program rules. Stores, affiliates and the catalog go through the HTTP APIs.
Everything after that is the real pipeline: attribution, commission, ledger, reports.

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
from sqlalchemy import func, select

from services.commission.core.program import OpKind
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
from shared.kafka import make_producer

DAYS = 91
CATEGORIES = {
    "phone-cases": ("Phone case", Decimal("2.99"), Decimal("9.99")),
    "chargers": ("Charger", Decimal("4.50"), Decimal("14.00")),
    "cables": ("Cable", Decimal("1.49"), Decimal("6.00")),
    "earbuds": ("Earbuds", Decimal("5.90"), Decimal("24.00")),
}
ADJECTIVES = ["Slim", "Rugged", "Clear", "Magnetic", "Braided", "Fast", "Mini", "Pro", "Eco"]


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


def plan_events(run: str, start: datetime, end: datetime, rng: random.Random) -> Quarter:
    """Every event of the quarter, in time order per topic (as recorded)."""
    span = (end - start).total_seconds()
    events: list[tuple[Topic, str, Event]] = []
    store_ids = {p.kind: f"{p.kind}-{run}" for p in PLANS}
    affiliates = [f"aff{n:02d}-{run}" for n in range(40)]
    weights = [1 / (n + 1) for n in range(len(affiliates))]  # a few big affiliates, a long tail
    for plan in PLANS:
        store = store_ids[plan.kind]
        products = [
            (f"{plan.kind}-p{n:02d}", cat, f"{rng.choice(ADJECTIVES)} {name} {n}", lo, hi)
            for n, (cat, (name, lo, hi)) in enumerate(
                (c, CATEGORIES[c]) for c in rng.choices(list(CATEGORIES), k=30)
            )
        ]
        for product_id, cat, title, lo, hi in products:
            events.append(
                (
                    Topic.CATALOG,
                    f"{store}:{product_id}",
                    ProductUpserted(
                        event_id=f"cat-{product_id}",
                        occurred_at=start,
                        store_id=store,
                        product_id=product_id,
                        category_id=cat,
                        title=title,
                        price=((lo + hi) / 2).quantize(Decimal("0.01")),
                        currency="USD",
                    ),
                )
            )
        visitors = [f"{store}-v{n}" for n in range(plan.visitors)]
        last_click: dict[str, datetime] = {}
        clicks: list[Click] = []
        # every visitor clicks once, some again; busier weekdays and a mid-quarter promotion
        for n in range(plan.clicks):
            visitor = visitors[n] if n < len(visitors) else rng.choice(visitors)
            at = start + timedelta(seconds=rng.random() * span)
            if rng.random() < 0.15:
                at = start + timedelta(days=50 + rng.random() * 7)  # the promotion week
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
        for c in clicks:
            events.append((Topic.CLICKS, c.visitor_id, c))
            if not c.suspicious:
                last_click[c.visitor_id] = max(
                    last_click.get(c.visitor_id, c.occurred_at), c.occurred_at
                )
            for k in range(rng.choice([1, 1, 2, 3])):  # the landing page, and a few more
                view_at = c.occurred_at + timedelta(seconds=5 + 60 * k)
                if view_at < end:
                    events.append(
                        (
                            Topic.PAGE_VIEWS,
                            c.visitor_id,
                            PageView(
                                event_id=f"{c.click_id}-v{k}",
                                occurred_at=view_at,
                                store_id=store,
                                visitor_id=c.visitor_id,
                                product_id=c.product_id,
                            ),
                        )
                    )
        for n in range(plan.visitors // 3):  # visitors who never clicked an affiliate link
            at = start + timedelta(seconds=rng.random() * span)
            who = f"{store}-o{n}"
            events.append(
                (
                    Topic.PAGE_VIEWS,
                    who,
                    PageView(
                        event_id=f"{store}-ov{n}", occurred_at=at, store_id=store, visitor_id=who
                    ),
                )
            )
        clickers = list(last_click)
        for n in range(plan.orders + plan.organic_orders):
            if n < plan.orders:
                visitor = rng.choice(clickers)
                at = last_click[visitor] + timedelta(hours=rng.expovariate(1 / 30))
            else:
                visitor = f"{store}-o{rng.randrange(plan.visitors // 3)}"
                at = start + timedelta(seconds=rng.random() * span)
            if at >= end - timedelta(hours=1):
                continue
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
            oid = f"{store}-o{n:05d}"
            events.append(
                (
                    Topic.ORDERS,
                    visitor,
                    OrderPlaced(
                        event_id=f"{oid}-p",
                        occurred_at=at,
                        store_id=store,
                        order_id=oid,
                        visitor_id=visitor,
                        currency="USD",
                        items=lines,
                    ),
                )
            )
            fate = rng.random()
            done_at = min(at + timedelta(days=rng.uniform(3, 20)), end - timedelta(minutes=5))
            if fate < 0.07:
                events.append(
                    (
                        Topic.ORDERS,
                        visitor,
                        OrderCancelled(
                            event_id=f"{oid}-x",
                            occurred_at=min(at + timedelta(hours=6), done_at),
                            store_id=store,
                            order_id=oid,
                        ),
                    )
                )
            elif fate < 0.9 and done_at > at:
                events.append(
                    (
                        Topic.ORDERS,
                        visitor,
                        OrderCompleted(
                            event_id=f"{oid}-c", occurred_at=done_at, store_id=store, order_id=oid
                        ),
                    )
                )
                if rng.random() < 0.06:
                    line = rng.choice(lines)
                    base = line.unit_price * line.quantity - line.shipping_fee
                    refund_at = min(
                        done_at + timedelta(days=rng.uniform(1, 10)), end - timedelta(minutes=1)
                    )
                    events.append(
                        (
                            Topic.ORDERS,
                            visitor,
                            OrderRefunded(
                                event_id=f"{oid}-r",
                                occurred_at=refund_at,
                                store_id=store,
                                order_id=oid,
                                refund_id="r1",
                                items=[
                                    RefundItem(
                                        product_id=line.product_id,
                                        amount=max(
                                            Decimal("0.01"), (base / 2).quantize(Decimal("0.01"))
                                        ),
                                    )
                                ],
                            ),
                        )
                    )
    return Quarter(start, end, store_ids, events)


async def run_quarter(settings: Settings, seed: int = 11) -> int:
    from services.commission import models as m
    from services.commission.admin.service import AdminService
    from services.commission.program.service import ProgramService
    from shared.clock import FixedClock
    from shared.db import make_engine, make_sessions

    rng = random.Random(seed)
    run = new_id()[-5:]
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=DAYS)
    quarter = plan_events(run, start, end, rng)
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    base = f"http://{settings.host}:{settings.commission_port}"
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    keys: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=60) as commission:
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
            # the program's history, at the times it happened (the service's rules apply)
            steps: list[tuple[int, OpKind, Decimal | None]] = [(-5, OpKind.JOIN, None)]
            if plan.rate_change_on_day is not None:
                steps.append((plan.rate_change_on_day, OpKind.DEFAULT_RATE, Decimal("0.08")))
            if plan.exits_on_day is not None:
                steps.append((plan.exits_on_day, OpKind.EXIT, None))
            async with sessions() as session, session.begin():
                for day, kind, rate in steps:
                    at = start + timedelta(days=day)
                    service = ProgramService(FixedClock(at))
                    await service.change_program(session, store, kind, "demo", rate=rate)
                # as the join and exit endpoints do: the tracker and attribution learn of it
                publisher = AdminService(settings.secret_key, settings.topic_prefix)
                await publisher.publish_store(session, store, end)
        for n in range(40):
            resp = await commission.post(
                "/v1/admin/affiliates",
                json={"affiliate_id": f"aff{n:02d}-{run}", "name": f"Affiliate {n}"},
                headers=admin,
            )
            resp.raise_for_status()
        await _replay(settings, quarter)
        await _wait_for_pipeline(settings, sessions, m)
        seed_store = quarter.store_ids["seed"]
        auth = {"Authorization": f"Bearer {keys[seed_store]}"}
        dash = (
            await commission.get(f"/v1/stores/{seed_store}/reports/dashboard", headers=auth)
        ).json()
    await engine.dispose()
    t = dash["traffic"]
    print()
    print(f"Seed store {seed_store}, {dash['first_day']} to {dash['last_day']}:")
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
    print()
    print(f"The seller dashboard: {base}/dashboard")
    print(f"  store id  {seed_store}")
    print(f"  store key {keys[seed_store]}")
    return 0


async def _replay(settings: Settings, quarter: Quarter) -> None:
    producer = make_producer(settings.kafka_bootstrap, linger_ms=20, client_id="alliance-demo")
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


async def _wait_for_pipeline(settings: Settings, sessions: Any, m: Any) -> None:
    """Until every consumer has stored offsets at its topics' ends and attribution has
    published every decision (three checks in a row: decisions flow on through a topic)."""
    from services.attribution.models import consumer_offsets as attribution_offsets
    from services.attribution.models import outbox as attribution_outbox
    from shared.kafka import end_offsets_of

    topics = {
        "attribution": [Topic.CLICKS, Topic.ORDERS],
        "reports": [Topic.CLICKS, Topic.PAGE_VIEWS, Topic.CATALOG],
        "commission": [Topic.ORDERS, Topic.ATTRIBUTIONS],
    }
    deadline = time.monotonic() + 900
    quiet = 0
    while quiet < 3:
        behind = grand = 0
        every = sorted({settings.topic(t) for ts in topics.values() for t in ts})
        end = await end_offsets_of(settings.kafka_bootstrap, every)  # one request a round
        async with sessions() as session:
            for consumer, ts in topics.items():
                names = [settings.topic(t) for t in ts]
                ends = sum(n for tp, n in end.items() if tp.topic in names)
                table = attribution_offsets if consumer == "attribution" else m.consumer_offsets
                stored = (
                    await session.execute(
                        select(func.coalesce(func.sum(table.c.next_offset), 0)).where(
                            table.c.consumer == consumer, table.c.topic.in_(names)
                        )
                    )
                ).scalar_one()
                grand += ends
                behind += max(0, ends - int(stored))
            unpublished = (
                await session.execute(select(func.count()).select_from(attribution_outbox))
            ).scalar_one()
        bar("the pipeline catching up", grand - behind, grand)
        quiet = quiet + 1 if behind == 0 and unpublished == 0 else 0
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not catch up within 15 minutes")
        await asyncio.sleep(1)
    sys.stderr.write("\n")
