"""One delivery attempt of the worker, without a database: the whole attempt's deadline and
the address it connects to. The receivers listen on loopback only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.core.webhooks import SIGNATURE_HEADER, endpoint_secret, verify
from services.commission.webhooks.service import Outcome, WebhookService, host_refusal
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


@asynccontextmanager
async def raw_receiver(host: str) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A receiver on ``host`` (a loopback address) answering 204, keeping each request's
    head (request line and headers) as received."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()


def pin(worker: DeliveryWorker, names: dict[str, list[str]]) -> list[str]:
    """Make the worker's resolver answer from ``names``; returns the names it was asked."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return names[host]

    worker.resolve = resolve  # type: ignore[method-assign]
    return asked


async def test_the_request_goes_to_the_address_resolved_and_checked_with_the_host_kept() -> None:
    # localhost is 127.0.0.1 to any other lookup; the receiver listens on 127.0.0.2 only, so
    # the request arrives only if the worker connects to the address its own lookup gave
    async with raw_receiver("127.0.0.2") as (port, heads):
        worker = make_worker()
        asked = pin(worker, {"localhost": ["127.0.0.2"]})
        outcome = await attempt(worker, f"http://localhost:{port}/hook?a=1", method="GET")
    assert (outcome.status_code, outcome.error) == (204, None)
    assert asked == ["localhost"]  # resolved once
    [head] = heads
    assert head.startswith(b"GET /hook?a=1 HTTP/1.1\r\n")
    assert f"\r\nHost: localhost:{port}\r\n".encode() in head


async def test_an_address_refusing_the_connection_is_followed_by_the_next_one_checked() -> None:
    async with raw_receiver("127.0.0.2") as (port, heads):
        worker = make_worker()
        pin(worker, {"localhost": ["127.0.0.3", "127.0.0.2"]})  # nothing listens on .3
        outcome = await attempt(worker, f"http://localhost:{port}/hook")
    assert (outcome.status_code, outcome.error) == (204, None)
    assert len(heads) == 1


def capture(worker: DeliveryWorker, status: int = 200) -> list[httpx.Request]:
    """Send the worker's requests to a transport that records them (nothing leaves)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    worker._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return seen


async def test_https_to_an_ipv6_address_keeps_the_name_for_the_tls_server_name() -> None:
    worker = make_worker(allow_private=False)
    pin(worker, {"hooks.example.com": ["2606:2800:220:1:248:1893:25c8:1946", "93.184.216.34"]})
    seen = capture(worker)
    outcome = await attempt(worker, "https://hooks.example.com/pb?s={status}", method="GET")
    assert outcome.ok
    [request] = seen
    assert str(request.url) == "https://[2606:2800:220:1:248:1893:25c8:1946]/pb?s="
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    # the signature is over the request target, as before
    secret = endpoint_secret("secret", "we_1", 1)
    assert verify(secret, request.headers[SIGNATURE_HEADER], b"/pb?s=", int(T0.timestamp()))


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.1"], ["93.184.216.34", "169.254.169.254"], ["::1"], []],
)
async def test_a_name_with_a_private_address_is_refused_and_nothing_is_sent(
    addresses: list[str],
) -> None:
    worker = make_worker(allow_private=False)
    pin(worker, {"hooks.example.com": addresses})
    seen = capture(worker)
    outcome = await attempt(worker, "https://hooks.example.com/h")
    assert outcome.error is not None
    assert outcome.error.startswith("refused: hooks.example.com")
    assert seen == []


async def test_only_ports_80_and_443_are_deliverable_in_production() -> None:
    worker = make_worker(allow_private=False)
    pin(worker, {"hooks.example.com": ["93.184.216.34"]})
    seen = capture(worker)
    outcome = await attempt(worker, "http://hooks.example.com:6379/h")
    assert outcome.error == "refused: port 6379: only 80 and 443 are deliverable"
    assert seen == []
    assert host_refusal("https://hooks.example.com:8443/h", allow_private=False) is not None
    assert host_refusal("https://hooks.example.com:443/h", allow_private=False) is None
    assert host_refusal("http://hooks.example.com:8080/h", allow_private=True) is None
