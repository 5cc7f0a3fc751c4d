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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AllianceError)
    async def _business(_: Request, exc: AllianceError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, **exc.details), status_code=exc.status_code
        )


Check = Callable[[], Awaitable[None]]


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
