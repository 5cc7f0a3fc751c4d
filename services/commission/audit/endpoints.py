"""``GET /v1/audit``: the audit log, as far as the caller may read it, as keyset pages of JSON
or every entry as CSV."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.commission.audit.schemas import AuditEntryView, AuditPage
from services.commission.audit.service import Filters
from services.commission.core.audit import Role, readable_by
from services.commission.csv_export import csv_chunks
from services.commission.deps import (
    MAX_BIGINT,
    AuditLog,
    Caller,
    Session,
    TimeFrom,
    TimeTo,
    time_range,
)
from shared.http import errors

router = APIRouter(tags=["audit"], responses=errors(401, 422, 503))


async def _csv_rows(pages: AsyncIterator[list[Any]]) -> AsyncIterator[list[dict[str, Any]]]:
    async for page in pages:
        yield [AuditEntryView.of(r).csv_row() for r in page]


@router.get(
    "/v1/audit",
    response_model=AuditPage,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV of all"}},
)
async def audit(
    request: Request,
    caller: Caller,
    session: Session,
    log: AuditLog,
    actor: Annotated[
        str | None,
        Query(max_length=150, description="`<principal id>` or `<role>:<principal id>`"),
    ] = None,
    kind: Annotated[str | None, Query(max_length=64, examples=["program.update"])] = None,
    start: TimeFrom = None,
    end: TimeTo = None,
    cursor: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Changes made through the APIs, in the order they were made: the admin reads every
    entry, finance the entries of finance actions, a store (or affiliate) the entries about
    its own data. Keyset pagination: pass ``next_cursor`` back as ``cursor``. With
    ``Accept: text/csv`` every matching entry is streamed as CSV."""
    scope = readable_by(Role(caller.kind), caller.id)
    if start is not None or end is not None:
        start, end = time_range(start, end)
    filters = Filters(actor=actor, kind=kind, start=start, end=end)
    if "text/csv" in request.headers.get("accept", ""):
        pages = log.pages(scope, filters, cursor)
        fields = list(AuditEntryView.model_fields)
        return StreamingResponse(csv_chunks(fields, _csv_rows(pages)), media_type="text/csv")
    rows = await log.page(session, scope, filters, cursor, limit)
    items = [AuditEntryView.of(r) for r in rows]
    page = AuditPage(items=items, next_cursor=items[-1].id if len(items) == limit else None)
    return JSONResponse(page.model_dump(mode="json"))
