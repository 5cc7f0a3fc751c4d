"""Routes of the programs: one table of changes (each kind of operation declared once),
reads of the program, its main products and its operation record."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from services.commission.core.program import Coupon, OpKind
from services.commission.deps import (
    Audit,
    Caller,
    IdentPath,
    Programs,
    Session,
    StoreIdPath,
    TimeFrom,
    TimeTo,
)
from services.commission.program.schemas import (
    CapsRequest,
    ConsentRequest,
    CouponPolicyRequest,
    CouponRequest,
    CouponView,
    EnrollmentRequest,
    JoinRequest,
    LockPeriodRequest,
    MainProductRequest,
    MainProductView,
    NewBuyerRequest,
    OperationView,
    ProgramResponse,
    RateRequest,
    TiersRequest,
    WindowRequest,
)
from shared.http import errors

#: every route: a bearer key (401), a NUL or a malformed parameter (422), the database (503)
router = APIRouter(tags=["program"], responses=errors(401, 422, 503))
#: program changes: the store's own key or the admin (403), a known store (404), the rules (409)
CHANGE = errors(403, (404, "No such store"), 409)


@dataclass(frozen=True)
class Change:
    """One program-change route: ``kind`` applied with the body's rate or days, on the
    category or product named by the path parameter ``key`` if any."""

    method: str
    path: str
    name: str  # the operation's name (its OpenAPI operation id is built from it)
    kind: OpKind
    doc: str | None = None
    body: type[BaseModel] | None = None
    key: str | None = None


STORE = "/v1/stores/{store_id}"
#: bodies that carry an incentive's setting
INCENTIVE_BODIES = (NewBuyerRequest, TiersRequest, CapsRequest)
CHANGES = (
    Change(
        "POST",
        f"{STORE}/program/join",
        "join",
        OpKind.JOIN,
        "The store joins the program (default rate 6% unless given).",
        JoinRequest,
    ),
    Change(
        "POST",
        f"{STORE}/program/exit",
        "exit_program",
        OpKind.EXIT,
        "The store leaves the program (no earlier than 15 days after joining).",
    ),
    Change(
        "PUT", f"{STORE}/rates/default", "set_default_rate", OpKind.DEFAULT_RATE, None, RateRequest
    ),
    Change(
        "PUT",
        f"{STORE}/attribution-window",
        "set_attribution_window",
        OpKind.ATTRIBUTION_WINDOW,
        "The program's own attribution window (1 to 30 days), for orders placed from now on.",
        WindowRequest,
    ),
    Change(
        "DELETE",
        f"{STORE}/attribution-window",
        "delete_attribution_window",
        OpKind.ATTRIBUTION_WINDOW,
        "Back to the deployment's default window, for orders placed from now on.",
    ),
    Change(
        "PUT",
        f"{STORE}/lock-period",
        "set_lock_period",
        OpKind.LOCK_PERIOD,
        "The locking date's delay (0 to 365 days after an order completes), for orders placed "
        "from now on: after it nothing changes the order's commission (docs/program-controls.md).",
        LockPeriodRequest,
    ),
    Change(
        "PUT",
        f"{STORE}/incentives/new-buyer",
        "set_new_buyer_bonus",
        OpKind.NEW_BUYER,
        "The new-buyer bonus: an extra rate on each line of an order the storefront marks as "
        "the buyer's first, for orders placed from now on (docs/incentives.md).",
        NewBuyerRequest,
    ),
    Change(
        "PUT",
        f"{STORE}/incentives/tiers",
        "set_tiers",
        OpKind.TIERS,
        "One currency's performance tiers, for months from now on: thresholds on an "
        "affiliate's monthly sales amounts (not items or orders), each with an extra rate "
        "(docs/incentives.md).",
        TiersRequest,
    ),
    Change(
        "PUT",
        f"{STORE}/incentives/caps",
        "set_caps",
        OpKind.CAPS,
        "The caps per order and per affiliate-month, per currency, for orders placed from now "
        "on (docs/incentives.md).",
        CapsRequest,
    ),
    Change(
        "PUT",
        f"{STORE}/coupon-policy",
        "set_coupon_policy",
        OpKind.COUPON_POLICY,
        "How coupon codes attribute orders placed from now on: off (clicks only, the default), "
        "coupon_wins or click_wins (docs/coupons.md).",
        CouponPolicyRequest,
    ),
    Change(
        "PUT",
        f"{STORE}/consent",
        "set_consent",
        OpKind.CONSENT,
        "Whether the tracker's visitor cookie needs the buyer's consent, for clicks from now "
        "on: not_required (the default: a cookie unless the buyer objects) or required "
        "(a cookie only with a declared consent=true) (docs/privacy.md).",
        ConsentRequest,
    ),
    Change(
        "PUT",
        f"{STORE}/enrollment",
        "set_enrollment",
        OpKind.ENROLLMENT,
        "Who may promote the store from now on: open (the default: every affiliate but those "
        "it banned) or approval (only the affiliates it approved; docs/partners.md).",
        EnrollmentRequest,
    ),
    Change(
        "PUT",
        f"{STORE}/rates/categories/{{category_id}}",
        "set_category_rate",
        OpKind.CATEGORY_RATE,
        "The rate of a category, from now on (orders placed before keep theirs).",
        RateRequest,
        "category_id",
    ),
    Change(
        "DELETE",
        f"{STORE}/rates/categories/{{category_id}}",
        "delete_category_rate",
        OpKind.CATEGORY_RATE,
        "The category falls back to the default rate from now on.",
        key="category_id",
    ),
    Change(
        "PUT",
        f"{STORE}/main-products/{{product_id}}",
        "set_main_product",
        OpKind.MAIN_PRODUCT,
        "Make a product a main product (at most 60), with a rate of its own if given.",
        MainProductRequest,
        "product_id",
    ),
    Change(
        "DELETE",
        f"{STORE}/main-products/{{product_id}}",
        "delete_main_product",
        OpKind.UNMAIN_PRODUCT,
        key="product_id",
    ),
)


def _endpoint(change: Change) -> Any:
    """The route function of a change, with the signature FastAPI reads its parameters from
    (the path's store and key, the body if any, the caller, the transaction, the service)."""

    async def endpoint(**kw: Any) -> ProgramResponse:
        store_id: str = kw["store_id"]
        caller = kw["caller"]
        caller.require_store_owner(store_id)  # finance reads programs but never changes them
        body = kw.get("body")
        rate = getattr(body, "rate", getattr(body, "default_rate", None))
        programs = kw["programs"]
        history = await programs.change(
            kw["session"],
            store_id,
            change.kind,
            caller.actor,
            key=kw[change.key] if change.key else None,
            rate=rate,
            days=getattr(body, "days", None),
            policy=getattr(body, "policy", None),
            audit=kw["audit"],
            consent=getattr(body, "consent", None),
            enrollment=getattr(body, "mode", None),
            incentive=body.setting() if isinstance(body, INCENTIVE_BODIES) else None,
        )
        return ProgramResponse.of(store_id, history.current(), programs.default_window)

    P = inspect.Parameter
    params = [P("store_id", P.KEYWORD_ONLY, annotation=StoreIdPath)]
    if change.key:
        params.append(P(change.key, P.KEYWORD_ONLY, annotation=IdentPath))
    if change.body:
        params.append(P("body", P.KEYWORD_ONLY, annotation=change.body))
    params += [
        P("caller", P.KEYWORD_ONLY, annotation=Caller),
        P("session", P.KEYWORD_ONLY, annotation=Session),
        P("programs", P.KEYWORD_ONLY, annotation=Programs),
        P("audit", P.KEYWORD_ONLY, annotation=Audit),
    ]
    endpoint.__signature__ = inspect.Signature(params, return_annotation=ProgramResponse)  # type: ignore[attr-defined]
    endpoint.__name__ = change.name
    endpoint.__doc__ = change.doc
    return endpoint


for _change in CHANGES:
    router.add_api_route(
        _change.path,
        _endpoint(_change),
        methods=[_change.method],
        response_model=ProgramResponse,
        responses=CHANGE,
        name=_change.name,
    )


@router.get(f"{STORE}/program", response_model=ProgramResponse, responses=errors(403))
async def get_program(
    store_id: StoreIdPath, caller: Caller, session: Session, programs: Programs
) -> ProgramResponse:
    caller.require_store(store_id)
    history = await programs.history(session, store_id)
    return ProgramResponse.of(store_id, history.current(), programs.default_window)


@router.get(f"{STORE}/operations", response_model=list[OperationView], responses=errors(403))
async def operations(
    store_id: StoreIdPath,
    caller: Caller,
    session: Session,
    programs: Programs,
    start: TimeFrom = None,
    end: TimeTo = None,
) -> list[OperationView]:
    """The operation record: every program change with actor, time, before and after."""
    caller.require_store(store_id)
    return [OperationView.of(r) for r in await programs.operations(session, store_id, start, end)]


@router.get(f"{STORE}/main-products", response_model=list[MainProductView], responses=errors(403))
async def main_products(
    store_id: StoreIdPath, caller: Caller, session: Session, programs: Programs
) -> list[MainProductView]:
    """The store's main products (at most 60) and their own rates, if any."""
    caller.require_store(store_id)
    state = (await programs.history(session, store_id)).current()
    return [
        MainProductView(
            product_id=p,
            rate=str(r) if r is not None else None,
            effective_rate=str(state.rate_for(p, None)),
        )
        for p, r in sorted(state.main_products.items())
    ]


#: a coupon code in a path, checked by the program's rules (422 ``invalid_coupon_code``)
CouponCodePath = Annotated[
    str, Path(max_length=200, description="the code (any case: codes match case-insensitively)")
]


@router.put(
    f"{STORE}/coupons/{{code}}",
    response_model=CouponView,
    responses={
        201: {"model": CouponView, "description": "The code is new"},
        **errors(
            403, (404, "No such store or affiliate"), (409, "Not in the program, or code taken")
        ),
    },
)
async def put_coupon(
    store_id: StoreIdPath,
    code: CouponCodePath,
    body: CouponRequest,
    caller: Caller,
    session: Session,
    programs: Programs,
    response: Response,
    audit: Audit,
) -> CouponView:
    """Register a coupon code for an affiliate, or change its validity (orders placed from
    now on; in the operation record). A code names one affiliate until it is deleted (409
    ``coupon_taken``). ``201`` when the code is new, ``200`` otherwise."""
    caller.require_store_owner(store_id)
    coupon, created = await programs.put_coupon(
        session,
        store_id,
        Coupon(code, body.affiliate_id, body.valid_from, body.valid_to),
        caller.actor,
        audit,
    )
    response.status_code = 201 if created else 200
    return CouponView.of(coupon)


@router.get(f"{STORE}/coupons", response_model=list[CouponView], responses=errors(403))
async def list_coupons(
    store_id: StoreIdPath, caller: Caller, session: Session, programs: Programs
) -> list[CouponView]:
    """The store's coupon codes as registered now (the store, finance or the admin)."""
    caller.require_store(store_id)
    return [CouponView.of(c) for c in await programs.coupons(session, store_id)]


@router.delete(
    f"{STORE}/coupons/{{code}}",
    response_model=CouponView,
    responses=errors(403, (404, "No such store or code")),
)
async def delete_coupon(
    store_id: StoreIdPath,
    code: CouponCodePath,
    caller: Caller,
    session: Session,
    programs: Programs,
    audit: Audit,
) -> CouponView:
    """Delete a code: orders placed from now on are not attributed by it (in the operation
    record). Returns what was deleted."""
    caller.require_store_owner(store_id)
    return CouponView.of(await programs.delete_coupon(session, store_id, code, caller.actor, audit))
