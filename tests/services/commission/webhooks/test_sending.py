"""One delivery attempt of the worker, without a database: the whole attempt's deadline and
the address it connects to. The receivers listen on loopback only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.webhooks.service import Outcome, WebhookService
from services.commission.webhooks.worker import DeliveryWorker
from shared.clock import FixedClock

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def make_worker(timeout_s: float = 5.0, allow_private: bool = True) -> DeliveryWorker:
    clock = FixedClock(T0)
    return DeliveryWorker(
        cast(async_sessionmaker[AsyncSession], None),  # _attempt never opens a session
        WebhookService("secret", clock, allow_private=allow_private),
        clock=clock,
        allow_private=allow_private,
        timeout_s=timeout_s,
    )


def row(url: str, method: str = "POST") -> Any:
    """What :meth:`WebhookService.claim_due` returns of a due delivery."""
    return SimpleNamespace(
        id=1,
        endpoint_id="we_1",
        event_id="evt_1",
        event_type="order.attributed",
        payload={"id": "evt_1", "type": "order.attributed", "data": {"order_id": "o-1"}},
        attempts=0,
        due_since=T0,
        url=url,
        method=method,
        secret_version=1,
        previous_secret_until=None,
        consecutive_failures=0,
    )


async def attempt(worker: DeliveryWorker, url: str, method: str = "POST") -> Outcome:
    try:
        return await worker._attempt(row(url, method))
    finally:
        await worker.close()


@asynccontextmanager
async def drip_server(byte_every_s: float, total_s: float) -> AsyncIterator[int]:
    """A receiver that reads the request, then sends its status line and headers one byte
    every ``byte_every_s`` for ``total_s`` (each read comes well within a read timeout)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            for _ in range(int(total_s / byte_every_s)):
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(byte_every_s)
            writer.write(b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_receiver_dripping_its_answer_times_out_within_the_deadline() -> None:
    async with drip_server(byte_every_s=0.05, total_s=4.0) as port:
        outcome = await attempt(make_worker(timeout_s=0.5), f"http://127.0.0.1:{port}/hook")
    assert outcome.status_code is None
    assert outcome.error == "timeout after 0.5s"
    assert not outcome.ok
    assert 500 <= outcome.latency_ms < 2000  # the deadline, not the 4 s the drip lasts


async def test_a_lookup_that_hangs_times_out_within_the_deadline() -> None:
    worker = make_worker(timeout_s=0.3, allow_private=False)

    async def hanging(host: str, port: int) -> list[str]:
        await asyncio.sleep(30)
        return ["127.0.0.1"]

    worker.resolve = hanging  # type: ignore[method-assign]
    outcome = await attempt(worker, "http://receiver.test/hook")
    assert (outcome.status_code, outcome.error) == (None, "timeout after 0.3s")
    assert outcome.latency_ms < 2000
