"""HTTP pieces every service shares: typed business errors, the one error body, its OpenAPI,
and health endpoints."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from http import HTTPStatus
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import logs
from shared.db import ping
from shared.retry import QUERY_CANCELED, is_transient, sqlstate_in

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


class ErrorDetail(BaseModel):
    """What went wrong: a machine-readable ``code``, a ``message`` for people, and details
    that depend on the code (``errors`` of ``invalid_request``, ``exit_allowed_at`` …)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["order not found"])


class ErrorBody(BaseModel):
    """The body of every error answer of every service."""

    error: ErrorDetail


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """An :class:`ErrorBody` as JSON-ready data."""
    return {"error": {"code": code, "message": message, **details}}


#: what an error status means on any route (a route may say more about its own)
ERROR_MEANINGS: dict[int, str] = {
    401: "No valid key or signature (missing, unknown, revoked or stale)",
    403: "The key is valid but may not do this",
    404: "Not found, or not the caller's to see",
    409: "Refused by the current state (the code says which rule)",
    413: "The body is too large",
    422: "The request is not valid: the code says why (`invalid_request`: the fields, in "
    "`errors`; `nul_character`: a NUL in the path or query)",
    429: "Too many requests from this address, key or store (`rate_limited`): retry after "
    "`Retry-After` seconds; `RateLimit-Policy` and `RateLimit` say the quota",
    503: "A dependency (PostgreSQL, Kafka) is unavailable (`unavailable`), or a statement ran "
    "past the request's time limit (`statement_timeout`): retry after `Retry-After` seconds",
}


def errors(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route for the error statuses it answers, each with the
    :class:`ErrorBody` schema: ``errors(401, 403, (404, "No such order"))``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        code, meaning = status if isinstance(status, tuple) else (status, ERROR_MEANINGS[status])
        out[code] = {"model": ErrorBody, "description": meaning}
    return out


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


#: the header that names a request, end to end (the proxy's, the client's, or ours)
REQUEST_ID_HEADER = "X-Request-Id"
#: a request id taken from the client as it is: printable, short, no spaces or quotes (a
#: longer or stranger one is replaced, so it cannot forge log lines or fill the audit log)
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,64}$")


def request_id(scope: Scope) -> str | None:
    """The id :class:`RequestIds` gave the request (None outside of it)."""
    state = scope.get("state") or {}
    found = state.get("request_id") if isinstance(state, dict) else None
    return found if isinstance(found, str) else None


def request_id_for(given: str) -> str:
    """The id of a request whose client sent ``given`` (``""``: none): that one when it is
    sane (:data:`SANE_REQUEST_ID`), else a new UUID (32 hex digits)."""
    return given if SANE_REQUEST_ID.match(given) else uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: every HTTP request has an id, the client's ``X-Request-Id`` when it is
    sane (:data:`SANE_REQUEST_ID`), else a new UUID; it is kept in the request's state (the
    audit log and the logs read it, :func:`request_id`) and returned in the answer's
    ``X-Request-Id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers") or []:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = request_id_for(given)
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        with logs.bound(request_id=rid):  # every log line of the request names it
            await self.app(scope, receive, send_with_id)


#: the policy of every HTML page (Swagger UI, the dashboard, the camp): scripts, styles,
#: images and requests only from this origin, no plugins, no base or form target elsewhere,
#: and never framed (clickjacking)
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class PagePolicy:
    """ASGI middleware: every HTML answer (a route's, a static file's, an error page's)
    carries :data:`PAGE_CSP` (with ``frame-ancestors 'none'``), ``X-Frame-Options: DENY``
    for browsers without CSP 2 and ``X-Content-Type-Options: nosniff``, unless the route set
    a stricter ``Content-Security-Policy`` of its own. JSON and CSV answers get
    ``nosniff`` only: no browser renders them as a page."""

    def __init__(self, app: ASGIApp, policy: str = PAGE_CSP) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                kind = headers.get("content-type", "").lower()
                if kind.startswith(("text/html", "application/xhtml")):
                    headers.setdefault("Content-Security-Policy", self.policy)
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_policy)


#: SQLSTATEs of a database that is going away, starting up or asks for a retry
def is_unavailable(exc: BaseException) -> bool:
    """True for a failure that is a dependency's or the network's state, not the request's
    (a lost or refused connection, a database shutting down or in recovery, a serialization
    failure or deadlock, a broker that does not answer in time): the request may simply be
    retried. The one classification the consumers use too (:func:`shared.retry.is_transient`)."""
    return is_transient(exc)


