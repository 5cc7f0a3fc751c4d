"""Hold rules, pure: finance holds an affiliate's commissions on a store (or on every store)
while fraud is reviewed; held commission is posted but not payable; a release makes it payable
again with nothing lost; a void reverses it (reason ``fraud``) on the orders not locked yet.

No I/O, no clock reads (times are parameters), no framework imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.commission.core.errors import ProgramError


class HoldStatus(StrEnum):
    ACTIVE = "active"
    RELEASED = "released"  # the commissions are payable again, nothing lost
    VOIDED = "voided"  # the commissions not locked were reversed (reason fraud)


class HoldNotActive(ProgramError):
    code = "hold_not_active"
    default_message = "the hold was released or voided already"


@dataclass(frozen=True, slots=True)
class Hold:
    """An affiliate on hold for ``store_id`` (None: every store) from ``created_at``."""

    hold_id: int
    affiliate_id: str
    store_id: str | None
    status: HoldStatus
    created_at: datetime

    def covers(self, store_id: str, affiliate_id: str | None) -> bool:
        """Whether an order of ``store_id`` attributed to ``affiliate_id`` is held by this."""
        return (
            self.status is HoldStatus.ACTIVE
            and affiliate_id == self.affiliate_id
            and (self.store_id is None or self.store_id == store_id)
        )


def holding(holds: Iterable[Hold], store_id: str, affiliate_id: str | None) -> Hold | None:
    """The active hold that holds an order (the oldest, if several), else None."""
    found = [h for h in holds if h.covers(store_id, affiliate_id)]
    return min(found, key=lambda h: (h.created_at, h.hold_id)) if found else None


def end(hold: Hold, status: HoldStatus) -> Hold:
    """``hold`` released or voided; :class:`HoldNotActive` when it ended already."""
    if hold.status is not HoldStatus.ACTIVE:
        raise HoldNotActive(hold_id=str(hold.hold_id), status=hold.status.value)
    return Hold(hold.hold_id, hold.affiliate_id, hold.store_id, status, hold.created_at)


@dataclass(frozen=True, slots=True)
class Earned:
    """What an affiliate earned on one order in one currency (minor units), and when the
    order's commission locks."""

    store_id: str
    currency: str
    minor: int
    locks_at: datetime


def payable_split(
    earned: Iterable[Earned],
    holds: Iterable[Hold],
    affiliate_id: str,
    now: datetime,
    *,
    requires_lock: bool = False,
) -> tuple[dict[str, int], dict[str, int]]:
    """Per currency: what is payable and what is held. An order an active hold holds is held
    (posted, not payable); with ``requires_lock`` an order not locked at ``now`` is neither
    (not payable yet). Released holds hold nothing: what they held is payable again."""
    holds = list(holds)
    payable: dict[str, int] = {}
    held: dict[str, int] = {}
    for e in earned:
        if holding(holds, e.store_id, affiliate_id) is not None:
            held[e.currency] = held.get(e.currency, 0) + e.minor
        elif not requires_lock or e.locks_at <= now:
            payable[e.currency] = payable.get(e.currency, 0) + e.minor
    return payable, held
