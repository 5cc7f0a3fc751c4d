"""The fault campaign: a generated history of 2,000 orders flows over HTTP through the three
services as real processes, every storefront batch delivered twice by a client that retries,
while the campaign kills attribution and commission (three times each), the tracker (once on
its own, once during a broker outage while clicks sit in its spool), the Kafka broker, and
PostgreSQL. After each fault the services heal on their own: every /readyz is 200 and a new
order goes end to end within 60 s. Afterwards every order equals the pure core's result to
the cent, the ledger verifies, nothing is lost or doubled, and each poison record mixed into
the stream is dead-lettered once while everything else is applied."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from deploy.stack import orchestrate
from services.attribution.models import clicks as attribution_clicks
from services.commission import models as cm
from services.commission.core.program import OpKind
from services.commission.orders.verify import verify
from services.commission.program.service import ProgramService
from services.tracker.links import Link, LinkSigner
from shared.clock import FixedClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.events import Topic
from shared.money import to_minor
from tests.conftest import free_ports
from tests.faults import campaign as c
from tests.integration.harness import BROWSER_UA, admin
from tests.integration.topics import read_topic
from tests.services.attribution.test_stream import produce

pytestmark = [pytest.mark.integration, pytest.mark.allow_logged_errors]

ORDERS = 2000
#: what the campaign did, when, and how long each recovery took
REPORT = Path(__file__).resolve().parents[1] / "artifacts" / "fault-campaign.txt"


def service_env(s: Settings, ports: dict[str, int], state: Path) -> dict[str, str]:
    return {
        "ALLIANCE_ENV": "dev",
        "ALLIANCE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "ALLIANCE_DATABASE_URL": s.database_url,
        "ALLIANCE_TOPIC_PREFIX": s.topic_prefix,
        "ALLIANCE_CONSUMER_BATCH_MS": "50",
        "ALLIANCE_TRACKER_PORT": str(ports["tracker"]),
        "ALLIANCE_ATTRIBUTION_PORT": str(ports["attribution"]),
        "ALLIANCE_COMMISSION_PORT": str(ports["commission"]),
        "ALLIANCE_SPOOL_DIR": str(state / "spool"),
        "ALLIANCE_STATE_DIR": str(state),
        "ALLIANCE_CLICK_ACK_TIMEOUT_MS": "300",
        # the storefront replays a history fast from one address: click quality is another
        # test's subject, here every click counts as the pure core counts it
        "ALLIANCE_FLOOD_CLICKS_PER_MINUTE": "100000000",
    }


class Campaign:
    def __init__(self, s: Settings, stack: orchestrate.Stack, tmp: Path) -> None:
        ports = dict(zip(c.SERVICES, free_ports(3), strict=True))
        self.s, self.stack = s, stack
        self.procs = c.Processes(s, tmp / "run", ports, service_env(s, ports, tmp / "state"))
        self.front = c.Storefront(self.procs.url("tracker"))
        self.signer = LinkSigner.from_config(s.link_keys)
        self.engine = make_engine(s.database_url, pool_size=2)
        self.stores: dict[str, c.Store] = {}  # history name → store
        self.canaries = 0
        self.recoveries: list[tuple[str, float, float]] = []  # fault, ready s, canary s
        self.ns = uuid.uuid4().hex[:6]
        now = datetime.now(UTC)
        self.history = c.generate(self.ns, ORDERS, now)
        self.canary_store = f"{self.ns}-canary"
        self.history.stores.append(self.canary_store)
        self.history.rates[self.canary_store] = self.history.rates[self.history.stores[0]]

    async def set_up(self) -> None:
        for name in c.SERVICES:
            self.procs.start(name)
        await self.procs.all_ready(90)
        async with httpx.AsyncClient(base_url=self.procs.url("commission")) as http:
            for name in self.history.stores:
                store_id = name  # already namespaced
                resp = await http.post(
                    "/v1/admin/stores",
                    json={
                        "store_id": store_id,
                        "name": store_id,
                        "landing_url_template": "https://shop.example/item/{product_id}",
                    },
                    headers=admin(self.s),
                )
                assert resp.status_code == 201, resp.text
                body = resp.json()
                self.stores[name] = c.Store(
                    store_id, body["api_key"], body["webhook_secret"], self.history.rates[name]
                )
        # the programs joined a month ago (as the history says), through the service's rules
        async with make_sessions(self.engine)() as session, session.begin():
            joining = ProgramService(FixedClock(self.history.joined_at))
            for store in self.stores.values():
                await joining.change_program(
                    session, store.store_id, OpKind.JOIN, "campaign", rate=store.rate
                )

    # -- sending ---------------------------------------------------------------------------

    async def send_clicks(self, clicks: list[dict[str, Any]]) -> None:
        async def one(chunk: list[dict[str, Any]]) -> None:
            for click in chunk:
                store = self.stores[click["store_id"]]
                body = {
                    "event_id": click["event_id"],
                    "code": self.signer.sign(Link(click["affiliate_id"], store.store_id)),
                    "visitor_id": click["visitor_id"],
                    "occurred_at": click["occurred_at"].isoformat(),
                    "user_agent": BROWSER_UA,
                }
                for _ in range(2):  # delivered twice
                    await self.front.post(store, "/v1/clicks", body)

        await c.in_chunks(clicks, 10, one, parallel=32)

    async def send_events(self, events: list[dict[str, Any]]) -> None:
        by_store: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_store.setdefault(e["store_id"], []).append(e)

        async def batch(chunk: list[dict[str, Any]]) -> None:
            store = self.stores[chunk[0]["store_id"]]
            payload = {"events": [c.wire(e) for e in chunk]}
            for _ in range(2):  # every storefront batch delivered twice
                result = await self.front.post(store, "/v1/events", payload)
                assert result["rejected"] == 0, result

        for chunk_of_store in by_store.values():
            await c.in_chunks(chunk_of_store, 50, batch, parallel=4)

    # -- faults and healing ----------------------------------------------------------------

    async def canary(self) -> float:
        """A new order, clicked and completed now, settled by commission: seconds it took."""
        self.canaries += 1
        n = self.canaries
        now = datetime.now(UTC)
        h = self.history
        click = {
            "store_id": self.canary_store,
            "affiliate_id": h.affiliates[0],
            "event_id": f"canary-c{n}",
            "visitor_id": f"{self.ns}-canary-v{n}",
            "occurred_at": now - timedelta(seconds=2),
        }
        placed = {
            "store_id": self.canary_store,
            "event_id": f"canary-o{n}-placed",
            "type": "order_placed",
            "occurred_at": now - timedelta(seconds=1),
            "order_id": f"canary-o{n}",
            "visitor_id": click["visitor_id"],
            "currency": "USD",
            "items": [
                {
                    "product_id": "p1",
                    "category_id": "c1",
                    "title": "Canary",
                    "quantity": 1,
                    "unit_price": "10.00",
                    "shipping_fee": "0.00",
                }
            ],
        }
        done = {
            "store_id": self.canary_store,
            "event_id": f"canary-o{n}-done",
            "type": "order_completed",
            "occurred_at": now,
            "order_id": f"canary-o{n}",
        }
        h.clicks.append(click)
        h.placed.append(placed)
        h.later.append(done)
        start = time.monotonic()
        await self.send_clicks([click])
        await self.clicks_stored({f"s2s:{self.canary_store}:{click['event_id']}"})
        await self.send_events([placed, done])

        async def settled() -> bool:
            async with httpx.AsyncClient(base_url=self.procs.url("commission"), timeout=5) as http:
                with_store = f"/v1/stores/{self.canary_store}/orders/{placed['order_id']}"
                try:
                    resp = await http.get(with_store, headers=admin(self.s))
                except httpx.HTTPError:
                    return False
                view = resp.json() if resp.status_code == 200 else {}
                return view.get("status") == "completed" and view.get("payable") not in (
                    None,
                    "0.00",
                )

        while not await settled():
            assert time.monotonic() - start < 60, f"canary {n} did not settle within 60 s"
            await asyncio.sleep(0.25)
        return time.monotonic() - start

    async def healed(self, fault: str) -> None:
        ready = await self.procs.all_ready(60)
        took = await self.canary()
        self.recoveries.append((fault, ready, took))
        c.note(f"healed after {fault}: ready in {ready:.1f} s, canary in {took:.1f} s")

    async def crash_and_restart(self, name: str) -> None:
        self.procs.kill(name)
        self.procs.start(name)
        await self.healed(f"SIGKILL {name}")

    async def postgres_crash(self) -> None:
        c.crash_postgres(self.stack)
        await asyncio.sleep(3)
        await asyncio.to_thread(c.start_postgres, self.stack)
        await self.healed("PostgreSQL immediate stop")

    async def broker_outage_with_tracker_crash(self) -> list[str]:
        """The broker dies; buyers keep clicking (into the tracker's spool) and a storefront
        keeps posting (503 and retry); the tracker is killed with clicks in its spool and
        started again while the broker is still down; then the broker comes back."""
        c.kill_broker(self.stack)
        code = self.signer.sign(Link(self.history.affiliates[1], self.canary_store))
        spooled: list[str] = []
        async with httpx.AsyncClient(
            base_url=self.procs.url("tracker"), timeout=10, headers={"User-Agent": BROWSER_UA}
        ) as http:
            for _ in range(5):
                resp = await http.get(f"/r/{code}")
                assert resp.status_code == 302, resp.text
                spooled.append(
                    parse_qs(urlsplit(resp.headers["location"]).query)["alliance_click"][0]
                )
            # a storefront posting now is answered 503 (and retries) rather than left hanging
            started = time.monotonic()
            store = self.stores[self.canary_store]
            signed = c.Storefront(self.procs.url("tracker"))
            posting = asyncio.create_task(
                signed.post(
                    store,
                    "/v1/events",
                    {
                        "events": [
                            c.wire(
                                {
                                    "store_id": store.store_id,
                                    "event_id": f"outage-view-{self.ns}",
                                    "type": "page_view",
                                    "occurred_at": datetime.now(UTC),
                                    "visitor_id": f"{self.ns}-outage-v",
                                }
                            )
                        ]
                    },
                )
            )
            await asyncio.sleep(1)
            self.procs.kill("tracker")
            self.procs.start("tracker")
            # the tracker starts without the broker and redirects into its spool at once
            deadline = time.monotonic() + 30
            while True:
                try:
                    resp = await http.get(f"/r/{code}")
                    if resp.status_code == 302:
                        spooled.append(
                            parse_qs(urlsplit(resp.headers["location"]).query)["alliance_click"][0]
                        )
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the tracker did not start without Kafka"
                await asyncio.sleep(0.2)
        await asyncio.to_thread(c.start_broker, self.stack)
        await asyncio.wait_for(posting, timeout=90)
        if signed.http is not None:
            await signed.http.aclose()
        c.note(
            f"outage post acknowledged after {time.monotonic() - started:.1f} s, "
            f"{signed.retries} retries ({signed.errors})"
        )
        await self.healed("Kafka broker SIGKILL + tracker SIGKILL during the outage")
        return spooled

    # -- reading the outcome ---------------------------------------------------------------

    async def clicks_stored(self, click_ids: set[str], timeout_s: float = 120) -> None:
        start = time.monotonic()
        ids = sorted(click_ids)
        while True:
            async with self.engine.connect() as conn:
                n = 0
                for i in range(0, len(ids), 1000):
                    n += (
                        await conn.execute(
                            select(func.count()).where(
                                attribution_clicks.c.click_id.in_(ids[i : i + 1000])
                            )
                        )
                    ).scalar_one()
            if n == len(ids):
                return
            assert time.monotonic() - start < timeout_s, f"{len(ids) - n} clicks never stored"
            await asyncio.sleep(0.5)


async def while_flowing(
    sending: Coroutine[Any, Any, None], faults: list[Callable[[], Awaitable[None]]]
) -> None:
    """Inject ``faults`` one after the other (each healed before the next) while ``sending``
    runs, then let the sending finish."""
    flow = asyncio.ensure_future(sending)
    try:
        for fault in faults:
            await asyncio.sleep(2)  # traffic in flight when the fault strikes
            await fault()
        await flow
    finally:
        if not flow.done():
            flow.cancel()
            await asyncio.wait({flow})


def poisons(s: Settings, ns: str) -> list[tuple[Topic, str, bytes]]:
    """Records no consumer can apply, of each kind that once stopped a pipeline, written
    straight to the topics (the tracker refuses them at the edge)."""

    def order(name: str, **changes: Any) -> bytes:
        event: dict[str, Any] = {
            "v": 1,
            "event_id": f"poison-{ns}-{name}",
            "type": "order_placed",
            "occurred_at": "2026-01-01T00:00:00Z",
            "store_id": f"{ns}-s0",
            "order_id": f"poison-{ns}-{name}",
            "visitor_id": f"{ns}-v0",
            "currency": "USD",
            "items": [{"product_id": "p1", "quantity": 1, "unit_price": "1.00"}],
        }
        return orjson.dumps(event | changes)

    click = {
        "v": 1,
        "type": "click",
        "event_id": f"poison-{ns}-nul-click",
        "occurred_at": "2026-01-01T00:00:00Z",
        "received_at": "2026-01-01T00:00:00Z",
        "affiliate_id": f"{ns}-a0",
        "store_id": f"{ns}-s0",
        "link_code": "k1.x.y",
        "visitor_id": f"{ns}-v0",
        "user_agent": "Mozilla/5.0\u0000",
    }
    nul_item = [{"product_id": "p1", "quantity": 1, "unit_price": "1.00", "title": "a\u0000b"}]
    huge = [{"product_id": "p1", "quantity": 1_000_000, "unit_price": "1000000000"}] * 20
    return [
        (Topic.ORDERS, f"{ns}-v0", b'{"not": json'),
        # the window arithmetic leaves the representable range
        (Topic.ORDERS, f"{ns}-v0", order("ancient", occurred_at="0001-01-01T00:00:00Z")),
        (Topic.ORDERS, f"{ns}-v0", order("future", occurred_at="9999-12-31T23:59:59Z")),
        # totals beyond a 64-bit count of minor units
        (Topic.ORDERS, f"{ns}-v0", order("huge", items=huge)),
        # derived ids longer than their schema and columns allow
        (Topic.ORDERS, f"{ns}-v0", order("long", order_id="o" * 128)),
        (Topic.ORDERS, f"{ns}-v0", order("store", store_id="s" * 128, event_id="e" * 72)),
        # a NUL character, which PostgreSQL refuses
        (Topic.ORDERS, f"{ns}-v0", order("nul", items=nul_item)),
        (Topic.CLICKS, f"{ns}-v0", orjson.dumps(click)),
    ]


async def test_faults_lose_nothing_and_double_nothing(
    stack_settings: Settings, settings: Settings, tmp_path: Path
) -> None:
    stack = orchestrate.Stack.from_settings(stack_settings)
    camp = Campaign(settings, stack, tmp_path)
    h = camp.history
    try:
        await camp.set_up()
        await camp.healed("start")  # the first canary: everything works before any fault
        started = time.monotonic()

        # 1. clicks flow while attribution and commission are killed, then the broker dies
        #    and the tracker with it (clicks in its spool, storefront posts answered 503)
        spooled: list[str] = []

        async def outage() -> None:
            spooled.extend(await camp.broker_outage_with_tracker_crash())

        await while_flowing(
            camp.send_clicks(h.clicks),
            [
                lambda: camp.crash_and_restart("attribution"),
                lambda: camp.crash_and_restart("commission"),
                outage,
            ],
        )
        campaign_clicks = {f"s2s:{c_['store_id']}:{c_['event_id']}" for c_ in h.clicks}
        await camp.clicks_stored(campaign_clicks | set(spooled))

        # 2. placements flow (poison records among them) while the tracker is killed on its
        #    own, PostgreSQL stops immediately, and attribution is killed
        placed = [p for p in h.placed if not p["order_id"].startswith("canary")]
        await produce(settings, poisons(settings, camp.ns))
        await while_flowing(
            camp.send_events(placed),
            [
                lambda: camp.crash_and_restart("tracker"),
                camp.postgres_crash,
                lambda: camp.crash_and_restart("attribution"),
            ],
        )

        # 3. completions, cancellations and refunds flow while commission is killed twice and
        #    attribution once
        later = [e for e in h.later if not e["order_id"].startswith("canary")]
        await while_flowing(
            camp.send_events(later),
            [
                lambda: camp.crash_and_restart("commission"),
                lambda: camp.crash_and_restart("attribution"),
                lambda: camp.crash_and_restart("commission"),
            ],
        )
        sending = time.monotonic() - started

        # everything settles to what the pure core computes, to the cent
        want = c.expected(h, {s: s for s in h.stores})
        got = await settled(camp, want)
        mismatches = [k for k in want if got.get(k) != summary_of(want[k])]
        assert not mismatches, (
            f"{len(mismatches)} of {len(want)} orders differ from the core, e.g. "
            f"{[(k, got.get(k), summary_of(want[k])) for k in mismatches[:5]]}"
        )
        await ledger_holds(camp, want)

        # nothing the tracker acknowledged or spooled was lost
        await camp.clicks_stored(set(spooled))

        # each poison dead-lettered once by each consumer that could not apply it
        letters = await read_topic(settings.kafka, settings.topic(Topic.DEAD_LETTERS))
        # a letter is at least once on Kafka (a crash between its acknowledgement and the
        # commit of the offsets that pass it writes it again); (consumer, topic, partition,
        # offset) identifies it, and `alliance dlq list` shows each once
        identities = {
            (d["consumer"], d["source_topic"], d["partition"], d["offset"]): d for d in letters
        }
        by_value = Counter(d["value"] for d in identities.values())
        sent = [v.decode() for _, _, v in poisons(settings, camp.ns)]
        assert set(by_value) == set(sent), set(by_value) ^ set(sent)  # each, and only them
        assert by_value['{"not": json'] == 2  # attribution and commission each, once
        # at most once per consumer of its topic (orders: 2, clicks: attribution and reports)
        assert all(1 <= n <= 2 for n in by_value.values()), by_value
    finally:
        if camp.front.http is not None:
            await camp.front.http.aclose()
        camp.procs.stop_all()
        await camp.engine.dispose()
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text("\n".join(c.log_lines) + "\n")
    c.note(
        f"{len(want)} orders, {len(h.clicks)} clicks, {camp.front.sent} acknowledged posts "
        f"({camp.front.retries} retries: {camp.front.errors}), sending took {sending:.0f} s"
    )
    REPORT.write_text("\n".join(c.log_lines) + "\n")
    for fault, ready, took in camp.recoveries:
        assert ready <= 60, (fault, ready)
        assert took <= 60, (fault, took)


def summary_of(r: Any) -> tuple[str, str | None, bool, int, int]:
    return (
        r.status.value,
        r.affiliate_id,
        r.chargeable,
        to_minor(r.commission, r.currency),
        to_minor(r.reversed, r.currency),
    )


async def settled(
    camp: Campaign, want: dict[tuple[str, str], Any], timeout_s: float = 180
) -> dict[tuple[str, str], tuple[str, str | None, bool, int, int]]:
    """The commission service's summary of every expected order, once they all match or the
    time is up (then what there is, for the assertion to show)."""
    o = cm.orders
    stores = sorted({k[0] for k in want})
    start = time.monotonic()
    while True:
        async with camp.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    o.c.store_id,
                    o.c.order_id,
                    o.c.status,
                    o.c.affiliate_id,
                    o.c.chargeable,
                    o.c.commission_minor,
                    o.c.reversed_minor,
                ).where(o.c.store_id.in_(stores))
            )
            got = {
                (r.store_id, r.order_id): (
                    r.status,
                    r.affiliate_id,
                    bool(r.chargeable),
                    r.commission_minor or 0,
                    r.reversed_minor or 0,
                )
                for r in rows
            }
        if all(got.get(k) == summary_of(v) for k, v in want.items()):
            return got
        if time.monotonic() - start > timeout_s:
            return got
        await asyncio.sleep(1)


async def ledger_holds(camp: Campaign, want: dict[tuple[str, str], Any]) -> None:
    """The ledger's invariants hold, and what it pays each order's affiliate is the order's
    payable commission exactly once."""
    async with make_sessions(camp.engine)() as session:
        result = await verify(session)
        assert not result.transactions_unbalanced
        assert not result.currencies_unbalanced
        assert result.orders_owing == {}
        assert result.summaries_stale == []
        ours = set(want)
        t, p = cm.ledger_transactions, cm.ledger_postings
        rows = await session.execute(
            select(t.c.store_id, t.c.order_id, func.sum(p.c.amount_minor), func.count())
            .join(p, p.c.txn_id == t.c.id)
            .where(
                t.c.store_id.in_(sorted({k[0] for k in ours})),
                p.c.account.like("affiliate:%"),
            )
            .group_by(t.c.store_id, t.c.order_id)
        )
        posted = {(r[0], r[1]): int(r[2]) for r in rows}
    for key, r in want.items():
        payable = to_minor(r.payable, r.currency)
        assert posted.get(key, 0) == payable, (key, posted.get(key), payable)
