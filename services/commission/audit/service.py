"""Use cases of the audit log: a request's :class:`AuditTrail` (who, from where, in which
transaction) that a route hands each change to, and the reads of the log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.audit.repository import AuditRepository
from services.commission.core.audit import Actor, Origin, Scope, entry
from services.commission.csv_export import snapshot
from shared.clock import Clock

#: entries per page of a CSV export (read from one snapshot)
EXPORT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Filters:
    """What ``GET /v1/audit`` narrows the log to."""

    actor: str | None = None
    kind: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """The audit log as one request writes to it: every entry in the request's own
    transaction (the change and its entry commit or roll back together), with the caller,
    its address, user agent and request id."""

    session: AsyncSession
    actor: Actor
    origin: Origin
    clock: Clock

    async def record(
        self,
        kind: str,
        subject: str,
        *,
        tenant: str | None,
        before: Any,
        after: Any,
        rotated: Iterable[str] = (),
    ) -> None:
        """Append the entry of one change (secrets redacted, :func:`core.audit.entry`)."""
        await AuditRepository(self.session).append(
            entry(
                at=self.clock.now(),
                actor=self.actor,
                origin=self.origin,
                kind=kind,
                subject=subject,
                tenant=tenant,
                before=before,
                after=after,
                rotated=rotated,
            )
        )


class AuditService:
    def __init__(self, clock: Clock, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.clock = clock
        self.sessions = sessions

    def trail(self, session: AsyncSession, actor: Actor, origin: Origin) -> AuditTrail:
        return AuditTrail(session, actor, origin, self.clock)

    async def page(
        self, session: AsyncSession, scope: Scope, filters: Filters, after: int, limit: int
    ) -> list[Any]:
        """The entries the scope may read, after id ``after``, in append order."""
        return await AuditRepository(session).page(
            scope,
            actor=filters.actor,
            kind=filters.kind,
            start=filters.start,
            end=filters.end,
            after=after,
            limit=limit,
        )

    async def pages(self, scope: Scope, filters: Filters, after: int) -> AsyncIterator[list[Any]]:
        """Every readable entry after ``after``, a page at a time, from one snapshot."""
        async with snapshot(self.sessions) as session:
            while page := await self.page(session, scope, filters, after, EXPORT_PAGE):
                yield page
                after = page[-1].id
