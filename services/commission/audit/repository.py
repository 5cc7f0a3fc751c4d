"""All SQL of the audit log: one insert per change, keyset reads in append order. The table
is append-only (a trigger refuses UPDATE, DELETE and TRUNCATE): nothing here changes a row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m
from services.commission.core.audit import AuditEntry, Scope

A = m.audit_log


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, e: AuditEntry) -> None:
        """Append one entry (flushed with the change; committed or rolled back with it)."""
        await self.session.execute(
            insert(A).values(
                at=e.at,
                actor_role=e.actor.role.value,
                actor_id=e.actor.id,
                client_address=e.origin.address,
                user_agent=e.origin.user_agent,
                request_id=e.origin.request_id,
                kind=e.kind,
                subject=e.subject,
                tenant=e.tenant,
                before=e.before,
                after=e.after,
                changed=list(e.changed),
            )
        )

    async def page(
        self,
        scope: Scope,
        *,
        actor: str | None,
        kind: str | None,
        start: datetime | None,
        end: datetime | None,
        after: int,
        limit: int,
    ) -> list[Any]:
        """Entries the scope may read, in append order after id ``after`` (keyset: stable
        while entries are appended), filtered by actor (``<id>`` or ``<role>:<id>``), kind
        and time ``[start, end)``."""
        query = select(A).where(A.c.id > after)
        if scope.actor_role is not None:
            query = query.where(A.c.actor_role == scope.actor_role.value)
        if scope.tenant is not None:
            query = query.where(A.c.tenant == scope.tenant)
        if actor is not None:
            role, _, actor_id = actor.rpartition(":")
            query = query.where(A.c.actor_id == actor_id)
            if role:
                query = query.where(A.c.actor_role == role)
        if kind is not None:
            query = query.where(A.c.kind == kind)
        if start is not None:
            query = query.where(A.c.at >= start)
        if end is not None:
            query = query.where(A.c.at < end)
        rows = await self.session.execute(query.order_by(A.c.id).limit(limit))
        return list(rows)
