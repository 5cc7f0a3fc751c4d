"""Admin routes: register stores, affiliates and finance users; rotate keys and secrets."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from services.commission.admin.schemas import (
    CreateAffiliate,
    CreatedKey,
    CreatedStore,
    CreateFinanceUser,
    CreateStore,
    RotatedSecret,
)
from services.commission.deps import (
    Admin,
    Audit,
    Caller,
    PrincipalIdPath,
    Session,
    StoreIdPath,
)
from shared.http import errors
from shared.secrets import PrincipalKind

#: every route: a bearer key (401), a NUL or a malformed parameter (422), the database (503)
router = APIRouter(tags=["admin"], responses=errors(401, 422, 503))


@router.post(
    "/v1/admin/stores",
    status_code=201,
    response_model=CreatedStore,
    responses=errors(403, (409, "The store exists already")),
)
async def create_store(
    body: CreateStore, caller: Caller, session: Session, admin: Admin, audit: Audit
) -> CreatedStore:
    """Register a store (seller). Its API key and webhook secret are shown once."""
    caller.require("admin")
    keys = await admin.create(
        session, "store", body.store_id, body.name, admin.clock.now(), body.landing_url_template
    )
    await audit.record(
        "store.create",
        f"store:{body.store_id}",
        tenant=f"store:{body.store_id}",
        before=None,
        after={**body.model_dump(mode="json"), **keys},  # the keys are redacted
    )
    return CreatedStore(store_id=body.store_id, **keys)


@router.post(
    "/v1/admin/stores/{store_id}/rotate-secret",
    response_model=RotatedSecret,
    responses=errors(403, (404, "No such store")),
)
async def rotate_secret(
    store_id: StoreIdPath,
    caller: Caller,
    session: Session,
    admin: Admin,
    audit: Audit,
    revoke_previous: Annotated[
        bool,
        Query(
            description="refuse the previous secret at once (a leaked secret) instead of "
            "accepting it for ALLIANCE_SECRET_ROTATION_GRACE_S"
        ),
    ] = False,
) -> RotatedSecret:
    """A new webhook secret (shown once); the previous one keeps verifying until
    ``previous_secret_until`` (the grace, 24 h by default), or not at all with
    ``revoke_previous=true``."""
    caller.require("admin")
    secret, until = await admin.rotate_secret(
        session, store_id, admin.clock.now(), revoke_previous=revoke_previous
    )
    await audit.record(
        "secret.rotate",
        f"store:{store_id}/webhook_secret",
        tenant=f"store:{store_id}",
        before={},
        after={},
        rotated=("webhook_secret",),
    )
    return RotatedSecret(store_id=store_id, webhook_secret=secret, previous_secret_until=until)


@router.post(
    "/v1/admin/affiliates",
    status_code=201,
    response_model=CreatedKey,
    responses=errors(403, (409, "The affiliate exists already")),
)
async def create_affiliate(
    body: CreateAffiliate, caller: Caller, session: Session, admin: Admin, audit: Audit
) -> CreatedKey:
    """Register an affiliate. Its API key is shown once."""
    caller.require("admin")
    now = admin.clock.now()
    keys = await admin.create(session, "affiliate", body.affiliate_id, body.name, now)
    await audit.record(
        "affiliate.create",
        f"affiliate:{body.affiliate_id}",
        tenant=f"affiliate:{body.affiliate_id}",
        before=None,
        after={**body.model_dump(mode="json"), **keys},
    )
    return CreatedKey(id=body.affiliate_id, **keys)


@router.post(
    "/v1/admin/finance-users",
    status_code=201,
    response_model=CreatedKey,
    responses=errors(403, (409, "The finance user exists already")),
)
async def create_finance_user(
    body: CreateFinanceUser, caller: Caller, session: Session, admin: Admin, audit: Audit
) -> CreatedKey:
    """Register a finance user. Its API key is shown once."""
    caller.require("admin")
    now = admin.clock.now()
    keys = await admin.create(session, "finance", body.user_id, body.user_id, now)
    await audit.record(
        "finance_user.create",
        f"finance:{body.user_id}",
        tenant=f"finance:{body.user_id}",
        before=None,
        after={**body.model_dump(mode="json"), **keys},
    )
    return CreatedKey(id=body.user_id, **keys)


_KEY_ROTATION: dict[str, PrincipalKind] = {
    "stores": "store",
    "affiliates": "affiliate",
    "finance-users": "finance",
}


@router.post(
    "/v1/admin/{kind}/{principal_id}/keys/rotate",
    response_model=CreatedKey,
    responses=errors(403, (404, "No such store, affiliate or finance user")),
)
async def rotate_key(
    kind: Literal["stores", "affiliates", "finance-users"],
    principal_id: PrincipalIdPath,
    caller: Caller,
    session: Session,
    admin: Admin,
    audit: Audit,
) -> CreatedKey:
    """A new API key for a store, affiliate or finance user, shown once; the old key stops
    working at once (a revocation: rotate and do not hand out the new key). The tracker
    learns an affiliate's new key through the directory within moments."""
    caller.require("admin")
    principal = _KEY_ROTATION[kind]
    key = await admin.rotate_key(session, principal, principal_id, admin.clock.now())
    await audit.record(
        "key.rotate",
        f"{principal}:{principal_id}/api_key",
        tenant=f"{principal}:{principal_id}",
        before={},
        after={},
        rotated=("api_key",),
    )
    return CreatedKey(id=principal_id, api_key=key)
