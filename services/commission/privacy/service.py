"""A visitor's erasure and export (docs/privacy.md): the commission service erases what it
holds in the request's transaction, lists the visitor's keyed hash (its consumers drop the
visitor's later events) and publishes the erasure on the privacy topic for attribution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.audit import Recorder
from services.commission.models import outbox
from services.commission.privacy.repository import PrivacyRepository
from shared.clock import Clock, SystemClock
from shared.events import Erasure, Topic, encode
from shared.outbox import OutboxRepository
from shared.privacy import ErasureSeal, pseudonym, visitor_hash
from shared.privacy_store import ErasedVisitors

OUTBOX = OutboxRepository(outbox)


@dataclass
class PrivacyService:
    secret_key: str
    topic_prefix: str = ""
    clock: Clock = field(default_factory=SystemClock)

    @property
    def erased_visitors(self) -> ErasedVisitors:
        return ErasedVisitors("commission", self.secret_key)

    async def erase(
        self, session: AsyncSession, visitor_id: str, audit: Recorder | None = None
    ) -> tuple[str, bool, dict[str, int]]:
        """Erase the visitor: ``(pseudonym, erased before, rows changed per table)``.
        Idempotent: a second erasure finds nothing more (unless events arrived in between)
        and publishes the erasure again (attribution's erasure is idempotent too)."""
        await self.erased_visitors.exclude_screens(session)  # no click slips past it
        now = self.clock.now()
        digest = visitor_hash(self.secret_key, visitor_id)
        already = bool(await self.erased_visitors.erased(session, [digest]))
        alias = pseudonym(self.secret_key, visitor_id)
        counts = await PrivacyRepository(session).erase(visitor_id, alias)
        await self.erased_visitors.record(session, [digest], now)
        event = Erasure(
            event_id=f"erasure:{digest[:32]}:{int(now.timestamp())}",
            occurred_at=now,
            visitor_hash=digest,
            sealed_visitor=ErasureSeal(self.secret_key).seal(visitor_id),
        )
        topic = f"{self.topic_prefix}{Topic.PRIVACY}"
        await OUTBOX.add(session, [(topic, digest, encode(event))])
        if audit is not None:
            # the record names the pseudonym, never the id
            await audit.record(
                "visitor.erase",
                f"visitor:{alias}",
                tenant=None,
                before=None,
                after={"already_erased": already, "erased": counts},
            )
        return alias, already, counts

    async def export(self, session: AsyncSession, visitor_id: str) -> dict[str, Any]:
        """What the commission service holds about the visitor, by kind."""
        digest = visitor_hash(self.secret_key, visitor_id)
        held = await PrivacyRepository(session).export(visitor_id)
        erased = bool(await self.erased_visitors.erased(session, [digest]))
        return {"visitor_id": visitor_id, "erased": erased, **held}
