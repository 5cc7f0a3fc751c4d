"""Rate limits of the HTTP services: who a request is charged to, the in-memory quotas of one
process (:class:`Limiter`, over the pure :mod:`shared.ratelimit`) and the ASGI middleware
(:class:`RateLimit`) that answers ``429`` before any route runs.

A request is charged to exactly one caller, chosen from what it carries:

- an ``Authorization: Bearer`` key: that key (``key`` quota, the same for every kind of key);
- a storefront-signed ingestion request (``X-Alliance-Store`` on the tracker's ``POST
  /v1/events`` and ``/v1/clicks``): that store (``store`` quota), so one store's flood never
  uses another's share;
- anything else: the client's address (``public`` quota), as the server saw it after the
  trusted proxies (``ALLIANCE_FORWARDED_ALLOW_IPS``: uvicorn replaced ``scope["client"]``
  with the forwarded address only for those; nothing here reads ``X-Forwarded-For``).
  The tracker's click redirect ``GET /r/{code}`` has its own, generous, per-address quota
  (``redirect``): a buyer behind a shared address must not lose a click.

The credential is not checked here (that is the route's work): a made-up key or store would
otherwise spend a victim's quota, or escape the address's. So a request answered ``401`` gives
back what it took from the key's or store's quota and is charged to its address instead (a
quota as large as the public one, kept apart from it: browsing the camp never locks a key out),
and a credentialed request from an address whose refused credentials spent that quota is
refused: forging keys costs the forger's address, never the key's owner.

The quotas are per process (each replica counts its own: a deployment of ``n`` replicas
behind a balancer lets up to ``n`` times as much through), kept for at most
``ALLIANCE_RATE_LIMIT_MAX_KEYS`` callers (those with a whole quota are forgotten first).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http import bearer_token, errors
from shared.ratelimit import Decision, Quota, admit, charge, gcra, refund, whole

#: the environment of a run whose load comes from one address and is not about limits (the
#: benches, the test suite): quotas no load generator reaches, so the limiter still runs and
#: its cost is measured, but never refuses
UNREACHED_LIMITS_ENV: Final = {
    f"ALLIANCE_RATE_LIMIT_{caller.upper()}": "1000000000/1"
    for caller in ("public", "key", "store", "redirect")
}

#: how often (at most) the limiter forgets callers whose quota is whole again
SWEEP_EVERY_NS: Final = 5 * 1_000_000_000


class Caller(StrEnum):
    """Who a request is charged to (and the name of that quota's policy)."""

    PUBLIC = "public"  # a client address, on a route without credentials
    KEY = "key"  # an API key (Authorization: Bearer)
    STORE = "store"  # a store, on the storefront's signed ingestion routes
    REDIRECT = "redirect"  # a client address, on the tracker's click redirect


@dataclass(frozen=True, slots=True)
class Limits:
    """The quotas (None: no limit) and how many callers are remembered."""

    quotas: dict[Caller, Quota | None]
    max_keys: int = 100_000

    @classmethod
    def parse(cls, texts: dict[Caller, str], max_keys: int = 100_000) -> Limits:
        """Quotas from their configuration text (:meth:`Quota.parse`)."""
        return cls({c: Quota.parse(c.value, t) for c, t in texts.items()}, max_keys)

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """The limits of :class:`shared.config.Settings` (``ALLIANCE_RATE_LIMIT_*``)."""
        return cls.parse(
            {
                Caller.PUBLIC: settings.rate_limit_public,
                Caller.KEY: settings.rate_limit_key,
                Caller.STORE: settings.rate_limit_store,
                Caller.REDIRECT: settings.rate_limit_redirect,
            },
            settings.rate_limit_max_keys,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    quota: Quota
    decision: Decision

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    def headers(self) -> list[tuple[str, str]]:
        return self.decision.headers(self.quota)


@dataclass
class Limiter:
    """The quotas of one process: one TAT per (caller kind, caller). Never blocks, no I/O;
    ``clock`` gives monotonic nanoseconds (a test's own)."""

    limits: Limits
    clock: Callable[[], int] = time.monotonic_ns
    _tats: dict[tuple[Caller, str], int] = field(default_factory=dict, init=False)
    _swept_at: int = field(default=0, init=False)

    def configure(self, limits: Limits) -> None:
        """New quotas; every caller starts again with a whole one (a TAT is kept in units of
        its quota's own)."""
        self.limits = limits
        self._tats.clear()

    def take(self, kind: Caller, who: str) -> Verdict | None:
        """Charge one request to ``who`` if its quota allows; None when ``kind`` has no limit."""
        quota = self.limits.quotas.get(kind)
        if quota is None:
            return None
        now = self.clock()
        key = (kind, who)
        decision = gcra(quota, self._tats.get(key), now)
        if decision.allowed:
            self._tats[key] = decision.tat
            self._bound(now)
        return Verdict(quota, decision)

    def admit(self, kind: Caller, who: str) -> Verdict | None:
        """:meth:`take` for a path that answers no headers when it lets a request through:
        None when ``who`` may pass (charged) or ``kind`` has no limit, the refusal's
        :class:`Verdict` otherwise. Allocates nothing on the way through."""
        quota = self.limits.quotas.get(kind)
        if quota is None:
            return None
        now = self.clock()
        key = (kind, who)
        tat = self._tats.get(key)
        new = admit(quota, tat, now)
        if new is None:
            return Verdict(quota, gcra(quota, tat, now))
        self._tats[key] = new
        self._bound(now)
        return None

    def peek(self, kind: Caller, who: str) -> Verdict | None:
        """What :meth:`take` would answer now, changing nothing."""
        quota = self.limits.quotas.get(kind)
        if quota is None:
            return None
        return Verdict(quota, gcra(quota, self._tats.get((kind, who)), self.clock()))

    def give_back(self, kind: Caller, who: str) -> None:
        """Undo one :meth:`take` that was allowed."""
        quota, key = self.limits.quotas.get(kind), (kind, who)
        tat = self._tats.get(key)
        if quota is None or tat is None:
            return
        back = refund(quota, tat, self.clock())
        if back is None:
            self._tats.pop(key, None)
        else:
            self._tats[key] = back

    def charge(self, kind: Caller, who: str) -> None:
        """Count one request that was served anyway (past the quota if need be)."""
        quota = self.limits.quotas.get(kind)
        if quota is not None:
            now = self.clock()
            self._tats[(kind, who)] = charge(quota, self._tats.get((kind, who)), now)
            self._bound(now)

    def __len__(self) -> int:
        return len(self._tats)

    def _bound(self, now: int) -> None:
        """Forget callers whose quota is whole (they are as if never seen), at most every
        :data:`SWEEP_EVERY_NS` unless the bound is passed; past the bound, the oldest
        remembered go too (they get a whole quota: the price of bounded memory)."""
        over = len(self._tats) > self.limits.max_keys
        if not over and now - self._swept_at < SWEEP_EVERY_NS:
            return
        self._swept_at = now
        quotas = self.limits.quotas
        for key in [k for k, tat in self._tats.items() if _whole(quotas[k[0]], tat, now)]:
            del self._tats[key]
        extra = len(self._tats) - self.limits.max_keys
        if extra > 0:
            for key in list(self._tats)[: extra + self.limits.max_keys // 10]:
                del self._tats[key]


def _whole(quota: Quota | None, tat: int, now: int) -> bool:
    return quota is None or whole(quota, tat, now)


def client_address(scope: Scope) -> str:
    """The client's address as the server computed it (trusted proxies only)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def refused_credentials(address: str) -> str:
    """The caller (``public`` quota) an address's refused credentials are charged to."""
    return f"refused-credentials/{address}"


def key_id(token: str) -> str:
    """What a key is remembered by (not the key itself)."""
    return hashlib.blake2b(token.encode(), digest_size=16).hexdigest()


RATE_LIMITED: Final = "rate_limited"


def refusal(verdict: Verdict) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The ``429`` body (the one error body of :mod:`shared.http`) and its headers."""
    named = dict(verdict.headers())
    retry = int(named["Retry-After"])
    body = orjson.dumps(
        {
            "error": {
                "code": RATE_LIMITED,
                "message": "too many requests: retry after Retry-After seconds",
                "policy": verdict.quota.name,
                "retry_after_s": retry,
            }
        }
    )
    headers = [(k.lower().encode(), v.encode()) for k, v in named.items()]
    headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return body, headers


async def answer_refusal(send: Send, verdict: Verdict) -> None:
    body, headers = refusal(verdict)
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimit:
    """ASGI middleware: the quota of the request's caller (see the module) is charged before
    the app runs; past it, ``429 rate_limited`` with ``RateLimit-Policy``, ``RateLimit`` and
    ``Retry-After``. Allowed answers carry ``RateLimit-Policy`` and ``RateLimit`` too.
    ``store_paths`` are the storefront's signed ingestion routes (``POST``), charged to the
    store they name; paths under ``redirect_prefix`` take the ``redirect`` quota."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: Limiter,
        store_paths: Iterable[str] = (),
        redirect_prefix: str | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.store_paths = frozenset(store_paths)
        self.redirect_prefix = redirect_prefix

    def caller(self, scope: Scope) -> tuple[Caller, str]:
        """Whom the request is charged to (see the module)."""
        headers: dict[bytes, bytes] = dict(scope.get("headers") or ())
        token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        if token is not None:
            return Caller.KEY, key_id(token)
        path: str = scope.get("path", "")
        store = headers.get(b"x-alliance-store")
        if store and scope.get("method") == "POST" and path in self.store_paths:
            return Caller.STORE, store.decode("latin-1")[:200]
        if self.redirect_prefix is not None and path.startswith(self.redirect_prefix):
            return Caller.REDIRECT, client_address(scope)
        return Caller.PUBLIC, client_address(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        kind, who = self.caller(scope)
        forger = refused_credentials(client_address(scope))
        if kind in (Caller.KEY, Caller.STORE):
            # an address whose forged credentials spent their quota gets nothing more
            spent = limiter.peek(Caller.PUBLIC, forger)
            if spent is not None and not spent.allowed:
                await answer_refusal(send, spent)
                return
        verdict = limiter.take(kind, who)
        if verdict is not None and not verdict.allowed:
            await answer_refusal(send, verdict)
            return
        status = 0
        extra = [(k.lower().encode(), v.encode()) for k, v in verdict.headers()] if verdict else []

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if extra:
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if status == 401 and kind in (Caller.KEY, Caller.STORE):
                # the credential was refused: its owner's quota is not the forger's to spend
                limiter.give_back(kind, who)
                limiter.charge(Caller.PUBLIC, forger)


def install_limits(
    app: Any,
    settings: Any,
    *,
    store_paths: Iterable[str] = (),
    redirect_prefix: str | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
) -> Limiter:
    """Put :class:`RateLimit` outermost on ``app`` with the configured quotas; the limiter is
    ``app.state.limiter`` too (the tracker's fast path charges its redirects there). Call it
    before the routers are included: their routes then document the ``429``."""
    limiter = Limiter(Limits.from_settings(settings), clock)
    app.state.limiter = limiter
    # every route included from now on documents the 429 (its own answers come first)
    app.router.responses = {**errors(429), **app.router.responses}
    app.add_middleware(
        RateLimit, limiter=limiter, store_paths=tuple(store_paths), redirect_prefix=redirect_prefix
    )
    return limiter
