"""The delivery worker: sends due deliveries to their endpoints, signed, and records each
attempt. It runs on :class:`~shared.periodic.Periodic` under the app's background tasks.

Contract:

- At least once. Each round claims due deliveries with ``FOR UPDATE SKIP LOCKED`` in one
  transaction, sends them, records the outcomes and commits: two workers never send the same
  delivery at once; a crash before the commit sends the round again (receivers deduplicate by
  the event id, which the ``Alliance-Event-Id`` header and the body's ``id`` carry). A round
  claims at most ``batch`` deliveries and sends up to ``concurrency`` at once (by default the
  same: one wave), so its transaction lasts about one ``timeout_s`` at most.
- One order's events reach an endpoint in the order they were written: a delivery is claimed
  only when no earlier delivery of its order to that endpoint is still pending.
- Only to the registered URL (a GET template expanded with URL-encoded values), never
  following a redirect (a 3xx is a failure), within ``timeout_s`` for the whole attempt
  (resolving, connecting, sending, the answer's status line and headers): a receiver that
  answers slowly, a byte at a time, fails with a timeout then. The host is resolved at
  each delivery and refused when any of its addresses is private, loopback, link-local or
  reserved, or its port is not 80 or 443, unless private targets are allowed
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
from datetime import datetime
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.core.webhooks import (
    SIGNATURE_HEADER,
    InvalidEndpoint,
    Method,
    address_allowed,
    expand,
    macro_values,
    signature,
    signing_secrets,
)
from services.commission.webhooks.service import Outcome, WebhookService
from shared.clock import Clock, SystemClock
from shared.periodic import Periodic

log = logging.getLogger(__name__)

USER_AGENT = "Alliance-Webhooks/1"


class Refused(Exception):
    """The target may not be connected to (a private address while those are refused)."""


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
        batch: int = 32,
        concurrency: int = 32,
    ) -> None:
        self.sessions = sessions
        self.webhooks = webhooks
        self.clock: Clock = clock or SystemClock()
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self.batch = batch
        self.concurrency = concurrency
        self.periodic = Periodic(
            "webhook-delivery", self.drain, interval_s=interval_s, retry_cap_s=30.0
        )
        self.sent = 0  # attempts made
        self.delivered = 0  # attempts answered 2xx
        self._client: httpx.AsyncClient | None = None

    def poke(self) -> None:
        """Deliveries were committed: send them now. Never blocks."""
        self.periodic.poke()

    def stop(self) -> None:
        self.periodic.stop()

    async def run(self) -> None:
        try:
            await self.periodic.run()
        finally:
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

    async def drain(self, rounds: int = 100) -> int:
        """Rounds until nothing is due (at most ``rounds``); returns the attempts made."""
        total = 0
        for _ in range(rounds):
            n = await self.run_once()
            if n == 0:
                break
            total += n
        return total

    async def run_once(self) -> int:
        """One round: claim, send, record, commit. Returns the attempts made."""
        async with self.sessions() as session, session.begin():
            now = self.clock.now()
            rows = await self.webhooks.claim_due(session, now, self.batch)
            if not rows:
                return 0
            chosen = self._choose(rows)
            gate = asyncio.Semaphore(self.concurrency)

            async def one(row: Any) -> Outcome:
                async with gate:
                    return await self._attempt(row)

            outcomes = await asyncio.gather(*(one(r) for r in chosen))
            await self.webhooks.record(session, outcomes)
        self.sent += len(outcomes)
        self.delivered += sum(1 for o in outcomes if o.ok)
        return len(outcomes)

    @staticmethod
    def _choose(rows: list[Any]) -> list[Any]:
        """What this round sends: everything of a healthy endpoint; of an endpoint that is
        failing, only its oldest due delivery (a probe), so that a receiver that is down is
        not hit by every queued event at once (a round's failures count as one: see
        :func:`~services.commission.core.webhooks.after_attempts`)."""
        chosen, probed = [], set()
        for r in rows:
            if r.consecutive_failures:
                if r.endpoint_id in probed:
                    continue
                probed.add(r.endpoint_id)
            chosen.append(r)
        return chosen

    async def _attempt(self, row: Any) -> Outcome:
        at = self.clock.now()
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            # one deadline for the whole send, the name's lookup included: httpx's timeout is
            # per read, so a receiver answering a byte at a time would hold the round open
            async with asyncio.timeout(self.timeout_s):
                status = await self._send(row, at)
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
        except Exception as exc:  # one bad delivery must not stop the others of the round
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("webhook %s: unexpected failure", row.event_id, exc_info=True)
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
        )

    async def _send(self, row: Any, at: datetime) -> int:
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
            await response.aclose()  # the status is the answer; the body is not read
            return response.status_code
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
