"""HTTP pieces every service shares: typed business errors and health endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.db import ping

log = logging.getLogger(__name__)


class AllianceError(Exception):
    """A business error: an HTTP status and a machine-readable ``code``, plus details."""

    def __init__(self, status_code: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details


class NotFound(AllianceError):
    def __init__(self, what: str, **details: Any) -> None:
        super().__init__(404, "not_found", f"{what} not found", **details)


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **details}}


def has_nul(scope: Scope) -> bool:
    """True when the request's path or query string holds a NUL character, raw or as ``%00``."""
    raw_path: bytes = scope.get("raw_path") or b""
    query: bytes = scope.get("query_string") or b""
    return (
        "\x00" in scope.get("path", "")
        or b"%00" in raw_path
        or b"\x00" in raw_path
        or b"%00" in query
        or b"\x00" in query
    )


NUL_ERROR = error_body("nul_character", "the path or query string holds a NUL character")


class RefuseNul:
    """ASGI middleware: ``422`` (``nul_character``) for any request whose path or query string
    holds a NUL character. PostgreSQL cannot store one, so it must never reach a route that
    could hand it to the database (and answer 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and has_nul(scope):
            await JSONResponse(NUL_ERROR, status_code=422)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI, *business: type[Exception]) -> None:
    """Answer :class:`AllianceError` (and the pure core's own typed errors in ``business``,
    which carry the same ``status_code``, ``code``, ``message`` and ``details``) as
    ``{"error": {"code", "message", …details}}`` with their status, and refuse a NUL
    character in the path or query string (:class:`RefuseNul`)."""
    app.add_middleware(RefuseNul)

    async def _business(_: Request, exc: Exception) -> JSONResponse:
        e: Any = exc
        return JSONResponse(error_body(e.code, e.message, **e.details), status_code=e.status_code)

    kinds: list[type[Exception]] = [AllianceError, *business]
    for kind in kinds:
        app.add_exception_handler(kind, _business)


Check = Callable[[], Awaitable[None]]
#: how long a readiness check may take before it counts as failed (a dependency that hangs
#: is as unavailable as one that refuses)
CHECK_TIMEOUT_S = 3.0


class NotReady(Exception):
    """Raised by a readiness check with a reason that is safe to show in ``/readyz`` (names,
    offsets, counts: written by us, never an exception's text)."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def standard_checks(app: FastAPI, engine: AsyncEngine | None = None) -> dict[str, Check]:
    """Readiness of a service: its Kafka producer's connection (``app.state.producer``)
    and, when it has one, its database."""

    async def kafka() -> None:
        await app.state.producer.client.fetch_all_metadata()

    checks: dict[str, Check] = {"kafka": kafka}
    if engine is not None:
        eng = engine

        async def postgres() -> None:
            await ping(eng)

        checks["postgres"] = postgres
    return checks


def health_router(checks: dict[str, Check]) -> APIRouter:
    """``/healthz``: the process is up. ``/readyz``: every named dependency answers."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Kafka and PostgreSQL connections work, workers run")
    async def readyz() -> JSONResponse:
        """``{"status", "checks": {name: "ok" | "error"}, "failed": [names], "reasons":
        {name: reason}}``: which dependency failed, never why in the answer (exception text
        can hold addresses, user names or SQL; the reason goes to the log) — except a
        :class:`NotReady` reason, which is written to be shown (e.g. a consumer that stopped
        a partition at its dead-letter limit). A check that takes longer than
        :data:`CHECK_TIMEOUT_S` has failed."""
        results: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for name, check in checks.items():
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    await check()
                results[name] = "ok"
            except NotReady as exc:
                log.warning("readiness check %s: %s", name, exc)
                results[name] = "error"
                reasons[name] = str(exc)
            except Exception as exc:  # every failure is reported, not raised
                log.warning("readiness check %s failed: %r", name, exc)
                results[name] = "error"
        failed = [name for name, result in results.items() if result != "ok"]
        return JSONResponse(
            {
                "status": "unavailable" if failed else "ok",
                "checks": results,
                "failed": failed,
                "reasons": reasons,
            },
            status_code=503 if failed else 200,
        )

    return router
