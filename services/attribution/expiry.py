"""Click expiry: the join keeps clicks only as long as an order can still use them."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.attribution.service import AttributionService
from shared.periodic import Periodic

log = logging.getLogger(__name__)


class ClickExpiry:
    """Deletes expired clicks in chunks (one short transaction each, so the consumer's batches
    never wait long), every ``interval_s`` (:attr:`periodic`, from start). A failed pass is
    logged and tried again next time; a pass under way ends after its chunk when stopped."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        service: AttributionService,
        interval_s: float,
        chunk: int = 10_000,
    ) -> None:
        self.sessions = sessions
        self.service = service
        self.chunk = chunk
        self.periodic = Periodic("click-expiry", self.run_once, interval_s=interval_s)

    async def run_once(self) -> int:
        """One full pass; returns how many clicks were deleted."""
        total = 0
        while not self.periodic.stopping:
            async with self.sessions() as session, session.begin():
                n = await self.service.expire_clicks(session, self.chunk)
            total += n
            if n < self.chunk:
                break
        if total:
            log.info("expired %d clicks", total)
        return total
