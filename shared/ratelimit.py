"""Rate limits, pure: the generic cell rate algorithm (GCRA) and the IETF draft's headers.

No I/O, no clock: time is a parameter (integer nanoseconds of a monotonic clock), and the only
state of a caller is one integer per key, its *theoretical arrival time* (TAT). A
:class:`Quota` of ``q`` requests per ``w`` seconds lets ``q`` requests through at once and
then one every ``w / q`` seconds: exactly a token bucket of ``q`` tokens refilled at ``q`` per
``w`` seconds (the property tests hold it to one), with one number to store instead of two.

Exact: times are kept in units of ``1 / q`` nanosecond, so the emission interval ``w / q`` is
the integer ``w`` (in nanoseconds) and no rounding ever lets one request more through.

The headers follow draft-ietf-httpapi-ratelimit-headers (structured fields):
``RateLimit-Policy: "public";q=120;w=60`` (the quota) and ``RateLimit: "public";r=17;t=4``
(what remains now and in how many seconds the quota is whole again).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

NS: Final = 1_000_000_000
_QUOTA = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*s?\s*")
#: what turns a limit off in the configuration
OFF: Final = frozenset({"", "0", "off", "none"})


@dataclass(frozen=True, slots=True)
class Quota:
    """``requests`` per ``window_s`` seconds, at most ``requests`` of them at once. ``name``
    names the policy in the headers."""

    name: str
    requests: int
    window_s: int

    def __post_init__(self) -> None:
        if self.requests < 1 or self.window_s < 1:
            raise ValueError("a quota needs at least one request per at least one second")
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.name):
            raise ValueError("a policy name is a lower-case token")

    @classmethod
    def parse(cls, name: str, text: str) -> Quota | None:
        """``"<requests>/<seconds>"`` (``"120/60"``, ``"120/60s"``); ``"0"``, ``"off"`` or
        nothing: no limit (None). ``ValueError`` for anything else."""
        if text.strip().lower() in OFF:
            return None
        match = _QUOTA.fullmatch(text)
        if match is None:
            raise ValueError(f"a rate limit is '<requests>/<seconds>' or 'off', not {text!r}")
        return cls(name, int(match[1]), int(match[2]))

    @property
    def policy(self) -> str:
        """The ``RateLimit-Policy`` header's value."""
        return f'"{self.name}";q={self.requests};w={self.window_s}'


@dataclass(frozen=True, slots=True)
class Decision:
    """What :func:`gcra` decided: whether the request may pass, the TAT to keep (unchanged
    when refused), how many more may pass now, and seconds until the quota is whole again
    (``reset_s``) and until the next request may pass (``retry_after_s``, 0 when allowed)."""

    allowed: bool
    tat: int
    remaining: int
    reset_s: float
    retry_after_s: float

    def headers(self, quota: Quota) -> list[tuple[str, str]]:
        """``RateLimit-Policy`` and ``RateLimit``, and ``Retry-After`` when refused (whole
        seconds, rounded up: a client that waits that long is let through)."""
        out = [
            ("RateLimit-Policy", quota.policy),
            ("RateLimit", f'"{quota.name}";r={self.remaining};t={math.ceil(self.reset_s)}'),
        ]
        if not self.allowed:
            out.append(("Retry-After", str(max(1, math.ceil(self.retry_after_s)))))
        return out


def gcra(quota: Quota, tat: int | None, now_ns: int, cost: int = 1) -> Decision:
    """Whether a request costing ``cost`` may pass at ``now_ns`` for a caller whose stored TAT
    is ``tat`` (None: never seen, or forgotten — the same as a whole quota)."""
    q, interval = quota.requests, quota.window_s * NS  # units of 1/q ns: interval = w/q s
    window = interval * q
    now = now_ns * q
    base = now if tat is None or tat < now else tat
    new = base + interval * cost
    allow_at = new - window
    if allow_at > now:
        left = _remaining(base, now, interval, window)
        return Decision(False, base, left, *_secs(base - now, allow_at - now, q))
    return Decision(True, new, _remaining(new, now, interval, window), *_secs(new - now, 0, q))


def admit(quota: Quota, tat: int | None, now_ns: int, cost: int = 1) -> int | None:
    """:func:`gcra` without its headers: the TAT to keep when the request may pass, None when
    it is refused (for a path that answers no rate-limit headers when it lets one through)."""
    q, interval = quota.requests, quota.window_s * NS
    now = now_ns * q
    base = now if tat is None or tat < now else tat
    new = base + interval * cost
    return None if new - interval * q > now else new


def refund(quota: Quota, tat: int, now_ns: int, cost: int = 1) -> int | None:
    """The TAT after giving back what a request took (a credential that turned out to be
    forged must not spend its victim's quota); None when the quota is whole again."""
    back = tat - quota.window_s * NS * cost
    return None if back <= now_ns * quota.requests else back


def charge(quota: Quota, tat: int | None, now_ns: int, cost: int = 1) -> int:
    """The TAT after a request that is counted whatever the quota says (a request already
    served, e.g. one whose credential was refused, charged to its address afterwards). It
    may run past the window: the caller waits longer."""
    now = now_ns * quota.requests
    base = now if tat is None or tat < now else tat
    return base + quota.window_s * NS * cost


def whole(quota: Quota, tat: int | None, now_ns: int) -> bool:
    """True when the caller has its whole quota again (its TAT can be forgotten)."""
    return tat is None or tat <= now_ns * quota.requests


def exhausted(quota: Quota, tat: int | None, now_ns: int) -> bool:
    """True when a request now would be refused (a look that changes nothing)."""
    return not gcra(quota, tat, now_ns).allowed


def _remaining(tat: int, now: int, interval: int, window: int) -> int:
    return max(0, (now + window - tat) // interval)


def _secs(reset: int, retry: int, q: int) -> tuple[float, float]:
    per_s = q * NS
    return max(0, reset) / per_s, max(0, retry) / per_s
