"""Routes of the tracker. No database anywhere on these paths."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from services.tracker.errors import (
    BodyTooLarge,
    ForeignLink,
    InvalidBody,
    InvalidJson,
    TooManyEvents,
)
from services.tracker.links import InvalidCode
from services.tracker.quality import is_prefetch
from services.tracker.schemas import (
    ClickAccepted,
    EventsRequest,
    EventsResponse,
    LinkRequest,
    LinkResponse,
    ServerClick,
)
from services.tracker.service import TrackerService
from shared.http import Bearer, NotFound, bearer_token, error_body, errors
from shared.partners import ClickSuspicion
from shared.privacy import CONSENT_COOKIE, CONSENT_PARAM, declared
from shared.visitors import VISITOR_COOKIE

ONE_YEAR = 365 * 24 * 3600
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_EVENTS = 1000

router = APIRouter()


async def get_service(request: Request) -> TrackerService:
    """Async on purpose: FastAPI runs a sync dependency in a thread pool, per request."""
    service: TrackerService = request.app.state.tracker
    return service


Service = Annotated[TrackerService, Depends(get_service)]


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post(
    "/v1/links",
    status_code=201,
    response_model=LinkResponse,
    tags=["links"],
    responses=errors(
        (401, "No valid affiliate key"),
        (
            403,
            "`not_approved`: the store banned the affiliate, or requires approval and has not "
            "approved it (docs/partners.md)",
        ),
        (404, "Unknown store or product"),
        (409, "The store is not in the program"),
        422,
        (503, "The tracker has not caught up with the directory yet (`catching_up`): retry"),
    ),
)
async def create_link(
    body: LinkRequest, request: Request, service: Service, _: Bearer
) -> LinkResponse:
    """Issue a signed tracking link for the calling affiliate (``Authorization: Bearer``)."""
    affiliate = service.affiliate_for_key(bearer_token(request.headers.get("authorization")))
    code = service.create_link(
        affiliate, body.store_id, body.product_id, body.sub_id, _client_ip(request)
    )
    return LinkResponse(
        code=code,
        url=f"{str(request.base_url).rstrip('/')}/r/{code}",
        affiliate_id=affiliate,
        store_id=body.store_id,
        product_id=body.product_id,
        sub_id=body.sub_id,
    )


@router.head("/r/{code}", include_in_schema=False)
@router.get(
    "/r/{code}",
    status_code=302,
    tags=["links"],
    response_class=Response,
    responses={
        302: {
            "description": "To the landing page (the click is recorded first)",
            "headers": {
                "Location": {
                    "description": "the landing URL with `alliance_vid` and `alliance_click`",
                    "schema": {"type": "string"},
                },
                "Set-Cookie": {
                    "description": f"`{VISITOR_COOKIE}`: the visitor, sealed; absent without "
                    "consent (`Sec-GPC: 1`, `?consent=false` or the `alliance_consent=false` "
                    "cookie, or a program requiring consent without `consent=true`), or "
                    "expired when the buyer still had one (docs/privacy.md)",
                    "schema": {"type": "string"},
                },
            },
        },
        **errors((404, "Unknown code"), 422),
    },
)
async def follow_link(code: str, request: Request, service: Service) -> Response:
    """Record the click durably, then redirect the buyer to the landing page. A ``HEAD``
    request or a prefetch is redirected without recording a click. (Served by the tracker's
    fast path, :mod:`services.tracker.fastpath`; this route documents it and serves the same
    use case when the app is mounted without it.)"""
    try:
        location, cookie = await service.follow(
            code,
            visitor_cookie=request.cookies.get(VISITOR_COOKIE),
            record=request.method == "GET" and not is_prefetch(request.headers),
            ip=_client_ip(request),
            user_agent=request.headers.get("user-agent"),
            gpc=request.headers.get("sec-gpc", "").strip() == "1",
            declared_consent=declared_consent(
                request.query_params.get(CONSENT_PARAM), request.cookies.get(CONSENT_COOKIE)
            ),
        )
    except InvalidCode:
        raise NotFound("link") from None
    secure = request.scope.get("scheme") == "https" or (
        request.headers.get("x-forwarded-proto", "").lower() == "https"
    )
    headers = {"location": location}
    set_cookie = redirect_cookie(cookie, VISITOR_COOKIE in request.cookies, secure)
    if set_cookie is not None:
        headers["set-cookie"] = set_cookie
    return Response(status_code=302, headers=headers)


def declared_consent(param: str | None, cookie: str | None) -> bool | None:
    """The storefront's declaration: the redirect's ``consent=`` parameter, else the
    ``alliance_consent`` cookie (:func:`shared.privacy.declared`)."""
    from_param = declared(param)
    return from_param if from_param is not None else declared(cookie)


def redirect_cookie(value: str | None, had_cookie: bool, secure: bool) -> str | None:
    """The redirect's ``Set-Cookie``: the visitor cookie; without consent (``value`` None) none,
    or an expired one when the buyer still had a cookie (consent withdrawn: it is removed)."""
    if value is not None:
        return visitor_cookie(value, secure)
    if had_cookie:
        flags = "; Secure" if secure else ""
        return f"{VISITOR_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax{flags}"
    return None


def visitor_cookie(value: str, secure: bool) -> str:
    """The first-party visitor cookie (``value``: the id and its tag, from
    :class:`~shared.visitors.VisitorCookies`): a year, HttpOnly, SameSite=Lax,
    Secure behind TLS."""
    flags = "; Secure" if secure else ""
    return f"{VISITOR_COOKIE}={value}; Max-Age={ONE_YEAR}; Path=/; HttpOnly; SameSite=Lax{flags}"


async def _signed_body(request: Request, service: TrackerService) -> tuple[str, bytes]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    store = service.check_signature(
        request.headers.get("x-alliance-store"), request.headers.get("x-alliance-signature"), body
    )
    return store, body


SIGNED = {
    "X-Alliance-Store": "the store id",
    "X-Alliance-Signature": "t=<unix seconds>,v1=<hex HMAC-SHA256(webhook secret, "
    "'<t>.<raw body>')>",
}


#: the storefront's signed ingestion routes (POST): rate-limited per store (shared.limits)
SIGNED_PATHS = ("/v1/clicks", "/v1/events")


def signed_request(body: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI of a store-signed request: the two headers and the raw JSON body it signs."""
    headers = [
        {
            "in": "header",
            "name": k,
            "required": True,
            "description": v,
            "schema": {"type": "string"},
        }
        for k, v in SIGNED.items()
    ]
    content = {"application/json": {"schema": body.model_json_schema()}}
    return {"parameters": headers, "requestBody": {"content": content}}


