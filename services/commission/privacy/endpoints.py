"""Admin routes of a visitor's data: erasure and export (docs/privacy.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.commission.deps import Audit, Caller, IdentPath, Session
from services.commission.privacy.schemas import ErasureView, VisitorExport
from services.commission.privacy.service import PrivacyService
from shared.http import errors

#: every route: a bearer key (401), the admin only (403), a malformed id (422), the database (503)
router = APIRouter(tags=["privacy"], responses=errors(401, 403, 422, 503))


async def get_privacy(request: Request) -> PrivacyService:
    privacy: PrivacyService = request.app.state.privacy
    return privacy


Privacy = Annotated[PrivacyService, Depends(get_privacy)]


@router.delete("/v1/admin/visitors/{visitor_id}", response_model=ErasureView)
async def erase_visitor(
    visitor_id: IdentPath, caller: Caller, session: Session, privacy: Privacy, audit: Audit
) -> ErasureView:
    """Erase a visitor (a buyer's right to erasure): their clicks, visits, interests and
    counts are deleted, their orders keep amounts and affiliates under a keyed pseudonym, and
    the erasure reaches attribution and every event still on the topics. Idempotent; in the
    audit record (under the pseudonym)."""
    caller.require("admin")
    alias, already, counts = await privacy.erase(session, visitor_id, audit)
    return ErasureView(visitor_pseudonym=alias, already_erased=already, erased=counts)


@router.get("/v1/admin/visitors/{visitor_id}", response_model=VisitorExport)
async def export_visitor(
    visitor_id: IdentPath, caller: Caller, session: Session, privacy: Privacy
) -> VisitorExport:
    """What is held about a visitor, as JSON (a subject access request): the commission
    service's clicks, visits, interests, counts and orders (docs/privacy.md: attribution's
    clicks are the same clicks, kept for its window)."""
    caller.require("admin")
    return VisitorExport.model_validate(await privacy.export(session, visitor_id))
