"""Defect 3 of issue 19: one slow receiver must not slow the others. The delivery worker runs
for real (its own clock, its own loop) against two receivers on loopback, one answering
after 9 s and one at once, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import sys
import time

import pytest

from services.commission.core.webhooks import ENDPOINT_CONCURRENCY, Method, OwnerKind
from services.commission.webhooks.service import Owner, WebhookService
from services.commission.webhooks.worker import DeliveryWorker
from shared.config import Settings
from tests.integration.receiver import receiver
from tests.services.commission.webhooks.test_worker import EVERY, database, notice

pytestmark = pytest.mark.integration

FAST_EVENTS = 200
SLOW_ANSWER_S = 9.0


def p99(values: list[float]) -> float:
    """The 99th percentile, nearest rank."""
    ranked = sorted(values)
    return ranked[math.ceil(0.99 * len(ranked)) - 1]


async def test_a_slow_receiver_never_delays_another_endpoints_deliveries(
    settings: Settings,
) -> None:
    """While an endpoint answering after 9 s is busy (a backlog of its deliveries due, some
    written among the others), the events of an endpoint that answers at once arrive within
    2 s of their creation (p99 over 200 events); the slow one never has more than its limit
    in flight."""
    with (
        receiver(delay_s=SLOW_ANSWER_S) as slow_hooks,
        receiver() as fast_hooks,
    ):
        async with database(settings) as sessions:
            service = WebhookService("secret", allow_private=True)  # real time
            slow, fast = Owner(OwnerKind.AFFILIATE, "slow"), Owner(OwnerKind.AFFILIATE, "fast")
            async with sessions() as s, s.begin():
                await service.register(s, slow, slow_hooks.url("/slow"), Method.POST, EVERY)
                await service.register(s, fast, fast_hooks.url("/fast"), Method.POST, EVERY)
            worker = DeliveryWorker(sessions, service, allow_private=True, timeout_s=10.0)
            running = asyncio.create_task(worker.run())
            created: dict[str, float] = {}
            try:
                async with sessions() as s, s.begin():  # a backlog for the slow one
                    await service.notify(s, [notice(f"s-{i}", 0, "slow") for i in range(40)])
                worker.poke()
                await asyncio.sleep(0.5)  # the slow one is busy
                for i in range(FAST_EVENTS):
                    batch = [notice(f"f-{i}", 0, "fast")]
                    if i % 10 == 0:
                        batch.append(notice(f"s-more-{i}", 0, "slow"))
                    async with sessions() as s, s.begin():
                        await service.notify(s, batch)
                        created[batch[0].id] = time.monotonic()  # before the commit
                    worker.poke()  # what the owner of a transaction that wrote some does
                    await asyncio.sleep(0.04)  # 200 events over about 8 s
                for _ in range(600):  # at most 30 s more
                    if len(fast_hooks.delivered()) >= FAST_EVENTS:
                        break
                    await asyncio.sleep(0.05)
                still_busy = slow_hooks.in_flight
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
    arrived = {r.headers["alliance-event-id"]: r.at for r in fast_hooks.delivered()}
    assert set(arrived) == set(created)
    delays = [arrived[e] - created[e] for e in created]
    sys.stderr.write(
        f"\nwebhook fairness: fast p50 {sorted(delays)[len(delays) // 2]:.3f} s, "
        f"p99 {p99(delays):.3f} s, max {max(delays):.3f} s over {len(delays)} events; "
        f"slow receiver: {len(slow_hooks.requests)} requests, "
        f"at most {slow_hooks.max_in_flight} at once\n"
    )
    assert p99(delays) < 2.0
    assert still_busy > 0  # the slow one was busy all along (a backlog of 9 s answers)
    assert slow_hooks.max_in_flight <= ENDPOINT_CONCURRENCY