#: seconds a client waits before it retries a 503
RETRY_AFTER_S = 1
#: seconds a client waits before it retries a request whose statement ran out of time (the
#: same request is as costly the next time: not at once)
STATEMENT_TIMEOUT_RETRY_AFTER_S = 5


#: the methods a ``405`` may name in ``Allow`` (the ones the services route)
ROUTED_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """The ``Allow`` header of a ``405``: every method that some route would take on the
    request's path (Starlette names only the first matching route's methods, so a path served
    by a GET route and a POST route listed one of them), asked of the routes themselves."""
    # from the application's root, even when a mount (static files) raised the 405
    scope = {**request.scope, "root_path": request.app.root_path or ""}

    def takes(route: BaseRoute, method: str) -> bool:
        if isinstance(route, Mount) and method != "GET":
            return False  # the services mount static files only: GET (and HEAD)
        return route.matches({**scope, "method": method})[0] is Match.FULL

    allowed = [
        method
        for method in ROUTED_METHODS
        if any(takes(route, method) for route in request.app.router.routes)
    ]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI, *business: type[Exception]) -> None:
    """One error body on every answer (:class:`ErrorBody`): :class:`AllianceError` and the
    pure core's own typed errors in ``business`` (which carry the same ``status_code``,
    ``code``, ``message`` and ``details``) with their status; FastAPI's request validation as
    ``422 invalid_request`` with the fields in ``errors``, and a body it cannot parse as
    ``422 invalid_body``; Starlette's own (unknown path, method not allowed) with their
    status; a database or broker that is unavailable (:func:`is_unavailable`) as ``503
    unavailable`` with ``Retry-After``, and a statement cancelled by the request's
    ``statement_timeout`` as ``503 statement_timeout`` with ``Retry-After``. A NUL character
    in the path or query string is refused before routing (:class:`RefuseNul`); every HTML
    answer carries the page policy (:class:`PagePolicy`) and every answer a request id
    (:class:`RequestIds`)."""
    app.add_middleware(RefuseNul)
    app.add_middleware(PagePolicy)
    # outermost: even a refused request (NUL, 413) and its error answer carry the id
    app.add_middleware(RequestIds)

    async def _business(_: Request, exc: Exception) -> JSONResponse:
        e: Any = exc
        return JSONResponse(error_body(e.code, e.message, **e.details), status_code=e.status_code)

    kinds: list[type[Exception]] = [AllianceError, *business]
    for kind in kinds:
        app.add_exception_handler(kind, _business)

    async def _invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        found = [{k: v for k, v in e.items() if k not in ("input", "url")} for e in exc.errors()]
        body = error_body("invalid_request", "the request is not valid", errors=found)
        return JSONResponse(jsonable_encoder(body), status_code=422)

    async def _http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (not JSON, not UTF-8): a malformed request
            return JSONResponse(error_body("invalid_body", str(exc.detail)), status_code=422)
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        headers = exc.headers
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers
        )

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        if sqlstate_in(exc, QUERY_CANCELED):
            log.warning("%s %s: statement timeout", request.method, request.url.path)
            return JSONResponse(
                error_body(
                    "statement_timeout",
                    "the request took longer than the database allows, retry later",
                    retry_after_s=STATEMENT_TIMEOUT_RETRY_AFTER_S,
                ),
                status_code=503,
                headers={"Retry-After": str(STATEMENT_TIMEOUT_RETRY_AFTER_S)},
            )
        if not is_unavailable(exc):
            raise exc  # a bug: the server error middleware answers 500 and logs it
        log.warning("%s %s: unavailable: %r", request.method, request.url.path, exc)
        return JSONResponse(
            error_body("unavailable", "a dependency is unavailable, retry shortly"),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http)
    for kind in (OSError, sa.DBAPIError, sa.TimeoutError, sa.DisconnectionError, KafkaError):
        app.add_exception_handler(kind, _unavailable)


Check = Callable[[], Awaitable[None]]
#: how long a readiness check may take before it counts as failed (a dependency that hangs
#: is as unavailable as one that refuses)
CHECK_TIMEOUT_S = 3.0


class NotReady(Exception):
    """Raised by a readiness check with a reason that is safe to show in ``/readyz`` (names,
    offsets, counts: written by us, never an exception's text)."""


