"""HTTP pieces every service shares: typed business errors and health endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import ping


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


def install_error_handlers(app: FastAPI, *business: type[Exception]) -> None:
    """Answer :class:`AllianceError` (and the pure core's own typed errors in ``business``,
    which carry the same ``status_code``, ``code``, ``message`` and ``details``) as
    ``{"error": {"code", "message", …details}}`` with their status."""

    async def _business(_: Request, exc: Exception) -> JSONResponse:
        e: Any = exc
        return JSONResponse(error_body(e.code, e.message, **e.details), status_code=e.status_code)

    kinds: list[type[Exception]] = [AllianceError, *business]
    for kind in kinds:
        app.add_exception_handler(kind, _business)


Check = Callable[[], Awaitable[None]]


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

    @router.get("/readyz", summary="Kafka and PostgreSQL connections work")
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:  # every failure is reported, not raised
                results[name] = f"error: {type(exc).__name__}: {exc}"
        ok = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": results},
            status_code=200 if ok else 503,
        )

    return router
