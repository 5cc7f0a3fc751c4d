"""The click cap, pure: how many clicks one visitor, or one client address, may store per link
per UTC day.

A click counts against one key per subject: ``(day, link, "visitor:<id>")`` always, and
``(day, link, "address:<ip>")`` when the tracker saw the client's address. A click is stored
while every one of its keys has stored fewer than ``cap`` clicks; past the cap it is not
stored individually but counted, charged to the first of its keys that refused it (so the
overflow counts of all keys add up to the clicks not stored, each once). Within a batch the
earlier click (by time, then click id) is stored first. A replay is the caller's to weed out
(it passes only clicks it has not stored).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Final

from shared.events import Click

#: clicks one visitor (or one address) may store per link per UTC day (the default of
#: ``ALLIANCE_CLICK_CAP_PER_DAY``)
DEFAULT_CAP_PER_DAY: Final = 100
#: the longest client address a key holds (its column is 200 characters)
MAX_ADDRESS: Final = 64


@dataclass(frozen=True, slots=True, order=True)
class CapKey:
    day: date
    link_code: str
    #: ``visitor:<visitor id>`` or ``address:<client address>``
    subject: str


def cap_keys(click: Click) -> tuple[CapKey, ...]:
    """The keys ``click`` counts against (visitor first)."""
    day = click.occurred_at.astimezone(UTC).date()
    visitor = CapKey(day, click.link_code, f"visitor:{click.visitor_id}")
    if not click.ip:
        return (visitor,)
    # an address is at most 45 characters (IPv6 text); a longer value is cut, never refused
    return visitor, CapKey(day, click.link_code, f"address:{click.ip[:MAX_ADDRESS]}")


@dataclass
class Admission:
    """What :func:`admit` decided for a batch."""

    #: the clicks to store, in time order
    admitted: list[Click] = field(default_factory=list)
    #: per key: admitted clicks that count against it
    stored: Counter[CapKey] = field(default_factory=Counter)
    #: per key: clicks not stored, charged to it (the first key that refused each)
    overflow: Counter[CapKey] = field(default_factory=Counter)


def admit(clicks: Iterable[Click], stored: Mapping[CapKey, int], cap: int) -> Admission:
    """Which of ``clicks`` (new ones, any order) are stored, given what each key has
    ``stored`` already (a missing key: none), under ``cap`` clicks per key."""
    out = Admission()
    for click in sorted(clicks, key=lambda c: (c.occurred_at, c.click_id)):
        keys = cap_keys(click)
        refused = next((k for k in keys if stored.get(k, 0) + out.stored[k] >= cap), None)
        if refused is None:
            out.admitted.append(click)
            out.stored.update(keys)
        else:
            out.overflow[refused] += 1
    return out