#: ``Authorization: Bearer <key>`` in the OpenAPI (``/docs`` gets its "Authorize" button).
#: Documentation only: the routes read the header themselves (:func:`bearer_token`) and answer
#: a missing or unknown key with their own ``401`` body.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="key",
    description="A store (`als_…`), affiliate (`ala_…`) or finance (`alf_…`) API key, or the "
    "admin token",
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


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


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    """Which dependency answers (never why not: the reason goes to the log)."""

    status: str = Field(examples=["ok"], description="ok | unavailable")
    checks: dict[str, str] = Field(description='name → "ok" | "error"')
    failed: list[str]
    #: a reason written to be shown (e.g. a partition stopped at its dead-letter limit)
    reasons: dict[str, str] = Field(default_factory=dict)


#: how old a readiness answer may be: anonymous callers share one check per this many seconds
READINESS_MAX_AGE_S = 1.0


class CachedReadiness:
    """The readiness checks, run at most once per :data:`READINESS_MAX_AGE_S` whatever the
    number of callers: ``/readyz`` is anonymous, so a flood of probes must not become a flood
    of database round trips. Callers that arrive while a check runs wait for its result
    (single flight); an answer is never older than ``max_age_s``."""

    def __init__(
        self,
        checks: dict[str, Check],
        max_age_s: float = READINESS_MAX_AGE_S,
        now: Callable[[], float] = time.monotonic,
        live: Collection[str] = (),
    ) -> None:
        self.checks = {n: c for n, c in checks.items() if n not in live}
        #: checks of the process's own state (no round trip): run for every caller, so a
        #: worker that died shows at once
        self.live = {n: c for n, c in checks.items() if n in live}
        self.order = list(checks)
        self.max_age_s = max_age_s
        self.now = now
        self.runs = 0  # how many times the checks ran (the tests count them)
        self._lock = asyncio.Lock()
        self._at: float | None = None
        self._result: tuple[dict[str, str], dict[str, str]] = ({}, {})

    def _fresh(self) -> bool:
        return self._at is not None and self.now() - self._at <= self.max_age_s

    async def result(self) -> tuple[dict[str, str], dict[str, str]]:
        """``(name → "ok" | "error", name → reason to show)``: the dependencies' at most
        ``max_age_s`` old, the process's own (``live``) as of now."""
        cached = await self._cached()
        fresh = await self._run(self.live) if self.live else ({}, {})
        results = {**cached[0], **fresh[0]}
        return {n: results[n] for n in self.order}, {**cached[1], **fresh[1]}

    async def _cached(self) -> tuple[dict[str, str], dict[str, str]]:
        if self._fresh():
            return self._result
        async with self._lock:
            if not self._fresh():  # another caller may have checked while this one waited
                started = self.now()
                self._result = await self._run(self.checks)
                self._at = started
                self.runs += 1
            return self._result

    @staticmethod
    async def _run(checks: dict[str, Check]) -> tuple[dict[str, str], dict[str, str]]:
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
        return results, reasons


#: readiness checks of the process's own state, cheap: never cached
LIVE_CHECKS = ("workers",)


def health_router(checks: dict[str, Check], *, live: Collection[str] = LIVE_CHECKS) -> APIRouter:
    """``/healthz``: the process is up. ``/readyz``: every named dependency answers (from a
    :class:`CachedReadiness`: at most one run of the dependency checks per second; the
    ``live`` checks of the process's own state on every call)."""
    router = APIRouter(tags=["health"])
    readiness = CachedReadiness(checks, live=live)

    @router.get("/healthz", summary="The process is up", response_model=Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Kafka and PostgreSQL connections work, workers run",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A dependency does not answer"}},
    )
    async def readyz() -> JSONResponse:
        """``{"status", "checks": {name: "ok" | "error"}, "failed": [names], "reasons":
        {name: reason}}``: which dependency failed, never why in the answer (exception text
        can hold addresses, user names or SQL; the reason goes to the log) — except a
        :class:`NotReady` reason, which is written to be shown (e.g. a consumer that stopped
        a partition at its dead-letter limit). A check that takes longer than
        :data:`CHECK_TIMEOUT_S` has failed. The answer is at most
        :data:`READINESS_MAX_AGE_S` old (:class:`CachedReadiness`)."""
        results, reasons = await readiness.result()
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
