"""Click expiry: the join keeps clicks only as long as an order can still use them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.attribution.service import AttributionService

log = logging.getLogger(__name__)


class ClickExpiry:
    """Deletes expired clicks in chunks (one short transaction each, so the consumer's batches
    never wait long), every ``interval_s``. A failed pass is logged and tried again next time."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        service: AttributionService,
        interval_s: float,
        chunk: int = 10_000,
    ) -> None:
        self.sessions = sessions
        self.service = service
        self.interval_s = interval_s
        self.chunk = chunk
        self._stop = asyncio.Event()

    async def run_once(self) -> int:
        """One full pass; returns how many clicks were deleted."""
        total = 0
        while not self._stop.is_set():
            async with self.sessions() as session, session.begin():
                n = await self.service.expire_clicks(session, self.chunk)
            total += n
            if n < self.chunk:
                break
        if total:
            log.info("expired %d clicks", total)
        return total

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("click expiry failed; trying again in %.0fs", self.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)

    def stop(self) -> None:
        self._stop.set()
