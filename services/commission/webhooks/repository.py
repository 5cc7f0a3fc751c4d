"""All SQL of postbacks and webhooks: endpoints, their deliveries (the delivery worker's
outbox and the delivery log) with every attempt, and the leased claim of due deliveries.
Methods flush; the transaction owner commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m
from services.commission.core.commission import OrderKey
from services.commission.core.webhooks import EndpointRef, OwnerKind, WebhookEvent
from shared.db import lock_keys

E, D, A = m.webhook_endpoints, m.webhook_deliveries, m.webhook_attempts


def order_key_text(key: OrderKey) -> str:
    """How a delivery names its order (``/`` is in no identifier)."""
    return f"{key[0]}/{key[1]}"


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- endpoints ------------------------------------------------------------------------

    async def add_endpoint(self, row: dict[str, Any]) -> None:
        await self.session.execute(insert(E).values(**row))

    async def lock_owner(self, owner_kind: str, owner_id: str) -> None:
        """Hold the owner's advisory lock until commit: its registrations take turns (the
        count of its endpoints is then what the next one sees)."""
        await lock_keys(self.session, "webhook-owner", [f"{owner_kind}:{owner_id}"])

    async def endpoints_of(self, owner_kind: str, owner_id: str) -> list[Any]:
        """The owner's endpoints (not deleted), oldest first."""
        rows = await self.session.execute(
            select(E)
            .where(E.c.owner_kind == owner_kind, E.c.owner_id == owner_id, E.c.deleted_at.is_(None))
            .order_by(E.c.created_at, E.c.id)
        )
        return list(rows)

    async def endpoint(
        self, owner_kind: str, owner_id: str, endpoint_id: str, *, lock: bool = False
    ) -> Any:
        """The owner's endpoint (not deleted), or None: another owner's is never found."""
        query = select(E).where(
            E.c.id == endpoint_id,
            E.c.owner_kind == owner_kind,
            E.c.owner_id == owner_id,
            E.c.deleted_at.is_(None),
        )
        if lock:
            query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE
        return (await self.session.execute(query)).first()

    async def update_endpoint(self, endpoint_id: str, **values: Any) -> None:
        await self.session.execute(update(E).where(E.c.id == endpoint_id).values(**values))

    async def cancel_pending(self, endpoint_id: str) -> None:
        """A deleted endpoint's deliveries that were still to be sent are never sent."""
        await self.session.execute(
            update(D)
            .where(D.c.endpoint_id == endpoint_id, D.c.status == "pending")
            .values(status="cancelled", next_attempt_at=None)
        )

    async def resume_pending(self, endpoint_id: str, now: datetime) -> None:
        """A re-enabled endpoint's waiting deliveries are due now, each with a fresh schedule
        (72 hours from now, retries from 1 s)."""
        await self.session.execute(
            update(D)
            .where(D.c.endpoint_id == endpoint_id, D.c.status == "pending")
            .values(next_attempt_at=func.least(D.c.next_attempt_at, now), due_since=now, attempts=0)
        )

    async def receivers(
        self, affiliate_ids: Iterable[str], store_ids: Iterable[str]
    ) -> list[EndpointRef]:
        """Endpoints (active or disabled, not deleted) that may receive an event of these
        affiliates or stores: theirs, and every finance endpoint."""
        affiliates, stores = sorted(set(affiliate_ids)), sorted(set(store_ids))
        who = [E.c.owner_kind == OwnerKind.FINANCE.value]
        if affiliates:
            who.append(
                and_(E.c.owner_kind == OwnerKind.AFFILIATE.value, E.c.owner_id.in_(affiliates))
            )
        if stores:
            who.append(and_(E.c.owner_kind == OwnerKind.STORE.value, E.c.owner_id.in_(stores)))
        rows = await self.session.execute(
            select(E.c.id, E.c.owner_kind, E.c.owner_id, E.c.events).where(
                E.c.deleted_at.is_(None), or_(*who)
            )
        )
        return [
            EndpointRef(
                r.id,
                OwnerKind(r.owner_kind),
                r.owner_id,
                frozenset(WebhookEvent(e) for e in r.events),
            )
            for r in rows
        ]

    # -- deliveries -----------------------------------------------------------------------

    async def add_deliveries(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert deliveries; one already there for its (endpoint, event) is left as it is
        (a replayed event adds nothing). Returns how many were added."""
        if not rows:
            return 0
        stmt = (
            insert(D)
            .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
            .returning(D.c.id)
        )
        return len(list(await self.session.execute(stmt, list(rows))))

    async def deliveries(self, endpoint_id: str, before: int | None, limit: int) -> list[Any]:
        """The endpoint's deliveries, newest first, with ids below ``before`` (keyset)."""
        query = select(D).where(D.c.endpoint_id == endpoint_id)
        if before is not None:
            query = query.where(D.c.id < before)
        return list(await self.session.execute(query.order_by(D.c.id.desc()).limit(limit)))

    async def delivery(self, endpoint_id: str, delivery_id: int) -> Any:
        return (
            await self.session.execute(
                select(D).where(D.c.id == delivery_id, D.c.endpoint_id == endpoint_id)
            )
        ).first()

    async def redeliver(self, endpoint_id: str, delivery_id: int, now: datetime) -> None:
        """Send it again from now (whatever its status), with a fresh schedule (72 hours,
        retries from 1 s); the endpoint's own backoff ends now too, so the worker sends it now
        (a failing endpoint's probe)."""
        await self.session.execute(
            update(D)
            .where(D.c.id == delivery_id, D.c.endpoint_id == endpoint_id)
            .values(
                status="pending", next_attempt_at=now, due_since=now, attempts=0, delivered_at=None
            )
        )
        await self.session.execute(
            update(E).where(E.c.id == endpoint_id, E.c.retry_at > now).values(retry_at=now)
        )

    async def due(self, now: datetime, per_endpoint: int, limit: int) -> list[Any]:
        """Up to ``limit`` deliveries that may be started now, oldest due first, not locked:
        of each endpoint that is active and not backing off, its oldest due ones that are not
        leased, as many as its limit leaves (``per_endpoint``, 1 while it is failing, minus
        its deliveries under lease), each the first still pending of its order at its
        endpoint (one order's events go out one after the other). With each: its owner and
        ``busy``, its endpoint's deliveries under lease. An endpoint's backlog therefore
        never crowds out the others' (its old deliveries are not listed past its limit)."""
        rows = await self.session.execute(
            text(
                """
                SELECT d.id, d.endpoint_id, e.owner_kind, e.owner_id, e.consecutive_failures,
                       b.busy
                FROM commission.webhook_endpoints e
                CROSS JOIN LATERAL (
                    SELECT count(*) AS busy FROM commission.webhook_deliveries l
                    WHERE l.endpoint_id = e.id AND l.status = 'pending'
                      AND l.lease_until IS NOT NULL AND l.lease_until > now()) b
                CROSS JOIN LATERAL (
                    SELECT d.id, d.endpoint_id, d.next_attempt_at
                    FROM commission.webhook_deliveries d
                    WHERE d.endpoint_id = e.id AND d.status = 'pending'
                      AND d.next_attempt_at <= :now
                      AND (d.lease_until IS NULL OR d.lease_until <= now())
                      AND (d.order_key IS NULL OR NOT EXISTS (
                          SELECT 1 FROM commission.webhook_deliveries p
                          WHERE p.endpoint_id = d.endpoint_id AND p.order_key = d.order_key
                            AND p.status = 'pending' AND p.id < d.id))
                    ORDER BY d.next_attempt_at, d.id
                    LIMIT greatest(
                        CASE WHEN e.consecutive_failures > 0 THEN 1 ELSE :per_endpoint END
                        - b.busy, 0)) d
                WHERE e.status = 'active' AND e.deleted_at IS NULL
                  AND (e.retry_at IS NULL OR e.retry_at <= :now)
                ORDER BY d.next_attempt_at, d.id
                LIMIT :limit
                """
            ),
            {"now": now, "per_endpoint": per_endpoint, "limit": limit},
        )
        return list(rows)

    async def lease(self, ids: Sequence[int], now: datetime, lease: timedelta) -> list[Any]:
        """Lease these deliveries for ``lease``, those still due and free (another worker
        may have leased one meanwhile; a locked one is skipped, never waited for), with what
        sending needs of their endpoint. The caller commits at once: the lease is the claim.
        Leases are measured on the database's clock, one clock for every worker (a worker's
        own clock may be skewed, or moved by a test), due times on the worker's ``now``.
        """
        if not ids:
            return []
        locked = await self.session.execute(
            text(
                """
                SELECT d.id FROM commission.webhook_deliveries d
                WHERE d.id = ANY(:ids) AND d.status = 'pending' AND d.next_attempt_at <= :now
                  AND (d.lease_until IS NULL OR d.lease_until <= now())
                FOR NO KEY UPDATE OF d SKIP LOCKED
                """
            ),
            {"ids": list(ids), "now": now},
        )
        chosen = [r.id for r in locked]
        if not chosen:
            return []
        rows = await self.session.execute(
            text(
                """
                UPDATE commission.webhook_deliveries d
                SET lease_until = now() + CAST(:lease AS interval)
                FROM commission.webhook_endpoints e
                WHERE d.id = ANY(:ids) AND e.id = d.endpoint_id
                RETURNING d.id, d.endpoint_id, d.event_id, d.event_type, d.payload, d.attempts,
                          d.due_since, d.lease_until, e.url, e.method, e.secret_version,
                          e.previous_secret_until, e.consecutive_failures, e.owner_kind,
                          e.owner_id
                """
            ),
            {"ids": chosen, "lease": lease},
        )
        return sorted(rows, key=lambda r: chosen.index(r.id))

    async def record(self, delivery_id: int, values: dict[str, Any]) -> None:
        """The outcome of an attempt, on a delivery still pending (a cancelled one stays
        cancelled); its lease is released in any case."""
        await self.session.execute(
            update(D).where(D.c.id == delivery_id, D.c.status == "pending").values(**values)
        )
        await self.session.execute(update(D).where(D.c.id == delivery_id).values(lease_until=None))

    async def add_attempt(self, row: dict[str, Any]) -> None:
        """Append an attempt to the delivery's history (never updated)."""
        await self.session.execute(insert(A).values(**row))

    async def attempts(
        self, endpoint_id: str, delivery_id: int, before: int | None, limit: int
    ) -> list[Any]:
        """The delivery's attempts, newest first, with ids below ``before`` (keyset)."""
        query = select(A).where(A.c.delivery_id == delivery_id, A.c.endpoint_id == endpoint_id)
        if before is not None:
            query = query.where(A.c.id < before)
        return list(await self.session.execute(query.order_by(A.c.id.desc()).limit(limit)))

    async def endpoint_health(self, endpoint_ids: Iterable[str]) -> dict[str, Any]:
        """The health columns of the endpoints, locked (in id order: no deadlock between
        workers) until commit."""
        ids = sorted(set(endpoint_ids))
        if not ids:
            return {}
        rows = await self.session.execute(
            select(E.c.id, E.c.consecutive_failures, E.c.status, E.c.disabled_reason, E.c.url)
            .where(E.c.id.in_(ids))
            .order_by(E.c.id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE
        )
        return {r.id: r for r in rows}
