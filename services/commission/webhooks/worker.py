"""The delivery worker: sends due deliveries to their endpoints, signed, and records each
attempt. It runs on :class:`~shared.periodic.Periodic` under the app's background tasks.

Contract:

- At least once, never waiting for the slowest. The worker is continuous: whenever it has a
  free slot (``ALLIANCE_WEBHOOK_SLOTS``, 32) it claims due deliveries by **leasing** them
  (``lease_until``, committed at once, before anything is sent), and runs each as an
  independent task that sends it, then records the attempt in its own short transaction.
  There is no round: a receiver that answers after 9.5 s holds its own slots for 9.5 s and
  nothing else. Which due deliveries start is the pure rule
  :func:`~services.commission.core.webhooks.schedule`: at most ``per_endpoint`` attempts in
  flight per endpoint across all workers (``ALLIANCE_WEBHOOK_ENDPOINT_CONCURRENCY``, 2; one
  probe while it is failing) and at most ``per_owner`` of a worker's slots per owner
  (``ALLIANCE_WEBHOOK_OWNER_SHARE``, 8). Two workers never hold one lease (the claim locks
  with ``SKIP LOCKED`` and re-checks); a worker that dies leaves its leases to expire
  (``ALLIANCE_WEBHOOK_LEASE_S``, longer than an attempt's deadline), and those deliveries are
  due again (receivers deduplicate by the event id, which the ``Alliance-Event-Id`` header
  and the body's ``id`` carry).
- One order's events reach an endpoint in the order they were written: a delivery is claimed
  only when no earlier delivery of its order to that endpoint is still pending.
- Only to the registered URL (a GET template expanded with URL-encoded values), never
  following a redirect (a 3xx is a failure), within ``timeout_s`` for the whole attempt
  (resolving, connecting, sending, the answer's status line and headers, then up to 1 KiB of
  its body, kept in the attempt's history): a receiver that answers slowly, a byte at a time,
  fails with a timeout then (or keeps its status, when only its body is slow). The host is
  resolved at each delivery and refused when any of its addresses is private, loopback,
  link-local or reserved, or its port is not 80 or 443, unless private targets are allowed
  (``ALLIANCE_WEBHOOK_ALLOW_PRIVATE``); the request then goes to the addresses checked (in
  the resolver's order, the next when one refuses the connection), never to a second
  lookup's.
- Time comes from :attr:`clock` (tests move it instead of sleeping).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.core.webhooks import (
    RESPONSE_BODY_MAX,
    SIGNATURE_HEADER,
    InvalidEndpoint,
    Limits,
    Method,
    address_allowed,
    expand,
    macro_values,
    response_excerpt,
    signature,
    signing_secrets,
)
from services.commission.webhooks.service import Outcome, WebhookService, owner_key
from shared import logs
from shared.clock import Clock, SystemClock
from shared.metrics import webhook_metrics
from shared.periodic import Periodic

log = logging.getLogger(__name__)

USER_AGENT = "Alliance-Webhooks/1"


class Refused(Exception):
    """The target may not be connected to (a private address while those are refused)."""


def outcome_of(outcome: Outcome) -> str:
    """An attempt's outcome as a metric label (a few values, never an address): ``delivered``
    (2xx), ``rejected`` (answered otherwise), ``timeout``, ``refused`` (the address or the
    URL is not allowed) or ``failed`` (no answer: connection, TLS, …)."""
    if outcome.ok:
        return "delivered"
    if outcome.status_code is not None:
        return "rejected"
    error = outcome.error or ""
    if error.startswith("timeout"):
        return "timeout"
    if error.startswith(("refused", "invalid")):
        return "refused"
    return "failed"


class DeliveryWorker:
    """Sends due deliveries (see the module). :meth:`poke` after a commit that wrote
    deliveries sends them at once."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        webhooks: WebhookService,
        *,
        clock: Clock | None = None,
        allow_private: bool = False,
        timeout_s: float = 10.0,
        interval_s: float = 1.0,
        limits: Limits | None = None,
        lease_s: float | None = None,
    ) -> None:
        self.sessions = sessions
        self.webhooks = webhooks
        self.clock: Clock = clock or SystemClock()
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self.limits = limits or Limits()
        # past an attempt's deadline, with room for recording it
        self.lease = timedelta(seconds=lease_s if lease_s is not None else timeout_s + 30.0)
        if self.lease.total_seconds() <= timeout_s:
            raise ValueError("a lease must outlast an attempt's deadline")
        self.periodic = Periodic(
            "webhook-delivery", self.fill, interval_s=interval_s, retry_cap_s=30.0
        )
        self.sent = 0  # attempts made
        self.delivered = 0  # attempts answered 2xx
        #: attempts per outcome and their durations (metrics: :func:`outcome_of`)
        self.outcomes, self.attempt_seconds = webhook_metrics()
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Outcome]] = set()
        self._owners: Counter[str] = Counter()  # attempts in flight per owner

    def poke(self) -> None:
        """Deliveries were committed (or a slot was freed): start what may start now. Never
        blocks."""
        self.periodic.poke()

    def stop(self) -> None:
        self.periodic.stop()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        """Until :meth:`stop`: fill free slots whenever poked (a commit, an attempt that
        ended) or every interval. Once stopped, the attempts under way end (each within its
        deadline); cancelled, they are cancelled too and their leases expire."""
        try:
            await self.periodic.run()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=self.timeout_s + 5.0)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            await self.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # no proxy from the environment, no redirect followed: only the registered URL
            # no connection kept alive: requests go to IP literals, and a connection made for
            # one host name (its TLS server name) must not carry another's request
            self._client = httpx.AsyncClient(
                timeout=self.timeout_s,
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._client

    async def fill(self) -> int:
        """Lease what may start now and start each as its own task; returns how many. Never
        waits for an attempt."""
        return len(await self._start_due())

    async def _start_due(self) -> list[asyncio.Task[Outcome]]:
        async with self.sessions() as session, session.begin():
            rows = await self.webhooks.claim(
                session, self.clock.now(), self.limits, dict(self._owners), self.lease
            )
        return [self._start(row) for row in rows]

    def _start(self, row: Any) -> asyncio.Task[Outcome]:
        owner = owner_key(row.owner_kind, row.owner_id)
        self._owners[owner] += 1
        task = asyncio.create_task(self._deliver(row), name=f"webhook-{row.id}")
        self._tasks.add(task)

        def done(task: asyncio.Task[Outcome]) -> None:
            self._tasks.discard(task)
            self._owners[owner] -= 1
            if self._owners[owner] <= 0:
                del self._owners[owner]
            self.poke()  # a slot is free

        task.add_done_callback(done)
        return task

    async def _deliver(self, row: Any) -> Outcome:
        # each delivery runs in a task of its own: what it logs names its event
        logs.bind(event_id=row.event_id)
        outcome = await self._attempt(row)
        self.sent += 1
        self.delivered += int(outcome.ok)
        kind = outcome_of(outcome)
        self.outcomes.labels(kind).inc()
        self.attempt_seconds.labels(kind).observe(outcome.latency_ms / 1000)
        try:
            async with self.sessions() as session, session.begin():
                await self.webhooks.record(session, outcome)
        except Exception:  # its lease expires: the delivery is sent again (at least once)
            log.warning("webhook %s: recording the attempt failed", row.event_id, exc_info=True)
        return outcome

    async def drain(self, rounds: int = 100) -> int:
        """Claim and wait, until nothing is due (at most ``rounds`` times); returns the
        attempts made. For tests and tools: the service runs :meth:`run`."""
        total = 0
        for _ in range(rounds):
            n = await self.run_once()
            if n == 0:
                if not self._tasks:
                    break
                # attempts started elsewhere (a poke of :meth:`run`) hold slots: wait for
                # them, then claim again, so nothing due is left behind when this returns
                await asyncio.wait(set(self._tasks))
                continue
            total += n
        return total

    async def run_once(self) -> int:
        """Start what may start now and wait for those attempts (recorded); returns how
        many."""
        tasks = await self._start_due()
        if tasks:
            await asyncio.gather(*tasks)
        return len(tasks)

    async def _attempt(self, row: Any) -> Outcome:
        at = self.clock.now()
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        status: int | None = None
        body: str | None = None
        error: str | None = None
        response: httpx.Response | None = None
        try:
            # one deadline for the whole send, the name's lookup included: httpx's timeout is
            # per read, so a receiver answering a byte at a time would hold the slot open
            async with asyncio.timeout_at(deadline):
                response = await self._send(row, at)
            status = response.status_code
            body = await self._excerpt(response, deadline)
        except Refused as exc:
            error = f"refused: {exc}"
        except InvalidEndpoint as exc:
            error = f"invalid: {exc.message}"
        except (httpx.TimeoutException, TimeoutError):
            error = f"timeout after {self.timeout_s:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except Exception as exc:  # one bad delivery must not stop the others
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("webhook %s: unexpected failure", row.event_id, exc_info=True)
        finally:
            if response is not None:
                await response.aclose()
        latency = int((time.monotonic() - started) * 1000)
        if error is not None:
            log.info("webhook %s to %s: %s", row.event_id, row.endpoint_id, error)
        return Outcome(
            delivery_id=row.id,
            endpoint_id=row.endpoint_id,
            attempts=int(row.attempts) + 1,
            due_since=row.due_since,
            at=at,
            status_code=status,
            latency_ms=latency,
            error=error,
            response_body=body,
        )

    @staticmethod
    async def _excerpt(response: httpx.Response, deadline: float) -> str:
        """The first 1 KiB of the answer's body, as much as arrives before the deadline (the
        status is the answer; the body is only kept for the history)."""
        got = bytearray()
        try:
            async with asyncio.timeout_at(deadline):
                async for chunk in response.aiter_raw():
                    got += chunk
                    if len(got) >= RESPONSE_BODY_MAX:
                        break
        except (TimeoutError, httpx.HTTPError):
            pass
        return response_excerpt(bytes(got))

    async def _send(self, row: Any, at: datetime) -> httpx.Response:
        """The answer, its status line and headers read; the caller reads (a little of) the
        body and closes it."""
        method = Method(row.method)
        payload: dict[str, Any] = row.payload
        body = orjson.dumps(payload)
        url = httpx.URL(
            row.url if method is Method.POST else expand(row.url, macro_values(payload))
        )
        # resolve once, check, and connect to the address checked (a name that resolves
        # elsewhere a moment later, DNS rebinding, changes nothing): the request goes to the IP
        # literal, with the registered host in ``Host`` and, for https, in the TLS handshake's
        # server name, which the certificate is verified against (httpcore's ``sni_hostname``)
        addresses = await self._targets(url)
        headers = {
            "Host": url.netloc.decode("ascii"),
            "User-Agent": USER_AGENT,
            "Alliance-Event-Id": str(payload["id"]),
            "Alliance-Event-Type": str(payload["type"]),
            # the excerpt kept is of the body as sent: no compressed body to inflate
            "Accept-Encoding": "identity",
        }
        if method is Method.POST:
            headers["Content-Type"] = "application/json"
        extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
        # a GET signs its request target exactly as it goes on the wire (path and query)
        content = body if method is Method.POST else url.raw_path
        secrets = signing_secrets(
            self.webhooks.secret_key,
            row.endpoint_id,
            int(row.secret_version),
            row.previous_secret_until,
            at,
        )
        headers[SIGNATURE_HEADER] = signature(secrets, int(at.timestamp()), content)
        # the addresses in the resolver's order, the next when one refuses the connection
        # (``localhost`` may be ::1 first while the receiver listens on 127.0.0.1 only)
        for i, address in enumerate(addresses):
            request = self.client.build_request(
                method.value,
                url.copy_with(host=address),
                content=body if method is Method.POST else None,
                headers=headers,
                extensions=extensions,
            )
            try:
                response = await self.client.send(request, stream=True)
            except httpx.ConnectError:
                if i == len(addresses) - 1:
                    raise
                continue
            return response
        raise AssertionError("unreachable: _targets returns at least one address")

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` now (an IP literal is its own), in the resolver's order."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def _targets(self, url: httpx.URL) -> list[str]:
        """The addresses to connect to for ``url`` (at least one): its host resolved now;
        refused (unless private targets are allowed) when any address is private or reserved,
        or the port is not 80 or 443."""
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await self.resolve(host, port)
        if not addresses:
            raise Refused(f"{host} does not resolve")
        if not self.allow_private and not all(address_allowed(a, False) for a in addresses):
            raise Refused(f"{host} resolves to a private or reserved address")
        if not self.allow_private and port not in (80, 443):
            raise Refused(f"port {port}: only 80 and 443 are deliverable")
        return [a.split("%", 1)[0] for a in addresses]  # no IPv6 zone: only link-local has one
