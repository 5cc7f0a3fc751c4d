"""Click quality: mark (never drop) clicks that should not win an order.

Pure apart from the in-memory counters it is given; the clock is a parameter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import crawleruseragents

#: the longest user agent the tracker reads: longer ones are cut before any matching, so a
#: hostile header costs bounded time (the bot patterns) and memory (the cache below)
MAX_USER_AGENT = 512


def cut_user_agent(user_agent: str | None) -> str | None:
    """The user agent as the tracker keeps and matches it: at most 512 characters."""
    return user_agent[:MAX_USER_AGENT] if user_agent else None


@lru_cache(maxsize=65_536)
def is_bot(user_agent: str | None) -> bool:
    """Known bots, crawlers and link-preview fetchers (the maintained crawler-user-agents
    list), and requests with no user agent at all."""
    if not user_agent or not user_agent.strip():
        return True
    return bool(crawleruseragents.is_crawler(user_agent))


PREFETCH_HEADERS = (("purpose", "prefetch"), ("sec-purpose", "prefetch"), ("x-moz", "prefetch"))


def is_prefetch(headers: Mapping[str, str]) -> bool:
    """A browser or proxy prefetch is never a click."""
    return any(headers.get(name, "").lower().startswith(value) for name, value in PREFETCH_HEADERS)


@dataclass
class FloodGuard:
    """Counts clicks per (link, visitor) and (link, ip) over a sliding minute."""

    limit: int
    window_s: float = 60.0
    _hits: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def hit(self, link: str, who: str, now: float) -> int:
        """Record one click; returns how many clicks ``who`` made on ``link`` in the window."""
        q = self._hits.setdefault((link, who), deque())
        q.append(now)
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return len(q)

    def flooded(self, link: str, keys: list[str], now: float) -> bool:
        return max((self.hit(link, k, now) for k in keys), default=0) > self.limit

    def sweep(self, now: float) -> None:
        """Forget idle counters (bounded memory)."""
        for key in [k for k, q in self._hits.items() if not q or q[-1] <= now - self.window_s]:
            del self._hits[key]


@dataclass
class SelfReferral:
    """Addresses an affiliate used its API key from, remembered for a day: a click on its own
    link from one of them is the affiliate clicking itself."""

    horizon_s: float = 86_400.0
    _seen: dict[tuple[str, str], float] = field(default_factory=dict)

    def saw(self, affiliate_id: str, ip: str, now: float) -> None:
        self._seen[(affiliate_id, ip)] = now

    def is_self(self, affiliate_id: str, ip: str | None, now: float) -> bool:
        if ip is None:
            return False
        at = self._seen.get((affiliate_id, ip))
        return at is not None and now - at <= self.horizon_s


def suspicion(*, bot: bool, flooded: bool, self_referral: bool) -> str | None:
    """The reason a click is suspicious (the first that applies), or None."""
    if bot:
        return "bot"
    if self_referral:
        return "self_referral"
    if flooded:
        return "flood"
    return None
