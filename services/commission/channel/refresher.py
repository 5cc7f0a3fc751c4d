"""The product refresher: every store's ranking fields, periodically (sales history moves on
its own), one store per transaction, under the store's program lock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.channel.service import ChannelService
from services.commission.program.service import ProgramService
from shared.clock import Clock

log = logging.getLogger(__name__)


@dataclass
class ProductRefresher:
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    interval_s: float
    programs: ProgramService
    channel: ChannelService = field(default_factory=ChannelService)

    def __post_init__(self) -> None:
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def refresh(self, session: AsyncSession, store_ids: list[str]) -> int:
        """Refresh stores' products under their program locks (a program change refreshes
        its store in its own transaction: never overwritten by a refresh that read the
        program before it)."""
        now = self.clock.now()
        programs = await self.programs.locked_histories(session, store_ids)
        return sum(
            [
                await self.channel.refresh_store(session, s, programs[s].state_at(now), now)
                for s in store_ids
            ]
        )

    async def run_once(self) -> int:
        async with self.sessions() as session:
            stores = await self.channel.stores_with_products(session)
        n = 0
        for store in stores:
            async with self.sessions() as session, session.begin():
                n += await self.refresh(session, [store])
        return n

    async def run(self) -> None:
        """Every ``interval_s``, from one interval after start (what is stored stays valid
        across a restart: no re-ranking of every store at start-up)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval_s)
            if self._stopping.is_set():
                return
            try:
                await self.run_once()
            except Exception:
                log.warning(
                    "product refresh failed; next try in %.0fs", self.interval_s, exc_info=True
                )
