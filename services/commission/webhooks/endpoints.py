"""Routes of postbacks and webhooks: the same set of routes for affiliates
(``/v1/affiliate/endpoints``), stores (``/v1/stores/{store_id}/endpoints``, the store's own
key or the admin token) and finance users (``/v1/finance/endpoints``). An owner sees and
changes only its own endpoints: another's is 404.

No ``from __future__ import annotations`` here: the routes are made in a function, and FastAPI
must see their dependency (``OwnerDep``, local to it) as an object, not as a name to look up
in the module."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from starlette.convertors import Convertor, register_url_convertor

from services.commission.core.webhooks import Method, OwnerKind
from services.commission.deps import MAX_BIGINT, Audit, Caller, Session, StoreIdPath
from services.commission.errors import Forbidden
from services.commission.webhooks.schemas import (
    AttemptsPage,
    AttemptView,
    DeliveriesPage,
    DeliveryView,
    EndpointCreated,
    EndpointList,
    EndpointRequest,
    EndpointView,
    TemplatesView,
)
from services.commission.webhooks.service import Owner, WebhookService
from shared.http import errors


class EndpointIdSegment(Convertor[str]):
    """The path segment of an endpoint's id: any segment but ``templates``, which names the
    sibling route (``GET …/endpoints/templates``). So ``DELETE …/endpoints/templates`` matches
    no endpoint's route and is a ``405`` (``Allow: GET``), not a ``422`` for a bad id; any
    other malformed id still reaches :data:`EndpointIdPath`'s check (``422``)."""

    regex = "(?!templates(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("endpoint_id", EndpointIdSegment())

router = APIRouter()

EndpointIdPath = Annotated[str, Path(pattern=r"^we_[0-9a-f]{32}$", description="the endpoint's id")]
DeliveryIdPath = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the delivery's id")]


async def get_webhooks(request: Request) -> WebhookService:
    webhooks: WebhookService = request.app.state.webhooks
    return webhooks


Webhooks = Annotated[WebhookService, Depends(get_webhooks)]


async def affiliate_owner(caller: Caller) -> Owner:
    """An affiliate's own key (the admin token names no affiliate)."""
    if caller.kind != "affiliate":
        raise Forbidden("this needs an affiliate key")
    return Owner(OwnerKind.AFFILIATE, caller.id)


async def store_owner(store_id: StoreIdPath, caller: Caller) -> Owner:
    """The store's own key or the admin token."""
    caller.require_store_owner(store_id)
    return Owner(OwnerKind.STORE, store_id)


async def finance_owner(caller: Caller) -> Owner:
    """A finance user's key (or the admin token: its endpoints are the admin's own)."""
    caller.require("finance")
    return Owner(OwnerKind.FINANCE, caller.id)


def _tenant(owner: Owner) -> str:
    """Whose audit entries an owner's endpoint changes are (the owner reads them)."""
    return f"{owner.kind.value}:{owner.id}"


def _view(row: Any) -> dict[str, Any]:
    return EndpointView.of(row).model_dump(mode="json")


