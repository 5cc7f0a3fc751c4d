"""The click redirect as a bare ASGI path, ahead of FastAPI's routing and middleware.

``GET /r/{code}`` is the one request the tracker serves at volume; FastAPI's dependency
solving, routing and middleware stack cost more than the redirect itself. :class:`TrackerApp`
answers it directly with the same use case (:meth:`TrackerService.follow`) that the documented
FastAPI route calls, and passes every other request to FastAPI. It charges the app's rate
limiter itself (the ``redirect`` quota per client address, :mod:`shared.limits`): the
middleware never sees this path.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import cookie_parser
from starlette.types import Receive, Scope, Send

from services.tracker.endpoints import VISITOR_COOKIE, visitor_cookie
from services.tracker.links import InvalidCode
from services.tracker.quality import PREFETCH_HEADERS
from services.tracker.service import TrackerService
from shared.http import NUL_ERROR, has_nul
from shared.limits import Caller, Limiter, answer_refusal, client_address

log = logging.getLogger(__name__)
_PREFIX = "/r/"
_NOT_FOUND = orjson.dumps({"error": {"code": "not_found", "message": "link not found"}})
_ERROR = orjson.dumps({"error": {"code": "internal_error", "message": "internal error"}})
_NUL = orjson.dumps(NUL_ERROR)
_JSON = [(b"content-type", b"application/json")]
_PREFETCH = {name.encode(): value.encode() for name, value in PREFETCH_HEADERS}


def _cookie(raw: bytes, name: str) -> str | None:
    """The cookie as the documented route reads it (Starlette's parser: the last one wins)."""
    return cookie_parser(raw.decode("latin-1")).get(name) if raw else None


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
        # the app's rate limit is middleware this path skips: the same quota, charged here
        limiter: Limiter | None = getattr(self.state, "limiter", None)
        if limiter is not None:
            verdict = limiter.take(Caller.REDIRECT, client_address(scope))
            if verdict is not None and not verdict.allowed:
                await answer_refusal(send, verdict)
                return
        if has_nul(scope):  # as the app's middleware (shared.http.RefuseNul) answers
            await _answer(send, 422, _JSON, _NUL)
            return
        service: TrackerService = self.state.tracker
        headers: dict[bytes, bytes] = dict(scope["headers"])
        prefetch = any(
            headers.get(name, b"").lower().startswith(value) for name, value in _PREFETCH.items()
        )
        client = scope.get("client")
        try:
            location, cookie = await service.follow(
                scope["path"][len(_PREFIX) :],
                visitor_cookie=_cookie(headers.get(b"cookie", b""), VISITOR_COOKIE),
                record=scope["method"] == "GET" and not prefetch,
                ip=client[0] if client else None,
                user_agent=headers[b"user-agent"].decode("latin-1")
                if b"user-agent" in headers
                else None,
            )
        except InvalidCode:
            await _answer(send, 404, _JSON, _NOT_FOUND)
            return
        except Exception:
            log.exception("redirect failed")
            await _answer(send, 500, _JSON, _ERROR)
            return
        secure = (
            scope.get("scheme") == "https"
            or headers.get(b"x-forwarded-proto", b"").lower() == b"https"
        )
        await _answer(
            send,
            302,
            [
                (b"location", location.encode("latin-1")),
                (b"set-cookie", visitor_cookie(cookie, secure).encode("latin-1")),
            ],
            b"",
        )


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