@router.post(
    "/v1/clicks",
    status_code=202,
    response_model=ClickAccepted,
    tags=["links"],
    openapi_extra=signed_request(ServerClick),
    responses=errors(
        (401, "Missing, bad or stale signature"),
        (
            403,
            "The link belongs to another store (`foreign_link`), or its affiliate is not "
            "approved by a store that requires approval (`not_approved`)",
        ),
        (404, "Unknown link code"),
        (413, f"Body over {MAX_BODY_BYTES // 2**20} MiB"),
        (
            422,
            "The click is not valid (`invalid_click`: the fields in `errors`), or its time "
            "is out of bounds",
        ),
        (503, "Neither Kafka nor the spool could take the click: retry after Retry-After"),
    ),
)
async def record_server_click(request: Request, service: Service) -> Response:
    """Record a click server to server (store-signed); ``occurred_at`` may be in the past."""
    store_id, body = await _signed_body(request, service)
    try:
        payload = ServerClick.model_validate_json(body)
    except ValidationError as exc:
        return JSONResponse(
            error_body(
                "invalid_click",
                "the click is not valid",
                errors=exc.errors(include_url=False, include_input=False),
            ),
            status_code=422,
        )
    try:
        link = service.signer.verify(payload.code)
    except InvalidCode:
        raise NotFound("link") from None
    if link.store_id != store_id:
        raise ForeignLink()
    if service.partner_suspicion(link) is ClickSuspicion.NOT_APPROVED:
        # the store's own server should know better: refused (a banned one's is recorded,
        # marked suspicious, so that the store sees it was made)
        service.check_partner(link.store_id, link.affiliate_id)
    service.check_click_time(payload.occurred_at)
    click = service.make_click(
        link,
        payload.code,
        payload.visitor_id,
        payload.ip,
        payload.user_agent,
        payload.occurred_at,
        click_id=f"s2s:{store_id}:{payload.event_id}",
    )
    await service.record_click(click, required=True)  # 503 rather than a 202 it loses
    return JSONResponse(
        ClickAccepted(
            click_id=click.click_id,
            suspicious=click.suspicious,
            suspicious_reason=click.suspicious_reason,
        ).model_dump(),
        status_code=202,
    )


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventsResponse,
    tags=["events"],
    openapi_extra=signed_request(EventsRequest),
    responses=errors(
        (401, "Missing, bad or stale signature"),
        (413, f"Body over {MAX_BODY_BYTES // 2**20} MiB or more than {MAX_EVENTS:,} events"),
        (
            422,
            'Not JSON, not `{"events": [...]}`, or no event in the batch is valid '
            "(`no_valid_events`, with every event's result)",
        ),
        503,
    ),
)
async def post_events(request: Request, service: Service) -> Response:
    """Accept a batch of storefront events (store-signed); answer once every accepted one is
    acknowledged by Kafka. Each event is judged on its own."""
    store_id, body = await _signed_body(request, service)
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidJson() from None
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list):
        raise InvalidBody()
    if len(events) > MAX_EVENTS:
        raise TooManyEvents(f"at most {MAX_EVENTS} events per request")
    valid, results = service.validate_events(store_id, events)
    results = await service.publish_events(store_id, valid, results)
    payload = EventsResponse(
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )
    if payload.rejected and payload.rejected == len(results):
        return JSONResponse(
            error_body("no_valid_events", "no event in the batch is valid", **payload.model_dump()),
            status_code=422,
        )
    return JSONResponse(payload.model_dump(), status_code=202)