def add_routes(prefix: str, tag: str, owner_of: Callable[..., Awaitable[Owner]]) -> None:
    """The routes of one kind of owner under ``prefix``."""
    OwnerDep = Annotated[Owner, Depends(owner_of)]
    name = tag.replace(" ", "_")

    @router.get(
        f"{prefix}/templates",
        response_model=TemplatesView,
        tags=[tag],
        name=f"{name}_templates",
        operation_id=f"{name}_endpoint_templates",
        responses=errors(401, 403),
    )
    async def templates(owner: OwnerDep) -> TemplatesView:
        """The events an endpoint may subscribe to (with example payloads), the macros of a
        GET template (with example values) and how deliveries are signed."""
        return TemplatesView.build()

    @router.post(
        prefix,
        response_model=EndpointCreated,
        status_code=201,
        tags=[tag],
        operation_id=f"{name}_create_endpoint",
        responses=errors(401, 403, (409, "Too many endpoints"), (422, "URL not acceptable")),
    )
    async def create(
        body: EndpointRequest,
        owner: OwnerDep,
        session: Session,
        webhooks: Webhooks,
        audit: Audit,
    ) -> EndpointCreated:
        """Register an endpoint: a POST endpoint receives each event as JSON; a GET URL is a
        template whose macros (``GET …/templates``) are filled with URL-encoded values. The
        answer holds the signing ``secret``, shown this once."""
        row, secret = await webhooks.register(
            session, owner, body.url, Method(body.method), body.events
        )
        await audit.record(
            "endpoint.create",
            f"endpoint:{row.id}",
            tenant=_tenant(owner),
            before=None,
            after={**_view(row), "secret": secret},  # redacted
        )
        return EndpointCreated(**EndpointView.of(row).model_dump(), secret=secret)

    @router.get(
        prefix,
        response_model=EndpointList,
        tags=[tag],
        operation_id=f"{name}_list_endpoints",
        responses=errors(401, 403),
    )
    async def list_endpoints(owner: OwnerDep, session: Session, webhooks: Webhooks) -> EndpointList:
        """The caller's endpoints, with their status (and why one was disabled)."""
        rows = await webhooks.endpoints(session, owner)
        return EndpointList(items=[EndpointView.of(r) for r in rows])

    @router.get(
        f"{prefix}/{{endpoint_id:endpoint_id}}",
        response_model=EndpointView,
        tags=[tag],
        operation_id=f"{name}_get_endpoint",
        responses=errors(401, 403, (404, "No such endpoint of the caller's")),
    )
    async def get_endpoint(
        endpoint_id: EndpointIdPath, owner: OwnerDep, session: Session, webhooks: Webhooks
    ) -> EndpointView:
        return EndpointView.of(await webhooks.endpoint(session, owner, endpoint_id))

    @router.delete(
        f"{prefix}/{{endpoint_id:endpoint_id}}",
        status_code=204,
        tags=[tag],
        operation_id=f"{name}_delete_endpoint",
        responses=errors(401, 403, (404, "No such endpoint of the caller's")),
    )
    async def delete_endpoint(
        endpoint_id: EndpointIdPath,
        owner: OwnerDep,
        session: Session,
        webhooks: Webhooks,
        audit: Audit,
    ) -> Response:
        """Delete the endpoint; deliveries still pending are cancelled."""
        before = _view(await webhooks.endpoint(session, owner, endpoint_id, lock=True))
        await webhooks.delete(session, owner, endpoint_id)
        await audit.record(
            "endpoint.delete",
            f"endpoint:{endpoint_id}",
            tenant=_tenant(owner),
            before=before,
            after=None,
        )
        return Response(status_code=204)

    @router.post(
        f"{prefix}/{{endpoint_id:endpoint_id}}/rotate-secret",
        response_model=EndpointCreated,
        tags=[tag],
        operation_id=f"{name}_rotate_endpoint_secret",
        responses=errors(401, 403, (404, "No such endpoint of the caller's")),
    )
    async def rotate_secret(
        endpoint_id: EndpointIdPath,
        owner: OwnerDep,
        session: Session,
        webhooks: Webhooks,
        audit: Audit,
    ) -> EndpointCreated:
        """A new signing secret, shown this once. For 24 hours deliveries carry two ``v1``
        signatures, by the new and the previous secret, so the receiver can switch over."""
        before = _view(await webhooks.endpoint(session, owner, endpoint_id, lock=True))
        row, secret = await webhooks.rotate_secret(session, owner, endpoint_id)
        await audit.record(
            "endpoint.rotate_secret",
            f"endpoint:{endpoint_id}",
            tenant=_tenant(owner),
            before=before,
            after=_view(row),
            rotated=("secret",),
        )
        return EndpointCreated(**EndpointView.of(row).model_dump(), secret=secret)

    @router.post(
        f"{prefix}/{{endpoint_id:endpoint_id}}/enable",
        response_model=EndpointView,
        tags=[tag],
        operation_id=f"{name}_enable_endpoint",
        responses=errors(401, 403, (404, "No such endpoint of the caller's")),
    )
    async def enable(
        endpoint_id: EndpointIdPath,
        owner: OwnerDep,
        session: Session,
        webhooks: Webhooks,
        audit: Audit,
    ) -> EndpointView:
        """Re-enable an endpoint that was disabled after repeated failures: the deliveries
        that waited are sent at once, each order's in order."""
        before = _view(await webhooks.endpoint(session, owner, endpoint_id, lock=True))
        after = EndpointView.of(await webhooks.enable(session, owner, endpoint_id))
        await audit.record(
            "endpoint.enable",
            f"endpoint:{endpoint_id}",
            tenant=_tenant(owner),
            before=before,
            after=after.model_dump(mode="json"),
        )
        return after

    @router.get(
        f"{prefix}/{{endpoint_id:endpoint_id}}/deliveries",
        response_model=DeliveriesPage,
        tags=[tag],
        operation_id=f"{name}_endpoint_deliveries",
        responses=errors(401, 403, (404, "No such endpoint of the caller's")),
    )
    async def deliveries(
        endpoint_id: EndpointIdPath,
        owner: OwnerDep,
        session: Session,
        webhooks: Webhooks,
        cursor: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_BIGINT,
                description="the previous page's `next_cursor` (a delivery id): the page "
                "after it, newest first",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> DeliveriesPage:
        """The endpoint's delivery log, newest first (keyset pages: pass ``next_cursor``
        back as ``cursor``): status, attempts, the last answer's status code and latency or
        error, the next retry."""
        rows = await webhooks.deliveries(session, owner, endpoint_id, cursor, limit)
        return DeliveriesPage(
            items=[DeliveryView.of(r) for r in rows],
            next_cursor=rows[-1].id if len(rows) == limit else None,
        )

    @router.get(
        f"{prefix}/{{endpoint_id}}/deliveries/{{delivery_id}}/attempts",
        response_model=AttemptsPage,
        tags=[tag],
        operation_id=f"{name}_delivery_attempts",
        responses=errors(401, 403, (404, "No such endpoint or delivery of the caller's")),
    )
    async def attempts(
        endpoint_id: EndpointIdPath,
        delivery_id: DeliveryIdPath,
        owner: OwnerDep,
        session: Session,
        webhooks: Webhooks,
        cursor: Annotated[int | None, Query(ge=1, le=MAX_BIGINT)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> AttemptsPage:
        """Every attempt of the delivery, newest first (keyset pages: pass ``next_cursor``
        back as ``cursor``): when, the answer's status code, the latency, the error and the
        first 1 KiB of the answer's body. A receiver that failed three times then succeeded
        shows four attempts."""
        rows = await webhooks.attempts(session, owner, endpoint_id, delivery_id, cursor, limit)
        return AttemptsPage(
            items=[AttemptView.of(r) for r in rows],
            next_cursor=rows[-1].id if len(rows) == limit else None,
        )

    @router.post(
        f"{prefix}/{{endpoint_id:endpoint_id}}/deliveries/{{delivery_id}}/redeliver",
        response_model=DeliveryView,
        status_code=202,
        tags=[tag],
        operation_id=f"{name}_redeliver",
        responses=errors(401, 403, (404, "No such endpoint or delivery of the caller's")),
    )
    async def redeliver(
        endpoint_id: EndpointIdPath,
        delivery_id: DeliveryIdPath,
        owner: OwnerDep,
        session: Session,
        webhooks: Webhooks,
        audit: Audit,
    ) -> Any:
        """Send the delivery again now (whatever its status; the event id is the same, so a
        receiver that has it already can ignore it), with a fresh 72 hours of retries."""
        found = await webhooks.deliveries(session, owner, endpoint_id, delivery_id + 1, 1)
        before = [DeliveryView.of(r).model_dump(mode="json") for r in found if r.id == delivery_id]
        row = await webhooks.redeliver(session, owner, endpoint_id, delivery_id)
        after = DeliveryView.of(row)
        await audit.record(
            "delivery.redeliver",
            f"endpoint:{endpoint_id}/delivery/{delivery_id}",
            tenant=_tenant(owner),
            before=before[0] if before else None,
            after=after.model_dump(mode="json"),
        )
        return after


add_routes("/v1/affiliate/endpoints", "affiliate webhooks", affiliate_owner)
add_routes("/v1/stores/{store_id}/endpoints", "store webhooks", store_owner)
add_routes("/v1/finance/endpoints", "finance webhooks", finance_owner)
