"""Click quality: mark (never drop) clicks that should not win an order.

Pure apart from the in-memory counters it is given; the clock is a parameter.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Generic, TypeVar

import crawleruseragents

#: the longest user agent the tracker reads: longer ones are cut before any matching, so a
#: hostile header costs bounded time (the bot patterns) and memory (the cache below)
MAX_USER_AGENT = 512
#: user agents whose verdict is cached: at most ~512 characters each, so the cache stays under
#: ~12 MB whatever the traffic (browsers share few user agents; a hostile client's distinct
#: ones only evict each other)
BOT_CACHE_SIZE = 16_384

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def cut_user_agent(user_agent: str | None) -> str | None:
    """The user agent as the tracker keeps and matches it: at most 512 characters."""
    return user_agent[:MAX_USER_AGENT] if user_agent else None


def is_bot(user_agent: str | None) -> bool:
    """Known bots, crawlers and link-preview fetchers (the maintained crawler-user-agents
    list), and requests with no user agent at all. Matches at most the first 512 characters
    (:func:`cut_user_agent`), from a bounded cache."""
    return _is_bot(cut_user_agent(user_agent))


@lru_cache(maxsize=BOT_CACHE_SIZE)
def _is_bot(user_agent: str | None) -> bool:
    if not user_agent or not user_agent.strip():
        return True
    return bool(crawleruseragents.is_crawler(user_agent))


PREFETCH_HEADERS = (("purpose", "prefetch"), ("sec-purpose", "prefetch"), ("x-moz", "prefetch"))


def is_prefetch(headers: Mapping[str, str]) -> bool:
    """A browser or proxy prefetch is never a click."""
    return any(headers.get(name, "").lower().startswith(value) for name, value in PREFETCH_HEADERS)


class Expiring(Generic[K, V]):
    """A map that forgets an entry ``span_s`` or more after it was last written, and never
    holds more than about ``max_keys`` entries.

    Two generations, swapped every ``span_s`` (on any access, or by :meth:`sweep` on a
    timer): writes go to the current one, reads look in both, a swap drops the previous one
    whole. Expiry is O(1) per access, with no per-entry timestamps to scan: memory is what was
    written within the last two spans. Past ``max_keys`` the previous generation is dropped at
    once (``forgotten`` counts those entries): under a flood of distinct keys the map forgets
    early rather than grow. Callers that need an exact age store the time in the value."""

    def __init__(self, span_s: float, max_keys: int) -> None:
        self.span_s = span_s
        self.max_keys = max_keys
        self.forgotten = 0
        self._current: dict[K, V] = {}
        self._previous: dict[K, V] = {}
        self._since: float | None = None  # when the current generation began

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def get(self, key: K, now: float) -> V | None:
        self.sweep(now)
        value = self._current.get(key)
        return self._previous.get(key) if value is None else value

    def put(self, key: K, value: V, now: float) -> None:
        self.sweep(now)
        self._current[key] = value
        if self._previous:
            self._previous.pop(key, None)  # moved, not kept twice
        if len(self._current) + len(self._previous) > self.max_keys:
            self.forgotten += len(self._previous)
            self._previous, self._current = self._current, {}

    def sweep(self, now: float) -> None:
        """Swap generations if a span has passed since the last swap (a timer calls this so
        that an idle map frees its memory too)."""
        if self._since is None:
            self._since = now
        elif now - self._since >= self.span_s:
            stale = now - self._since >= 2 * self.span_s  # the current one is old too
            self._previous = {} if stale else self._current
            self._current = {}
            self._since = now


@dataclass
class FloodGuard:
    """Counts clicks per (link, visitor) and (link, ip) over a sliding minute, exactly, in
    bounded memory: a counter keeps only its last ``limit + 1`` click times (enough to tell
    "more than ``limit``") and is forgotten a minute after its last click
    (:class:`Expiring`); at most ``max_keys`` counters."""

    limit: int
    window_s: float = 60.0
    max_keys: int = 1_000_000
    _hits: Expiring[int, float | tuple[float, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._hits = Expiring(self.window_s, self.max_keys)

    def hit(self, link: str, who: str, now: float) -> int:
        """Record one click; returns how many clicks ``who`` made on ``link`` in the window
        (counting at most ``limit + 1``)."""
        # the key is a hash: a 64-bit int costs a third of the two strings it stands for (a
        # collision, ~n²/2⁶⁴, would only make two counters one)
        key = hash((link, who))
        before = self._hits.get(key, now)
        if before is None:
            self._hits.put(key, now, now)  # the common case (a first click): one float
            return 1
        times = before if isinstance(before, tuple) else (before,)
        # times ascend: the ones within the window are a suffix (a flooder's counter is
        # consulted on every click, so no scan in Python)
        recent = (*times[bisect_right(times, now - self.window_s) :], now)[-(self.limit + 1) :]
        self._hits.put(key, recent[0] if len(recent) == 1 else recent, now)
        return len(recent)

    def flooded(self, link: str, keys: list[str], now: float) -> bool:
        return max((self.hit(link, k, now) for k in keys), default=0) > self.limit

    def sweep(self, now: float) -> None:
        """Forget idle counters (bounded memory)."""
        self._hits.sweep(now)

    def __len__(self) -> int:
        return len(self._hits)

    @property
    def forgotten(self) -> int:
        """Entries dropped early to stay within ``max_keys``."""
        return self._hits.forgotten


@dataclass
class SelfReferral:
    """Addresses an affiliate used its API key from, remembered for a day (at most
    ``max_keys`` of them): a click on its own link from one of them is the affiliate clicking
    itself."""

    horizon_s: float = 86_400.0
    max_keys: int = 1_000_000
    _seen: Expiring[int, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._seen = Expiring(self.horizon_s, self.max_keys)

    def saw(self, affiliate_id: str, ip: str, now: float) -> None:
        self._seen.put(hash((affiliate_id, ip)), now, now)

    def is_self(self, affiliate_id: str, ip: str | None, now: float) -> bool:
        if ip is None:
            return False
        at = self._seen.get(hash((affiliate_id, ip)), now)
        return at is not None and now - at <= self.horizon_s

    def sweep(self, now: float) -> None:
        self._seen.sweep(now)

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def forgotten(self) -> int:
        """Entries dropped early to stay within ``max_keys``."""
        return self._seen.forgotten


def suspicion(*, bot: bool, flooded: bool, self_referral: bool) -> str | None:
    """The reason a click is suspicious (the first that applies), or None."""
    if bot:
        return "bot"
    if self_referral:
        return "self_referral"
    if flooded:
        return "flood"
    return None
