"""Idempotency of the events the commission service applies: one namespace per source.

Two sources feed the orders' facts: storefront events (``orders`` topic; their ``event_id`` is
chosen by the store, any :data:`~shared.events.Ident`) and attribution's decisions
(``attributions`` topic; ``"<store>:<order>:<revision>"``). Each applied event is recorded
once under ``(source, key)``. The source is never read from the key: it comes from the kind of
event (which topic decoded it), so no value a store chooses can land in the decisions'
namespace, whatever its shape. (Before, both lived in one column as ``"<store>/<event id>"``:
a store event with ``event_id`` ``"<store>:<order>:0"`` took its order's decision's slot and
the real decision was dropped as a duplicate.)

Within a source a key is read one way only: store ids hold neither ``:`` nor ``/``
(:data:`~shared.events.PrincipalId`) and no identifier holds ``/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Source(StrEnum):
    """Where an applied event came from: its idempotency namespace (a column with a check
    constraint in ``commission.processed_events``)."""

    STOREFRONT = "storefront"  # a store's order event: event ids chosen by the store
    DECISION = "decision"  # an attribution decision: ids made by the attribution service


SOURCES: Final = tuple(s.value for s in Source)


@dataclass(frozen=True, slots=True, order=True)
class AppliedKey:
    """The idempotency key of an applied event: unique per (source, key)."""

    source: Source
    key: str


def _parts(*parts: str) -> str:
    """The parts joined by ``/``, which none may hold (no identifier does: the events'
    schemas refuse it), so a key is read one way only."""
    if any(not p or "/" in p for p in parts):
        raise ValueError(f"an identifier in an applied event's key is empty or holds '/': {parts}")
    return "/".join(parts)


def storefront_key(store_id: str, event_id: str) -> AppliedKey:
    """A storefront event: its id is unique per store (the store chooses it)."""
    return AppliedKey(Source.STOREFRONT, _parts(store_id, event_id))


def decision_key(store_id: str, order_id: str, revision: int) -> AppliedKey:
    """A decision: one per (store, order, revision), built from those fields, never from an id
    a client could have chosen."""
    if revision < 0:
        raise ValueError("a decision's revision is 0 or more")
    return AppliedKey(Source.DECISION, _parts(store_id, order_id, str(revision)))
