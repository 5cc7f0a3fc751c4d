"""Routes of partner approval: an affiliate applies to a store's program and reads its
applications; the store approves, rejects or bans and lists its partners (docs/partners.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.commission.core.partners import PartnerAction
from services.commission.deps import (
    Audit,
    Caller,
    Partners,
    PrincipalIdPath,
    Session,
    StoreIdPath,
)
from services.commission.errors import Forbidden
from services.commission.partners.schemas import (
    ApplicationRequest,
    DecisionRequest,
    PartnerDetail,
    PartnerEventView,
    PartnerPage,
    PartnerView,
)
from shared.http import errors
from shared.partners import PartnerStatus

#: every route: a bearer key (401), a malformed parameter or body (422), the database (503)
router = APIRouter(tags=["partners"], responses=errors(401, 422, 503))

STORE = "/v1/stores/{store_id}"
StatusQuery = Annotated[PartnerStatus | None, Query(description="only partners of this status")]
CursorQuery = Annotated[
    str | None,
    Query(max_length=128, description="the previous page's `next_cursor`, unchanged"),
]
LimitQuery = Annotated[int, Query(ge=1, le=1000)]
APPLY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PartnerView, "description": "Applied already: nothing changed"},
    **errors(
        (403, "Not an affiliate key"),
        (404, "No such store"),
        (409, "`partner_banned`: the store banned the affiliate"),
    ),
}


@router.post(
    f"{STORE}/applications",
    response_model=PartnerView,
    status_code=201,
    responses=APPLY_RESPONSES,
)
@router.post(
    "/v1/affiliate/programs/{store_id}/applications",
    operation_id="apply_to_program",
    response_model=PartnerView,
    status_code=201,
    responses=APPLY_RESPONSES,
)
async def apply(
    store_id: StoreIdPath,
    body: ApplicationRequest,
    caller: Caller,
    session: Session,
    partners: Partners,
    response: Response,
    audit: Audit,
) -> PartnerView:
    """The calling affiliate applies to the store's program (either path; the second is
    issue 22's spelling): ``pending`` until the store
    decides when it requires approval, ``approved`` at once when its enrollment is open.
    Idempotent: applying again while pending or approved changes nothing (``200``)."""
    if caller.kind != "affiliate":
        raise Forbidden("only an affiliate's own key may apply")
    row, changed = await partners.act(
        session,
        store_id,
        caller.id,
        PartnerAction.APPLY,
        caller.actor,
        message=body.message,
        audit=audit,
    )
    response.status_code = 201 if changed else 200
    return PartnerView.of(row)


@router.get(
    "/v1/affiliates/{affiliate_id}/applications",
    response_model=PartnerPage,
    responses=errors((403, "Another affiliate's applications")),
)
async def affiliate_applications(
    affiliate_id: PrincipalIdPath,
    caller: Caller,
    session: Session,
    partners: Partners,
    status: StatusQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
) -> PartnerPage:
    """The affiliate's standing with every store it applied to or was decided on, by store
    (the affiliate itself, finance or the admin). Keyset pages: pass ``next_cursor`` back."""
    if not caller.may_see_affiliate(affiliate_id):
        raise Forbidden()
    page = await partners.page(
        session, affiliate_id=affiliate_id, status=status, cursor=cursor, limit=limit
    )
    return PartnerPage(items=[PartnerView.of(r) for r in page.rows], next_cursor=page.next_cursor)


@router.get(f"{STORE}/partners", response_model=PartnerPage, responses=errors(403))
async def store_partners(
    store_id: StoreIdPath,
    caller: Caller,
    session: Session,
    partners: Partners,
    status: StatusQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
) -> PartnerPage:
    """The store's partners by affiliate id, optionally of one status (``pending``: the
    applications waiting for a decision); the store, finance or the admin. Keyset pages."""
    caller.require_store(store_id)
    page = await partners.page(
        session, store_id=store_id, status=status, cursor=cursor, limit=limit
    )
    return PartnerPage(items=[PartnerView.of(r) for r in page.rows], next_cursor=page.next_cursor)


@router.get(
    f"{STORE}/partners/{{affiliate_id}}",
    response_model=PartnerDetail,
    responses=errors(403, (404, "No such partner")),
)
async def store_partner(
    store_id: StoreIdPath,
    affiliate_id: PrincipalIdPath,
    caller: Caller,
    session: Session,
    partners: Partners,
) -> PartnerDetail:
    """One partner of the store with its whole history (the store, finance or the admin)."""
    caller.require_store(store_id)
    row, events = await partners.detail(session, store_id, affiliate_id)
    return PartnerDetail(
        **PartnerView.of(row).model_dump(), history=[PartnerEventView.of(e) for e in events]
    )


def _decision(action: PartnerAction) -> Any:
    async def endpoint(
        store_id: StoreIdPath,
        affiliate_id: PrincipalIdPath,
        body: DecisionRequest,
        caller: Caller,
        session: Session,
        partners: Partners,
        audit: Audit,
    ) -> PartnerView:
        caller.require_store_owner(store_id)
        row, _ = await partners.act(
            session,
            store_id,
            affiliate_id,
            action,
            caller.actor,
            reason=body.reason,
            note=body.note,
            audit=audit,
        )
        return PartnerView.of(row)

    endpoint.__name__ = f"{action.value}_partner"
    return endpoint


DECISIONS = {
    PartnerAction.APPROVE: "Approve the affiliate (a pending, rejected or never-seen one; a "
    "banned one is reinstated: its orders placed from now on pay again).",
    PartnerAction.REJECT: "Reject a pending application, or withdraw an approval (a reason is "
    "required). Under `approval` enrollment the affiliate gets no links any more.",
    PartnerAction.BAN: "Ban the affiliate (a reason is required): no links, its clicks are "
    "marked suspicious (`banned`) and win nothing, and its orders placed from now on pay "
    "nothing. Commission of earlier orders stays (finance holds and voids it if need be).",
}
for _action, _doc in DECISIONS.items():
    _route = _decision(_action)
    _route.__doc__ = _doc
    router.add_api_route(
        f"{STORE}/partners/{{affiliate_id}}/{_action.value}",
        _route,
        methods=["POST"],
        response_model=PartnerView,
        responses=errors(
            403,
            (404, "No such store or affiliate"),
            (409, "`invalid_transition`: the decision does not apply to the partner's status"),
        ),
        name=f"{_action.value}_partner",
    )
