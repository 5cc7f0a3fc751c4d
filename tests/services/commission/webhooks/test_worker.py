"""The webhook use cases and the delivery worker on a real PostgreSQL, with a receiver on
loopback and a clock the test moves: fan-out and idempotency, two workers never sending one
delivery twice and keeping each order's order, the 72-hour limit, timeouts, redirects."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.core.commission import LineItem, OrderFacts, OrderStatus
from services.commission.core.webhooks import (
    ENDPOINT_CONCURRENCY,
    GIVE_UP_AFTER,
    Limits,
    Method,
    Notice,
    OwnerKind,
    WebhookEvent,
    order_notice,
    payout_notice,
)
from services.commission.webhooks.service import (
    MAX_ENDPOINTS,
    Owner,
    TooManyEndpoints,
    WebhookService,
)
from services.commission.webhooks.worker import DeliveryWorker
from shared.clock import FixedClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from tests.integration.receiver import Receiver, receiver

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
AFFILIATE = Owner(OwnerKind.AFFILIATE, "aff-1")
EVERY = list(WebhookEvent)


def facts(order_id: str, affiliate: str = "aff-1") -> OrderFacts:
    return OrderFacts(
        order_id=order_id,
        store_id="s-1",
        currency="USD",
        placed_at=T0,
        items=(LineItem("p1", "c1", 1, Decimal("10.00"), Decimal(0), "Case"),),
        status=OrderStatus.COMPLETED,
        affiliate_id=affiliate,
    )


def notice(order_id: str, n: int, affiliate: str = "aff-1") -> Notice:
    kinds = [WebhookEvent.ORDER_ATTRIBUTED, WebhookEvent.COMMISSION_PAYABLE]
    return order_notice(
        kinds[n % 2] if n < 2 else WebhookEvent.COMMISSION_REVERSED,
        f"{order_id}/{n}",
        facts(order_id, affiliate),
        Decimal("0.60"),
        T0,
        sub_id=None,
    )


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(settings.database_url)
    try:
        yield make_sessions(engine)
    finally:
        await engine.dispose()


class World:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.clock = FixedClock(T0)
        self.service = WebhookService("secret", self.clock, allow_private=True)

    def worker(self, timeout_s: float = 5.0, slots: int = 100) -> DeliveryWorker:
        return DeliveryWorker(
            self.sessions,
            self.service,
            clock=self.clock,
            allow_private=True,
            timeout_s=timeout_s,
            limits=Limits(slots=slots, per_owner=slots),
        )

    async def register(self, owner: Owner, url: str) -> str:
        async with self.sessions() as s, s.begin():
            row, _ = await self.service.register(s, owner, url, Method.POST, EVERY)
            return str(row.id)

    async def notify(self, notices: list[Notice]) -> int:
        async with self.sessions() as s, s.begin():
            return await self.service.notify(s, notices)

    async def log(self, owner: Owner, endpoint_id: str) -> list[Any]:
        async with self.sessions() as s, s.begin():
            return await self.service.deliveries(s, owner, endpoint_id, None, 500)

    async def endpoint(self, owner: Owner, endpoint_id: str) -> Any:
        async with self.sessions() as s, s.begin():
            return await self.service.endpoint(s, owner, endpoint_id)


@asynccontextmanager
async def world(settings: Settings, **receiver_args: Any) -> AsyncIterator[tuple[World, Receiver]]:
    with receiver(**receiver_args) as hooks:
        async with database(settings) as sessions:
            yield World(sessions), hooks


async def test_each_event_is_written_once_per_receiving_endpoint(settings: Settings) -> None:
    async with world(settings) as (w, hooks):
        mine = await w.register(AFFILIATE, hooks.url("/a"))
        other = await w.register(Owner(OwnerKind.AFFILIATE, "aff-2"), hooks.url("/b"))
        store = await w.register(Owner(OwnerKind.STORE, "s-1"), hooks.url("/s"))
        elsewhere = await w.register(Owner(OwnerKind.STORE, "s-2"), hooks.url("/t"))
        finance = await w.register(Owner(OwnerKind.FINANCE, "fin"), hooks.url("/f"))
        first = notice("o-1", 0)
        assert await w.notify([first]) == 3  # the affiliate's, the store's, finance's
        assert await w.notify([first]) == 0  # a replay adds nothing
        assert await w.notify([payout_notice("k", 1, "aff-1", {"USD": "1"}, T0, T0)]) == 2
        counts = {
            e: len(await w.log(o, e))
            for o, e in [
                (AFFILIATE, mine),
                (Owner(OwnerKind.AFFILIATE, "aff-2"), other),
                (Owner(OwnerKind.STORE, "s-1"), store),
                (Owner(OwnerKind.STORE, "s-2"), elsewhere),
                (Owner(OwnerKind.FINANCE, "fin"), finance),
            ]
        }
        assert counts == {mine: 2, other: 0, store: 1, elsewhere: 0, finance: 2}


async def test_workers_side_by_side_send_each_delivery_once_and_each_orders_in_order(
    settings: Settings,
) -> None:
    async with world(settings, delay_s=0.01) as (w, hooks):
        owners = [AFFILIATE, Owner(OwnerKind.STORE, "s-1"), Owner(OwnerKind.FINANCE, "fin")]
        endpoints = [await w.register(o, hooks.url(f"/{o.kind.value}")) for o in owners]
        orders = [f"o-{i}" for i in range(8)]
        written = [notice(o, n) for n in range(3) for o in orders]  # interleaved orders
        assert await w.notify(written) == 3 * len(written)
        workers = [w.worker(slots=3) for _ in range(3)]  # small claims: they take turns
        try:
            for _ in range(10):
                await asyncio.gather(*(worker.drain() for worker in workers))
        finally:
            for worker in workers:
                await worker.close()
        assert sum(worker.sent for worker in workers) == 3 * len(written)  # no attempt twice
        for owner in owners:
            prefix = f"/{owner.kind.value}"
            assert sorted(hooks.event_ids(prefix)) == sorted(n.id for n in written)  # each once
            for order_id in orders:
                got = [
                    orjson.loads(r.body)["type"]
                    for r in hooks.delivered(prefix)
                    if orjson.loads(r.body)["data"]["order_id"] == order_id
                ]
                assert got == ["order.attributed", "commission.payable", "commission.reversed"]
        for owner, endpoint_id in zip(owners, endpoints, strict=True):
            assert {d.status for d in await w.log(owner, endpoint_id)} == {"delivered"}


async def test_a_delivery_failing_for_72_hours_fails_and_frees_its_order(
    settings: Settings,
) -> None:
    async with world(settings, down=True) as (w, hooks):
        mine = await w.register(AFFILIATE, hooks.url("/a"))
        await w.notify([notice("o-1", 0), notice("o-1", 1)])
        worker = w.worker()
        try:
            assert await worker.run_once() == 1  # the first event only: the second waits
            assert await worker.run_once() == 0  # not due for a second
            w.clock.advance(GIVE_UP_AFTER - timedelta(seconds=1))
            assert await worker.run_once() == 1
            [second, first] = await w.log(AFFILIATE, mine)
            assert first.status == "pending"
            assert first.next_attempt_at == T0 + GIVE_UP_AFTER  # the last try at 72 h exactly
            w.clock.advance(timedelta(seconds=2))  # past the endpoint's own 2 s backoff
            assert await worker.run_once() == 1
            [second, first] = await w.log(AFFILIATE, mine)
            assert (first.status, first.attempts, first.next_attempt_at) == ("failed", 3, None)
            assert first.last_status_code == 500
            assert second.status == "pending"  # its order is free again
            w.clock.advance(timedelta(hours=1))
            hooks.down = False
            assert await worker.run_once() == 1
            [second, _] = await w.log(AFFILIATE, mine)
            assert second.status == "delivered"
        finally:
            await worker.close()
        endpoint = await w.endpoint(AFFILIATE, mine)
        assert (endpoint.status, endpoint.consecutive_failures) == ("active", 0)


async def test_a_slow_receiver_times_out_and_is_retried(settings: Settings) -> None:
    async with world(settings, delay_s=1.0) as (w, hooks):
        mine = await w.register(AFFILIATE, hooks.url("/a"))
        await w.notify([notice("o-1", 0)])
        worker = w.worker(timeout_s=0.2)
        try:
            assert await worker.run_once() == 1
        finally:
            await worker.close()
        [row] = await w.log(AFFILIATE, mine)
        assert row.status == "pending"
        assert row.last_error == "timeout after 0.2s"
        assert row.last_status_code is None
        assert row.last_latency_ms >= 200
        assert row.next_attempt_at == T0 + timedelta(seconds=1)
        assert len(hooks.requests) == 1


async def test_a_redirect_is_a_failure_and_is_not_followed(settings: Settings) -> None:
    with receiver() as elsewhere:
        async with world(settings, status=302, redirect_to=elsewhere.url("/x")) as (w, hooks):
            mine = await w.register(AFFILIATE, hooks.url("/a"))
            await w.notify([notice("o-1", 0)])
            worker = w.worker()
            try:
                assert await worker.run_once() == 1
            finally:
                await worker.close()
            [row] = await w.log(AFFILIATE, mine)
            assert (row.status, row.last_status_code, row.last_error) == (
                "pending",
                302,
                "HTTP 302",
            )
            assert len(hooks.requests) == 1
            assert elsewhere.requests == []


async def test_a_failing_endpoint_is_probed_one_delivery_at_a_time(settings: Settings) -> None:
    async with world(settings, down=True) as (w, hooks):
        mine = await w.register(AFFILIATE, hooks.url("/a"))
        await w.notify([notice(f"o-{i}", 0) for i in range(5)])
        worker = w.worker()
        try:
            assert await worker.run_once() == ENDPOINT_CONCURRENCY  # a healthy endpoint
            w.clock.advance(timedelta(hours=1))
            assert await worker.run_once() == 1  # a failing one: one probe per backoff
            assert await worker.run_once() == 0
            hooks.down = False
            w.clock.advance(timedelta(hours=1))
            assert await worker.run_once() == 1  # the probe succeeds …
            assert await worker.run_once() == ENDPOINT_CONCURRENCY  # … and the rest follow
            assert await worker.drain() == 4 - ENDPOINT_CONCURRENCY
        finally:
            await worker.close()
        assert {d.status for d in await w.log(AFFILIATE, mine)} == {"delivered"}
        assert (await w.endpoint(AFFILIATE, mine)).consecutive_failures == 0


async def test_a_redelivery_goes_out_in_the_next_round_with_a_fresh_schedule(
    settings: Settings,
) -> None:
    async with world(settings, down=True) as (w, hooks):
        mine = await w.register(AFFILIATE, hooks.url("/a"))
        await w.notify([notice("o-1", 0)])
        worker = w.worker()
        try:
            for _ in range(10):  # ten failed attempts: both backoffs are at 512 s now
                w.clock.advance(timedelta(hours=1))
                assert await worker.run_once() == 1
            now = w.clock.now()
            assert (await w.endpoint(AFFILIATE, mine)).retry_at == now + timedelta(seconds=512)
            [row] = await w.log(AFFILIATE, mine)
            async with w.sessions() as s, s.begin():
                await w.service.redeliver(s, AFFILIATE, mine, row.id)
            assert await worker.run_once() == 1  # now, the endpoint's backoff too
        finally:
            await worker.close()
        [row] = await w.log(AFFILIATE, mine)
        assert (row.status, row.attempts, row.due_since) == ("pending", 1, now)
        assert row.next_attempt_at == now + timedelta(seconds=1)  # not after an hour
        assert len(hooks.requests) == 11


async def test_enabling_gives_a_backlog_older_than_72_hours_a_fresh_schedule(
    settings: Settings,
) -> None:
    async with world(settings, down=True) as (w, hooks):
        mine = await w.register(AFFILIATE, hooks.url("/a"))
        await w.notify([notice("o-1", 0), notice("o-2", 0)])
        worker = w.worker()
        try:
            while (await w.endpoint(AFFILIATE, mine)).status == "active":
                assert await worker.run_once() >= 1
                w.clock.advance(timedelta(hours=1))
            assert (await w.endpoint(AFFILIATE, mine)).consecutive_failures == 20
            w.clock.advance(GIVE_UP_AFTER)  # days later, the owner re-enables it
            now = w.clock.now()
            async with w.sessions() as s, s.begin():
                await w.service.enable(s, AFFILIATE, mine)
            assert await worker.run_once() == 2  # both, at once (still down)
        finally:
            await worker.close()
        rows = await w.log(AFFILIATE, mine)
        assert [(r.status, r.attempts, r.due_since) for r in rows] == [("pending", 1, now)] * 2
        assert {r.next_attempt_at for r in rows} == {now + timedelta(seconds=1)}


async def test_concurrent_registrations_never_exceed_the_owners_limit(
    settings: Settings,
) -> None:
    async with world(settings) as (w, hooks):
        owner = Owner(OwnerKind.AFFILIATE, f"aff-{uuid.uuid4().hex[:8]}")
        for i in range(MAX_ENDPOINTS - 5):
            await w.register(owner, hooks.url(f"/{i}"))

        async def one(i: int) -> bool:
            try:
                await w.register(owner, hooks.url(f"/more-{i}"))
            except TooManyEndpoints:
                return False
            return True

        added = await asyncio.gather(*(one(i) for i in range(10)))  # at once, 5 too many
        assert sum(added) == 5
        async with w.sessions() as s, s.begin():
            assert len(await w.service.endpoints(s, owner)) == MAX_ENDPOINTS


async def test_a_dead_workers_leases_expire_and_its_deliveries_are_sent_again(
    settings: Settings,
) -> None:
    async with world(settings) as (w, hooks):
        mine = await w.register(AFFILIATE, hooks.url("/a"))
        await w.notify([notice("o-1", 0), notice("o-2", 0)])
        lease = timedelta(seconds=1)
        async with w.sessions() as s, s.begin():  # a worker claims, then dies before sending
            claimed = await w.service.claim(s, w.clock.now(), Limits(), {}, lease)
        assert len(claimed) == 2
        worker = w.worker()
        try:
            assert await worker.run_once() == 0  # leased: nobody else sends them
            await asyncio.sleep(lease.total_seconds() + 0.2)  # the database's clock
            assert await worker.run_once() == 2  # the leases expired: due again
        finally:
            await worker.close()
        assert sorted(hooks.event_ids()) == sorted(r.event_id for r in claimed)
        rows = await w.log(AFFILIATE, mine)
        assert {(r.status, r.lease_until) for r in rows} == {("delivered", None)}


async def test_drain_waits_for_attempts_already_in_flight(settings: Settings) -> None:
    """An attempt started by a poke of the running worker holds its slot: drain waits for
    it (recorded) instead of returning with it still under way."""
    async with world(settings, delay_s=0.3) as (w, hooks):
        mine = await w.register(AFFILIATE, hooks.url("/a"))
        await w.notify([notice("o-1", 0)])
        worker = w.worker()
        try:
            assert await worker.fill() == 1  # started, not awaited: as a poke does
            assert worker.in_flight == 1
            await worker.drain()
            assert worker.in_flight == 0
        finally:
            await worker.close()
        [row] = await w.log(AFFILIATE, mine)
        assert row.status == "delivered"
        assert len(hooks.requests) == 1
