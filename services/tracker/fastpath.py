"""The click redirect as a bare ASGI path, ahead of FastAPI's routing and middleware.

``GET /r/{code}`` is the one request the tracker serves at volume; FastAPI's dependency
solving, routing and middleware stack cost more than the redirect itself. :class:`TrackerApp`
answers it directly with the same use case (:meth:`TrackerService.follow`) that the documented
FastAPI route calls, and passes every other request to FastAPI. It charges the app's rate
limiter itself (the ``redirect`` quota per client address, :mod:`shared.limits`) and gives
its answers what the app's middleware would (``X-Request-Id``, ``nosniff``): the middleware
never sees this path.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI
from starlette.requests import cookie_parser
from starlette.types import Receive, Scope, Send

from services.tracker.endpoints import VISITOR_COOKIE, declared_consent, redirect_cookie
from services.tracker.links import InvalidCode
from services.tracker.quality import PREFETCH_HEADERS
from services.tracker.service import TrackerService
from shared import tracing
from shared.http import NUL_ERROR, has_nul, request_id_for
from shared.limits import Caller, Limiter, answer_refusal, client_address
from shared.privacy import CONSENT_COOKIE, CONSENT_PARAM

log = logging.getLogger(__name__)
_PREFIX = "/r/"
_NOT_FOUND = orjson.dumps({"error": {"code": "not_found", "message": "link not found"}})
_ERROR = orjson.dumps({"error": {"code": "internal_error", "message": "internal error"}})
_NUL = orjson.dumps(NUL_ERROR)
_JSON = [(b"content-type", b"application/json")]
_PREFETCH = {name.encode(): value.encode() for name, value in PREFETCH_HEADERS}
_NOSNIFF = (b"x-content-type-options", b"nosniff")


def _cookie(raw: bytes, name: str) -> str | None:
    """The cookie as the documented route reads it (Starlette's parser: the last one wins)."""
    return cookie_parser(raw.decode("latin-1")).get(name) if raw else None


def _query(raw: bytes, name: str) -> str | None:
    """A query parameter as the documented route reads it (the first one)."""
    if not raw:
        return None
    values = parse_qs(raw.decode("latin-1")).get(name)
    return values[0] if values else None


class TrackerApp(FastAPI):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and scope["path"].startswith(_PREFIX)
            and "/" not in scope["path"][len(_PREFIX) :]
        ):
            await self._redirect(scope, send)
            return
        await super().__call__(scope, receive, send)

    async def _redirect(self, scope: Scope, send: Send) -> None:
        if tracing.ENABLED:  # off: not even a context manager
            with tracing.redirect_span("tracker", scope):
                await self._follow(scope, send)
            return
        await self._follow(scope, send)

    async def _follow(self, scope: Scope, send: Send) -> None:
        # the app's rate limit is middleware this path skips: the same quota, charged here
        # (answered as the middleware answers it: outermost, before the request has an id)
        limiter: Limiter | None = getattr(self.state, "limiter", None)
        if limiter is not None:
            refused = limiter.admit(Caller.REDIRECT, client_address(scope))
            if refused is not None:
                await answer_refusal(send, refused)
                return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        # every other answer as the app's middleware would give it: an X-Request-Id
        # (RequestIds) and nosniff (PagePolicy; a redirect is no page: no CSP)
        given = headers.get(b"x-request-id")
        rid = request_id_for(given.decode("latin-1") if given else "").encode()
        edge = [(b"x-request-id", rid), _NOSNIFF]
        if has_nul(scope):  # as the app's middleware (shared.http.RefuseNul) answers
            await _answer(send, 422, [*edge, *_JSON], _NUL)
            return
        service: TrackerService = self.state.tracker
        prefetch = any(
            headers.get(name, b"").lower().startswith(value) for name, value in _PREFETCH.items()
        )
        client = scope.get("client")
        agent = headers.get(b"user-agent")
        try:
            location, cookie = await service.follow(
                scope["path"][len(_PREFIX) :],
                visitor_cookie=_cookie(headers.get(b"cookie", b""), VISITOR_COOKIE),
                record=scope["method"] == "GET" and not prefetch,
                ip=client[0] if client else None,
                user_agent=agent.decode("latin-1") if agent is not None else None,
                gpc=headers.get(b"sec-gpc", b"").strip() == b"1",
                declared_consent=declared_consent(
                    _query(scope.get("query_string", b""), CONSENT_PARAM),
                    _cookie(headers.get(b"cookie", b""), CONSENT_COOKIE),
                ),
            )
        except InvalidCode:
            await _answer(send, 404, [*edge, *_JSON], _NOT_FOUND)
            return
        except Exception:
            log.exception("redirect failed")
            await _answer(send, 500, [*edge, *_JSON], _ERROR)
            return
        secure = (
            scope.get("scheme") == "https"
            or headers.get(b"x-forwarded-proto", b"").lower() == b"https"
        )
        answer = [(b"location", location.encode("latin-1"))]
        had = _cookie(headers.get(b"cookie", b""), VISITOR_COOKIE) is not None
        set_cookie = redirect_cookie(cookie, had, secure)
        if set_cookie is not None:
            answer.append((b"set-cookie", set_cookie.encode("latin-1")))
        await _answer(send, 302, [*answer, *edge], b"")


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
