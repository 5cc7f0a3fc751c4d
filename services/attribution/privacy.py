"""Erasures in attribution (docs/privacy.md): an erasure read from the privacy topic erases
what attribution holds of the visitor and lists the visitor's keyed hash; every batch is then
screened, so the visitor's clicks that arrive later are dropped and their placements are
pseudonymised. Runs in the batch's transaction, ahead of the join's handler."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from services.attribution.repository import PrivacyRepository
from services.attribution.service import Incoming
from shared.clock import Clock
from shared.events import Erasure
from shared.kafka import Received
from shared.privacy import ErasureSeal, pseudonym
from shared.privacy_store import ErasedVisitors

log = logging.getLogger(__name__)

#: what attribution's pipeline reads: the join's events, or an erasure
WithErasures = Incoming | Erasure
Handle = Callable[[AsyncSession, list[Received[Incoming]]], Awaitable[None]]


@dataclass
class Erasures:
    secret_key: str
    clock: Clock

    @property
    def erased_visitors(self) -> ErasedVisitors:
        return ErasedVisitors("attribution", self.secret_key)

    async def apply(
        self, session: AsyncSession, batch: list[Received[WithErasures]]
    ) -> list[Received[Incoming]]:
        """Apply the batch's erasures (idempotent), then the batch as the join may see it:
        erasures skipped, erased visitors' events screened."""
        erasures = [r.value for r in batch if isinstance(r.value, Erasure)]
        if erasures:
            await self.erased_visitors.exclude_screens(session)
            seal, repo = ErasureSeal(self.secret_key), PrivacyRepository(session)
            for e in erasures:
                visitor = seal.open(e.sealed_visitor)
                if visitor is None:  # another deployment's key: only the hash can be listed
                    log.warning("erasure %s: the visitor id does not open", e.event_id)
                    continue
                counts = await repo.erase_visitor(visitor, pseudonym(self.secret_key, visitor))
                log.info("erasure %s applied: %s", e.event_id, counts)
            await self.erased_visitors.record(
                session, [e.visitor_hash for e in erasures], self.clock.now()
            )
        rest = cast(
            list[Received[Incoming]],
            [replace(r, value=None) if isinstance(r.value, Erasure) else r for r in batch],
        )
        return await self.erased_visitors.screen(session, rest)

    def before(
        self, handle: Handle
    ) -> Callable[[AsyncSession, list[Received[WithErasures]]], Awaitable[None]]:
        """``handle`` (the join's batch handler) with the erasures applied ahead of it."""

        async def with_erasures(session: AsyncSession, batch: list[Received[WithErasures]]) -> None:
            await handle(session, await self.apply(session, batch))

        return with_erasures
