"""Partner approval use cases: an affiliate applies, the store approves, rejects or bans; each
change is written with its history and audit entry, published to the tracker through the
directory, and a ban (or its end) is a program operation so that commission follows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.audit import Recorder
from services.commission.core.partners import OPEN_ENROLLMENT, PartnerAction, PartnerReason, decide
from services.commission.errors import NotFound
from services.commission.partners.repository import PartnerRepository
from services.commission.program.service import ProgramService
from shared.clock import Clock, SystemClock
from shared.partners import PartnerStatus


class PartnerDirectory(Protocol):
    """Who knows the principals and tells the tracker (the admin service)."""

    async def store_exists(self, session: AsyncSession, store_id: str) -> bool: ...

    async def affiliate_exists(self, session: AsyncSession, affiliate_id: str) -> bool: ...

    async def publish_partner(
        self,
        session: AsyncSession,
        store_id: str,
        affiliate_id: str,
        status: PartnerStatus,
        now: datetime,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Any]
    next_cursor: str | None


@dataclass
class PartnerService:
    programs: ProgramService
    clock: Clock = field(default_factory=SystemClock)
    #: set by the app: principals' existence, and the tracker told of each change
    directory: PartnerDirectory | None = None

    async def act(
        self,
        session: AsyncSession,
        store_id: str,
        affiliate_id: str,
        action: PartnerAction,
        actor: str,
        *,
        reason: PartnerReason | None = None,
        note: str | None = None,
        message: str | None = None,
        audit: Recorder | None = None,
    ) -> tuple[Any, bool]:
        """Apply ``action`` (the rules of :func:`services.commission.core.partners.decide`)
        to the partner now; returns its row and whether anything changed (the same action
        again records nothing). 404 for an unknown store or affiliate, or (reads only) no
        partner; the core's refusals otherwise. Serialised per store by the program's lock."""
        await self._known(session, store_id, affiliate_id)
        history = (await self.programs.locked_histories(session, [store_id]))[store_id]
        repo = PartnerRepository(session)
        row = await repo.get(store_id, affiliate_id)
        current = PartnerStatus(row.status) if row is not None else None
        move = decide(current, action, history.current().enrollment, reason)
        if not move.changed:
            assert row is not None  # nothing changes only an existing partner
            return row, False
        now = self.clock.now()
        if move.op is not None:  # a ban, or its end: what the store's orders pay follows it
            await self.programs.change_program(
                session, store_id, move.op, actor, key=affiliate_id, at=now
            )
        applied = action is PartnerAction.APPLY
        if applied and move.after is PartnerStatus.APPROVED:
            reason_code: str | None = OPEN_ENROLLMENT
        else:
            reason_code = reason.value if reason is not None else None
        written = await repo.put(
            store_id,
            affiliate_id,
            move.after,
            now,
            message=message,
            reason=reason_code,
            note=note,
            applied=applied,
        )
        await repo.add_event(
            store_id=store_id,
            affiliate_id=affiliate_id,
            action=action.value,
            status_before=current.value if current is not None else None,
            status_after=move.after.value,
            reason=reason_code,
            note=note,
            message=message if applied else None,
            actor=actor,
            at=now,
        )
        if audit is not None:
            await audit.record(
                f"partner.{action.value}",
                f"store:{store_id}/partner/{affiliate_id}",
                tenant=f"store:{store_id}",
                before={"status": current.value} if current is not None else None,
                after={"status": move.after.value, "reason": reason_code, "note": note},
            )
        if self.directory is not None:
            await self.directory.publish_partner(session, store_id, affiliate_id, move.after, now)
        return written, True

    async def _known(self, session: AsyncSession, store_id: str, affiliate_id: str) -> None:
        if self.directory is None:
            return
        if not await self.directory.store_exists(session, store_id):
            raise NotFound("store", store_id=store_id)
        if not await self.directory.affiliate_exists(session, affiliate_id):
            raise NotFound("affiliate", affiliate_id=affiliate_id)

    async def page(
        self,
        session: AsyncSession,
        *,
        store_id: str | None = None,
        affiliate_id: str | None = None,
        status: PartnerStatus | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        """One page of a store's partners or of an affiliate's standings (keyset by the
        other party's id)."""
        rows = await PartnerRepository(session).page(
            store_id=store_id, affiliate_id=affiliate_id, status=status, after=cursor, limit=limit
        )
        if len(rows) <= limit:
            return Page(rows, None)
        rows = rows[:limit]
        last = rows[-1]
        return Page(rows, last.affiliate_id if store_id is not None else last.store_id)

    async def detail(
        self, session: AsyncSession, store_id: str, affiliate_id: str
    ) -> tuple[Any, list[Any]]:
        """The partner and its history, or 404."""
        repo = PartnerRepository(session)
        row = await repo.get(store_id, affiliate_id)
        if row is None:
            raise NotFound("partner", store_id=store_id, affiliate_id=affiliate_id)
        return row, await repo.events(store_id, affiliate_id)
