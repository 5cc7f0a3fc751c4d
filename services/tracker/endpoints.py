"""Routes of the tracker. No database anywhere on these paths."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from services.tracker.links import InvalidCode, Link
from services.tracker.schemas import EventsRequest, EventsResponse, LinkRequest, LinkResponse
from services.tracker.service import TrackerService, append_query
from shared.http import NotFound, error_body
from shared.ids import new_id

VISITOR_COOKIE = "alliance_vid"
ONE_YEAR = 365 * 24 * 3600

router = APIRouter()


def get_service(request: Request) -> TrackerService:
    service: TrackerService = request.app.state.tracker
    return service


Service = Annotated[TrackerService, Depends(get_service)]


@router.post("/v1/links", status_code=201, response_model=LinkResponse, tags=["links"])
async def create_link(body: LinkRequest, request: Request, service: Service) -> LinkResponse:
    """Issue a signed tracking link for an affiliate."""
    link = Link(body.affiliate_id, body.store_id, body.product_id, body.sub_id)
    code = service.signer.sign(link)
    return LinkResponse(
        code=code,
        url=service.link_url(str(request.base_url), code),
        affiliate_id=link.affiliate_id,
        store_id=link.store_id,
        product_id=link.product_id,
        sub_id=link.sub_id,
    )


@router.get(
    "/r/{code}",
    status_code=302,
    tags=["links"],
    responses={302: {"description": "To the landing page"}, 404: {"description": "Unknown code"}},
)
async def follow_link(code: str, request: Request, service: Service) -> Response:
    """Record the click (durably) and redirect the buyer to the landing page."""
    try:
        link = service.signer.verify(code)
    except InvalidCode:
        raise NotFound("link") from None
    visitor_id = request.cookies.get(VISITOR_COOKIE) or new_id()
    click = await service.record_click(
        link,
        code,
        visitor_id,
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
    )
    target = append_query(
        service.landing_url(link), {"alliance_vid": visitor_id, "alliance_click": click.click_id}
    )
    response = RedirectResponse(target, status_code=302)
    response.set_cookie(
        VISITOR_COOKIE,
        visitor_id,
        max_age=ONE_YEAR,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventsResponse,
    tags=["events"],
    responses={422: {"description": "No event in the batch is valid"}},
)
async def post_events(
    body: EventsRequest,
    service: Service,
    store_id: Annotated[str, Header(alias="X-Alliance-Store", min_length=1, max_length=128)],
) -> Response:
    """Accept a batch of storefront events; answer once every accepted one is on Kafka."""
    valid, results = service.validate_events(store_id, body.events)
    await service.publish_events(valid)
    payload = EventsResponse(
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )
    if results and not valid:
        return JSONResponse(
            error_body("no_valid_events", "no event in the batch is valid", **payload.model_dump()),
            status_code=422,
        )
    return JSONResponse(payload.model_dump(), status_code=202)
