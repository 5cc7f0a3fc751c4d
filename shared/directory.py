"""Directory entries' keys and versions: which entry of a key a reader keeps.

The commission service numbers the entries of each key (a store, an affiliate, a store's
coupon code, an affiliate's standing with a store) from a counter in its database that only
grows, taken under that key's row lock in the transaction of the change, before the entry's
state is read: of two entries of one key, the higher version was committed later and shows
everything the lower one did. Kafka's order says nothing of that: ``alliance dlq replay`` or
any raw produce republishes an old entry unchanged, and two commission replicas' relays may
publish one key's entries out of order.

The rule, for every reader: an entry whose version is *lower* than the one held for its key is
ignored; an equal one is the same entry again (applying it twice changes nothing); a higher
one replaces it. Entries published before versions existed carry 0: among themselves the last
arrival wins (as it always did), and none overrides a versioned entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from shared.coupons import coupon_key
from shared.events import (
    AffiliateEntry,
    CouponEntry,
    DirectoryEntryBase,
    PartnerEntry,
    StoreEntry,
)

E = TypeVar("E", bound=DirectoryEntryBase)


def store_key(store_id: str) -> str:
    """The Kafka key (and version counter) of a store's entries."""
    return f"store:{store_id}"


def affiliate_key(affiliate_id: str) -> str:
    """The Kafka key (and version counter) of an affiliate's entries."""
    return f"affiliate:{affiliate_id}"


def coupon_entry_key(store_id: str, code: str) -> str:
    """The Kafka key (and version counter) of a store's coupon code, any case: compaction
    keeps the latest entry of each code."""
    return f"coupon:{store_id}:{coupon_key(code)}"


def partner_entry_key(store_id: str, affiliate_id: str) -> str:
    """The Kafka key (and version counter) of an affiliate's standing with a store."""
    return f"partner:{store_id}:{affiliate_id}"


def directory_key(entry: DirectoryEntryBase) -> str:
    """The key of an entry, from what it says (never from the record's Kafka key, which a
    producer chooses): principal ids have no ``:``, so no two entries' keys can collide."""
    if isinstance(entry, StoreEntry):
        return store_key(entry.store_id)
    if isinstance(entry, AffiliateEntry):
        return affiliate_key(entry.affiliate_id)
    if isinstance(entry, CouponEntry):
        return coupon_entry_key(entry.store_id, entry.code)
    if isinstance(entry, PartnerEntry):
        return partner_entry_key(entry.store_id, entry.affiliate_id)
    raise TypeError(f"not a directory entry: {type(entry).__name__}")


def supersedes(version: int, held: int | None) -> bool:
    """Whether an entry of ``version`` may replace what a reader holds for its key (``held``;
    None: nothing yet): not older. Equal: the same entry again, harmless to re-apply."""
    return held is None or version >= held


class DirectoryVersions:
    """The version a reader holds per key, and the rule (:func:`supersedes`) applied to each
    entry as it arrives. Pure: the reader keeps it in memory or stores :attr:`held`."""

    def __init__(self, held: Mapping[str, int] | None = None) -> None:
        self.held: dict[str, int] = dict(held or {})
        #: entries refused as older than the version held (a replay, or a reordering)
        self.stale = 0

    def admit(self, entry: DirectoryEntryBase) -> bool:
        """True (and the entry's version now held) when the reader applies ``entry``; False
        when it is older than what the reader holds: ignore it."""
        key = directory_key(entry)
        if not supersedes(entry.version, self.held.get(key)):
            self.stale += 1
            return False
        self.held[key] = entry.version
        return True

    def admit_all(self, entries: Iterable[E]) -> list[E]:
        """The ``entries`` (in arrival order) the reader applies, one after the other."""
        return [e for e in entries if self.admit(e)]
