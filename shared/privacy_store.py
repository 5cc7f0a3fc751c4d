"""The list of erased visitors (``erased_visitors`` in a service's schema, keyed hashes only)
and the screen every consumer of visitors' events puts before its batch handler: events of an
erased visitor that arrive later (still on the topics, or replayed) are dropped, or
pseudonymised where money needs them (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Column, DateTime, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clickcap_store import ClickCapStore
from shared.clock import Clock
from shared.events import Attribution, Click, OrderPlaced, PageView
from shared.kafka import Received
from shared.periodic import Periodic
from shared.privacy import full_addresses_from, pseudonym, visitor_hash

T = TypeVar("T")
Handle = Callable[[AsyncSession, list[Received[T]]], Awaitable[None]]


def erased_visitors_table(metadata: MetaData) -> Table:
    return Table(
        "erased_visitors",
        metadata,
        #: HMAC-SHA256 of the visitor id (shared.privacy.visitor_hash): never the id itself
        Column("visitor_hash", String(64), primary_key=True),
        Column("erased_at", DateTime(timezone=True), nullable=False),
    )


def screened(event: Any, secret_key: str) -> Any:
    """What a consumer may apply of ``event``, an erased visitor's: nothing of a click or a
    page view (None: skipped), a placement or a decision with the visitor's keyed pseudonym
    (the order's money and affiliate stay exact); anything else unchanged."""
    if isinstance(event, Click | PageView):
        return None
    if isinstance(event, OrderPlaced):
        return event.model_copy(update={"visitor_id": pseudonym(secret_key, event.visitor_id)})
    if isinstance(event, Attribution):
        p = pseudonym(secret_key, event.visitor_id)
        return event.model_copy(
            update={"visitor_id": p, "order": event.order.model_copy(update={"visitor_id": p})}
        )
    return event


@dataclass(frozen=True)
class ErasedVisitors:
    """``schema``: the service's schema, whose ``erased_visitors`` table this is."""

    schema: str
    secret_key: str

    async def exclude_screens(self, session: AsyncSession) -> None:
        """Wait for every batch that screened against the list and is still applying to
        commit, and hold new screens until this transaction (an erasure) commits: a screen's
        read holds the table's ACCESS SHARE lock to its commit, which this ACCESS EXCLUSIVE
        lock waits for; a screen that waited then reads the list with the erasure in it.
        Without it a click screened just before the erasure commits could be stored after the
        erasure deleted the visitor's clicks. First in the erasure's transaction (it holds
        nothing else yet, so no deadlock)."""
        await session.execute(
            text(f"LOCK TABLE {self.schema}.erased_visitors IN ACCESS EXCLUSIVE MODE")
        )

    async def record(self, session: AsyncSession, hashes: Iterable[str], at: datetime) -> None:
        """Add visitors to the list (idempotent); flushed, the caller commits."""
        values = sorted(set(hashes))
        if values:
            await session.execute(
                text(
                    f"INSERT INTO {self.schema}.erased_visitors (visitor_hash, erased_at) "
                    "SELECT h, :at FROM unnest(CAST(:hashes AS text[])) AS h "
                    "ON CONFLICT (visitor_hash) DO NOTHING"
                ),
                {"hashes": values, "at": at},
            )

    async def erased(self, session: AsyncSession, hashes: Iterable[str]) -> set[str]:
        """Of ``hashes``, those in the list."""
        values = sorted(set(hashes))
        if not values:
            return set()
        rows = await session.execute(
            text(
                f"SELECT visitor_hash FROM {self.schema}.erased_visitors "
                "WHERE visitor_hash = ANY(CAST(:hashes AS text[]))"
            ),
            {"hashes": values},
        )
        return {r.visitor_hash for r in rows}

    async def screen(self, session: AsyncSession, batch: list[Received[T]]) -> list[Received[T]]:
        """The batch with every erased visitor's event :func:`screened` (records kept, values
        replaced: offsets still advance past them). One indexed read per batch."""
        hashes: dict[str, str] = {}
        for r in batch:
            visitor = getattr(r.value, "visitor_id", None)
            if isinstance(visitor, str) and visitor not in hashes:
                hashes[visitor] = visitor_hash(self.secret_key, visitor)
        erased = await self.erased(session, hashes.values())
        if not erased:
            return batch
        gone = {v for v, h in hashes.items() if h in erased}
        return [
            replace(r, value=screened(r.value, self.secret_key))
            if getattr(r.value, "visitor_id", None) in gone
            else r
            for r in batch
        ]

    def before(self, handle: Handle[T]) -> Handle[T]:
        """``handle`` with this screen in front of it, in the batch's transaction."""

        async def screened_handle(session: AsyncSession, batch: list[Received[T]]) -> None:
            await handle(session, await self.screen(session, batch))

        return screened_handle


class AddressMinimisation:
    """Cuts clients' addresses at rest once click quality no longer needs them
    (docs/privacy.md): the click cap's rows of days over by ``keep``, in chunks (one short
    transaction each), every ``interval_s`` (:attr:`periodic`). A failed pass is tried again
    next time; a pass under way ends after its chunk when stopped."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        schema: str,
        clock: Clock,
        keep: timedelta,
        interval_s: float,
        chunk: int = 10_000,
    ) -> None:
        self.sessions = sessions
        self.caps = ClickCapStore(schema)
        self.clock = clock
        self.keep = keep
        self.chunk = chunk
        self.periodic = Periodic("address-minimisation", self.run_once, interval_s=interval_s)

    async def run_once(self) -> int:
        """One full pass; returns how many rows were cut."""
        before = full_addresses_from(self.clock.now(), self.keep)
        total = 0
        while not self.periodic.stopping:
            async with self.sessions() as session, session.begin():
                n = await self.caps.truncate_addresses(session, before, self.chunk)
            total += n
            if n < self.chunk:
                break
        return total
