"""Program use cases: change a store's program (recorded, the channel re-ranked, the tracker
told), read it and its operation record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.channel.service import ChannelService
from services.commission.core.program import (
    OpKind,
    ProgramHistory,
    ProgramOp,
    ProgramState,
    state_json,
)
from services.commission.errors import NotFound
from services.commission.program.repository import ProgramRepository
from shared.clock import Clock, SystemClock

#: the changes the tracker must learn of (its directory entry holds membership and window)
DIRECTORY_CHANGES: Final = frozenset({OpKind.JOIN, OpKind.EXIT, OpKind.ATTRIBUTION_WINDOW})


class StoreDirectory(Protocol):
    """Who knows the stores and tells the tracker (the admin service)."""

    async def store_exists(self, session: AsyncSession, store_id: str) -> bool: ...

    async def publish_store(self, session: AsyncSession, store_id: str, now: datetime) -> None: ...


@dataclass
class ProgramService:
    clock: Clock = field(default_factory=SystemClock)
    #: days: the deployment's attribution window, for stores that set none
    default_window: int = 15
    channel: ChannelService = field(default_factory=ChannelService)
    #: set by the app: a change of membership or window is published to the directory
    directory: StoreDirectory | None = None

    async def histories(
        self, session: AsyncSession, store_ids: set[str] | list[str]
    ) -> dict[str, ProgramHistory]:
        """Every store's program (an empty history for a store that never changed it)."""
        return await ProgramRepository(session).programs(store_ids)

    async def history(self, session: AsyncSession, store_id: str) -> ProgramHistory:
        return (await self.histories(session, [store_id]))[store_id]

    async def locked_histories(
        self, session: AsyncSession, store_ids: set[str] | list[str], *, shared: bool = False
    ) -> dict[str, ProgramHistory]:
        """The programs read under their locks: a program change waits for the caller's
        transaction, or the caller for it (``shared``: readers do not wait for each other)."""
        repo = ProgramRepository(session)
        await repo.lock(store_ids, shared=shared)
        return await repo.programs(store_ids)

    async def change_program(
        self,
        session: AsyncSession,
        store_id: str,
        kind: OpKind,
        actor: str,
        key: str | None = None,
        rate: Decimal | None = None,
        days: int | None = None,
    ) -> ProgramState:
        """Apply one program operation now (the service's clock) and record it; the product
        channel is re-ranked in the same transaction. Raises the core's refusals."""
        repo = ProgramRepository(session)
        await repo.lock([store_id])
        history = (await repo.programs([store_id]))[store_id]
        op = ProgramOp(kind, self.clock.now(), key, rate, days)
        before = history.current()
        after = history.append(op).current()  # raises ProgramError when the rules refuse
        await repo.add_program_op(store_id, op, actor, state_json(before), state_json(after))
        # the product channel shows the rates in force now, and only stores in the program
        await self.channel.refresh_store(session, store_id, after, op.at)
        return after

    async def change(
        self,
        session: AsyncSession,
        store_id: str,
        kind: OpKind,
        actor: str,
        key: str | None = None,
        rate: Decimal | None = None,
        days: int | None = None,
    ) -> ProgramHistory:
        """A change asked for over HTTP: of a known store (else 404), published to the
        directory when the tracker must know; returns the program after it."""
        if self.directory is not None and not await self.directory.store_exists(session, store_id):
            raise NotFound("store", store_id=store_id)
        await self.change_program(session, store_id, kind, actor, key, rate, days)
        if self.directory is not None and kind in DIRECTORY_CHANGES:
            await self.directory.publish_store(session, store_id, self.clock.now())
        return await self.history(session, store_id)

    async def operations(
        self,
        session: AsyncSession,
        store_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Any]:
        return await ProgramRepository(session).operations(store_id, start, end)
