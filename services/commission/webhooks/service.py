"""Postback and webhook use cases: endpoints (register, list, rotate the secret, re-enable,
delete), the delivery log (every attempt) and redelivery, the fan-out of events into
deliveries (in the caller's transaction), and what the delivery worker claims (leases) and
records."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.errors import ProgramError
from services.commission.core.webhooks import (
    ROTATION_OVERLAP,
    Due,
    EndpointHealth,
    EndpointRef,
    InvalidEndpoint,
    Limits,
    Method,
    Notice,
    OwnerKind,
    WebhookEvent,
    address_allowed,
    after_attempts,
    backoff,
    endpoint_problem,
    endpoint_secret,
    next_attempt,
    recipients,
    schedule,
)
from services.commission.errors import NotFound
from services.commission.webhooks.repository import WebhookRepository, order_key_text
from shared.clock import Clock, SystemClock
from shared.ids import new_id

#: the most endpoints one owner may have (hostile input stays bounded)
MAX_ENDPOINTS: Final = 20
#: set in a session's ``info`` when it made deliveries due: after the commit, the owner of
#: the transaction wakes the delivery worker (else it looks within its interval)
WEBHOOKS_DUE: Final = "webhooks_due"


class TooManyEndpoints(ProgramError):
    status_code: ClassVar[int] = 409
    code: ClassVar[str] = "too_many_endpoints"
    default_message: ClassVar[str] = f"an owner may have at most {MAX_ENDPOINTS} endpoints"


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose endpoints: an affiliate's, a store's or a finance user's."""

    kind: OwnerKind
    id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt of a delivery ended."""

    delivery_id: int
    endpoint_id: str
    attempts: int  # this attempt included
    due_since: datetime
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    #: the first 1 KiB of the answer's body (:func:`~services.commission.core.webhooks.
    #: response_excerpt`), None without an answer
    response_body: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def describe(self) -> str:
        if self.status_code is not None:
            return f"HTTP {self.status_code}"
        return self.error or "no answer"


def host_refusal(url: str, allow_private: bool) -> str | None:
    """Why a URL's host is refused at registration (a literal private address, a local name
    or a port other than 80 and 443 while private targets are not allowed), or None. Names
    are resolved at each delivery (and refused then when they resolve to a private
    address)."""
    if allow_private:
        return None
    parts = urlsplit(url)
    if parts.port not in (None, 80, 443):
        return "only the ports 80 and 443 are deliverable (the default of http and https)"
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return "a local host name is not a deliverable target"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address_allowed(host, allow_private=False):
        return "a private, loopback or reserved address is not a deliverable target"
    return None


@dataclass
class WebhookService:
    secret_key: str
    clock: Clock = field(default_factory=SystemClock)
    #: whether endpoints may target private and loopback addresses (tests, development)
    allow_private: bool = False

    # -- endpoints ------------------------------------------------------------------------

    async def register(
        self,
        session: AsyncSession,
        owner: Owner,
        url: str,
        method: Method,
        events: Sequence[WebhookEvent],
    ) -> tuple[Any, str]:
        """A new endpoint of ``owner``; returns its row and its signing secret (shown once).
        :class:`InvalidEndpoint` (422) for a URL that may not be registered."""
        problem = endpoint_problem(url, method) or host_refusal(url, self.allow_private)
        if problem is not None:
            raise InvalidEndpoint(problem, url=url[:200])
        repo = WebhookRepository(session)
        await repo.lock_owner(owner.kind.value, owner.id)  # concurrent ones count in turn
        if len(await repo.endpoints_of(owner.kind.value, owner.id)) >= MAX_ENDPOINTS:
            raise TooManyEndpoints()
        endpoint_id = f"we_{new_id()}"
        await repo.add_endpoint(
            {
                "id": endpoint_id,
                "owner_kind": owner.kind.value,
                "owner_id": owner.id,
                "url": url,
                "method": method.value,
                "events": sorted({e.value for e in events}),
                "secret_version": 1,
                "created_at": self.clock.now(),
            }
        )
        row = await repo.endpoint(owner.kind.value, owner.id, endpoint_id)
        return row, endpoint_secret(self.secret_key, endpoint_id, 1)

    async def endpoints(self, session: AsyncSession, owner: Owner) -> list[Any]:
        return await WebhookRepository(session).endpoints_of(owner.kind.value, owner.id)

    async def endpoint(
        self, session: AsyncSession, owner: Owner, endpoint_id: str, *, lock: bool = False
    ) -> Any:
        """The owner's endpoint, else :class:`NotFound` (another owner's too)."""
        row = await WebhookRepository(session).endpoint(
            owner.kind.value, owner.id, endpoint_id, lock=lock
        )
        if row is None:
            raise NotFound("endpoint", endpoint_id=endpoint_id)
        return row

    async def rotate_secret(
        self, session: AsyncSession, owner: Owner, endpoint_id: str
    ) -> tuple[Any, str]:
        """A new secret (shown once); the previous one keeps signing beside it for
        :data:`ROTATION_OVERLAP`, so the receiver can switch without losing a delivery."""
        row = await self.endpoint(session, owner, endpoint_id, lock=True)
        version = int(row.secret_version) + 1
        repo = WebhookRepository(session)
        await repo.update_endpoint(
            endpoint_id,
            secret_version=version,
            previous_secret_until=self.clock.now() + ROTATION_OVERLAP,
        )
        row = await self.endpoint(session, owner, endpoint_id)
        return row, endpoint_secret(self.secret_key, endpoint_id, version)

    async def enable(self, session: AsyncSession, owner: Owner, endpoint_id: str) -> Any:
        """Re-enable an endpoint (disabled after failures): its count of failures starts
        again and the deliveries that waited are due now, in order, each with a fresh
        schedule (72 hours from now, retries from 1 s): a backlog older than 72 hours is
        retried, not failed at its first new failure."""
        await self.endpoint(session, owner, endpoint_id, lock=True)
        repo = WebhookRepository(session)
        now = self.clock.now()
        await repo.update_endpoint(
            endpoint_id,
            status="active",
            disabled_reason=None,
            disabled_at=None,
            consecutive_failures=0,
            retry_at=None,
        )
        await repo.resume_pending(endpoint_id, now)
        session.info[WEBHOOKS_DUE] = True
        return await self.endpoint(session, owner, endpoint_id)

    async def delete(self, session: AsyncSession, owner: Owner, endpoint_id: str) -> None:
        """Delete the endpoint: nothing more is sent to it (what was pending is cancelled);
        its log goes with it."""
        await self.endpoint(session, owner, endpoint_id, lock=True)
        repo = WebhookRepository(session)
        await repo.update_endpoint(endpoint_id, deleted_at=self.clock.now())
        await repo.cancel_pending(endpoint_id)

    async def deliveries(
        self,
        session: AsyncSession,
        owner: Owner,
        endpoint_id: str,
        before: int | None,
        limit: int,
    ) -> list[Any]:
        await self.endpoint(session, owner, endpoint_id)
        return await WebhookRepository(session).deliveries(endpoint_id, before, limit)

    async def redeliver(
        self, session: AsyncSession, owner: Owner, endpoint_id: str, delivery_id: int
    ) -> Any:
        """Send a delivery again now, whatever its status (a receiver deduplicates by the
        event id), with a fresh schedule: the worker sends it now, even while the endpoint
        backs off, a failure is retried after 1 s, and it has 72 hours from now. For a
        disabled endpoint, once it is re-enabled."""
        await self.endpoint(session, owner, endpoint_id, lock=True)
        repo = WebhookRepository(session)
        if await repo.delivery(endpoint_id, delivery_id) is None:
            raise NotFound("delivery", endpoint_id=endpoint_id, delivery_id=delivery_id)
        await repo.redeliver(endpoint_id, delivery_id, self.clock.now())
        session.info[WEBHOOKS_DUE] = True
        return await repo.delivery(endpoint_id, delivery_id)

    # -- events ---------------------------------------------------------------------------

    async def receivers(
        self, session: AsyncSession, affiliate_ids: Iterable[str], store_ids: Iterable[str]
    ) -> list[EndpointRef]:
        """The endpoints that may receive events of these affiliates and stores (theirs and
        finance's); empty: there is nothing to write."""
        return await WebhookRepository(session).receivers(affiliate_ids, store_ids)

    async def notify(
        self,
        session: AsyncSession,
        notices: Sequence[Notice],
        endpoints: Sequence[EndpointRef] | None = None,
    ) -> int:
        """Write a delivery for each endpoint that receives each notice, in the caller's
        transaction (the one that made the change); ``endpoints``: what :meth:`receivers`
        said for them, if asked already. Idempotent: a notice already written for an endpoint
        adds nothing. Returns how many deliveries were added."""
        if not notices:
            return 0
        repo = WebhookRepository(session)
        if endpoints is None:
            endpoints = await repo.receivers(
                (n.affiliate_id for n in notices if n.affiliate_id is not None),
                (n.store_id for n in notices if n.store_id is not None),
            )
        if not endpoints:
            return 0
        now = self.clock.now()
        rows = [
            {
                "endpoint_id": endpoint_id,
                "event_id": notice.id,
                "event_type": notice.type.value,
                "order_key": order_key_text(notice.order) if notice.order else None,
                "payload": notice.body(),
                "status": "pending",
                "attempts": 0,
                "due_since": now,
                "next_attempt_at": now,
                "created_at": now,
            }
            for notice in notices
            for endpoint_id in recipients(notice, endpoints)
        ]
        added = await repo.add_deliveries(rows)
        if added:
            session.info[WEBHOOKS_DUE] = True
        return added

    # -- the worker's side ----------------------------------------------------------------

    async def claim(
        self,
        session: AsyncSession,
        now: datetime,
        limits: Limits,
        busy_owners: Mapping[str, int],
        lease: timedelta,
    ) -> list[Any]:
        """Lease the deliveries a worker starts now (:func:`~services.commission.core.
        webhooks.schedule` over what is due: its free slots, each endpoint's limit, each
        owner's share of the worker; ``busy_owners``: the worker's attempts in flight per
        owner) for ``lease`` (on the database's clock). The caller commits at once; a lease
        that expires (a worker that died) makes the delivery due again."""
        repo = WebhookRepository(session)
        busy = sum(busy_owners.values())
        free = limits.slots - busy
        if free <= 0:
            return []
        # more than the free slots: some owners' may be over their share
        rows = await repo.due(now, limits.per_endpoint, 4 * limits.slots)
        chosen = schedule(
            [
                Due(
                    r.id,
                    r.endpoint_id,
                    owner_key(r.owner_kind, r.owner_id),
                    r.consecutive_failures > 0,
                )
                for r in rows
            ],
            limits,
            busy,
            {r.endpoint_id: int(r.busy) for r in rows},
            busy_owners,
        )
        return await repo.lease([d.delivery_id for d in chosen], now, lease)

    async def record(self, session: AsyncSession, outcome: Outcome) -> None:
        """Record one attempt: appended to the delivery's history, the delivery's status,
        answer and next retry (:func:`~services.commission.core.webhooks.next_attempt`: 72
        hours, then ``failed``) with its lease released, then its endpoint's health (failures
        in a row, its own backoff, disabled after too many). A delivery that is no longer
        pending (its endpoint was deleted meanwhile: cancelled) keeps its status."""
        o = outcome
        repo = WebhookRepository(session)
        # the endpoint's row first, locked: the order every writer of both rows takes
        held = await repo.endpoint_health([o.endpoint_id])
        await repo.add_attempt(
            {
                "delivery_id": o.delivery_id,
                "endpoint_id": o.endpoint_id,
                "attempt": o.attempts,
                "at": o.at,
                "status_code": o.status_code,
                "latency_ms": o.latency_ms,
                "error": None if o.ok else (o.error or o.describe())[:500],
                "response_body": o.response_body,
            }
        )
        values: dict[str, Any] = {
            "attempts": o.attempts,
            "last_attempt_at": o.at,
            "last_status_code": o.status_code,
            "last_latency_ms": o.latency_ms,
            "last_error": None if o.ok else (o.error or o.describe())[:500],
            "lease_until": None,
        }
        if o.ok:
            values |= {"status": "delivered", "delivered_at": o.at, "next_attempt_at": None}
        else:
            retry = next_attempt(o.attempts, o.due_since, o.at)
            values |= (
                {"next_attempt_at": retry}
                if retry is not None
                else {"status": "failed", "next_attempt_at": None}
            )
        await repo.record(o.delivery_id, values)
        row = held.get(o.endpoint_id)
        if row is None:
            return
        before = EndpointHealth(
            int(row.consecutive_failures), row.status == "disabled", row.disabled_reason
        )
        after = after_attempts(before, [(o.ok, o.describe())])
        update: dict[str, Any] = {
            "consecutive_failures": after.consecutive_failures,
            "retry_at": (
                o.at + backoff(after.consecutive_failures) if after.consecutive_failures else None
            ),
        }
        if after.disabled and not before.disabled:
            update |= {
                "status": "disabled",
                "disabled_reason": after.disabled_reason,
                "disabled_at": o.at,
            }
        await repo.update_endpoint(o.endpoint_id, **update)

    async def attempts(
        self,
        session: AsyncSession,
        owner: Owner,
        endpoint_id: str,
        delivery_id: int,
        before: int | None,
        limit: int,
    ) -> list[Any]:
        """The attempts of one delivery of the owner's endpoint, newest first; another
        owner's endpoint or delivery is :class:`NotFound`."""
        await self.endpoint(session, owner, endpoint_id)
        repo = WebhookRepository(session)
        if await repo.delivery(endpoint_id, delivery_id) is None:
            raise NotFound("delivery", endpoint_id=endpoint_id, delivery_id=delivery_id)
        return await repo.attempts(endpoint_id, delivery_id, before, limit)


def owner_key(kind: str, owner_id: str) -> str:
    """An owner as the scheduling rule names it (``/`` is in no kind)."""
    return f"{kind}/{owner_id}"
