"""The exceptions of the client: every error answer of the API becomes an :class:`ApiError`
(a subclass per status), carrying the machine-readable body every service answers with:
``{"error": {"code": …, "message": …, <details of the code>}}``."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import httpx


class ApiError(Exception):
    """The API answered ``status_code`` ≥ 400. ``code`` is the machine-readable reason
    (``not_found``, ``rate_limited``, ``exit_too_early`` …), ``message`` its text for people,
    ``details`` the code's other fields (``errors`` of ``invalid_request`` …) and ``body`` the
    whole decoded answer (None when it was not JSON). ``retry_after`` is the ``Retry-After``
    header's seconds (429, 503), when given."""

    status: ClassVar[int | None] = None

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        body: Any = None,
        retry_after: float | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(f"{status_code} {code}: {message} ({method} {url})".rstrip(" ()"))
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details or {}
        self.body = body
        self.retry_after = retry_after
        self.method = method
        self.url = url

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """The error of an answer whose status is ≥ 400, of the class of its status."""
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            code, message = error["code"], str(error.get("message", ""))
            details = {k: v for k, v in error.items() if k not in ("code", "message")}
        else:  # not an Alliance body (a proxy's page, say)
            code, message, details = f"http_{response.status_code}", response.text[:200], {}
        retry = response.headers.get("retry-after")
        kind = _BY_STATUS.get(response.status_code, ApiError)
        return kind(
            response.status_code,
            code,
            message,
            details=details,
            body=body,
            retry_after=float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
            method=response.request.method,
            url=str(response.request.url),
        )


class Unauthorized(ApiError):
    """401: no valid key or signature (missing, unknown, revoked or stale)."""

    status = 401


class Forbidden(ApiError):
    """403: the key is valid but may not do this."""

    status = 403


class NotFound(ApiError):
    """404: not found, or not the caller's to see."""

    status = 404


class Conflict(ApiError):
    """409: refused by the current state (``code`` says which rule)."""

    status = 409


class PayloadTooLarge(ApiError):
    """413: the body is too large."""

    status = 413


class InvalidRequest(ApiError):
    """422: the request is not valid (``code`` says why; ``details["errors"]`` the fields)."""

    status = 422


class RateLimited(ApiError):
    """429: too many requests; retry after ``retry_after`` seconds."""

    status = 429


class Unavailable(ApiError):
    """503: a dependency is unavailable; retry after ``retry_after`` seconds."""

    status = 503


_BY_STATUS: dict[int, type[ApiError]] = {
    c.status: c
    for c in (
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        InvalidRequest,
        RateLimited,
        Unavailable,
    )
    if c.status is not None
}
