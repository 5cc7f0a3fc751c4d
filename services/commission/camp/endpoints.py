"""The alliance camp, public (no key): ``GET /v1/camp/products``, ``GET /v1/camp/categories``
and the buyer page ``/camp`` (plain files of this origin, as the dashboard)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Cookie, Query, Response
from fastapi.responses import FileResponse

from services.commission.camp.schemas import CampCategories, CampCategory, CampPage, CampProduct
from services.commission.camp.service import CampRow
from services.commission.deps import Camp, Session
from shared.events import Ident
from shared.http import errors
from shared.money import fmt, from_minor

router = APIRouter(
    tags=["camp"],
    responses=errors(
        (
            422,
            "The request is not valid (`invalid_request`, `bad_cursor`), or `q` has no run of "
            "3 letters or digits (`query_too_short`)",
        ),
        429,
        503,
    ),
)

STATIC: Final = Path(__file__).resolve().parents[1] / "static"
#: the page's Content-Security-Policy: only this origin's files, never framed
CAMP_CSP: Final = "default-src 'self'; frame-ancestors 'none'"
#: a personalised answer is the visitor's own: never stored by a shared cache
_PRIVATE: Final = {"Cache-Control": "private, no-store", "Vary": "Cookie"}


def _product(c: CampRow) -> CampProduct:
    r = c.row
    because: list[Literal["category", "store"]] = []
    if r.k_category:
        because.append("category")
    if r.k_store:
        because.append("store")
    return CampProduct(
        store_id=r.store_id,
        product_id=r.product_id,
        title=r.title,
        category_id=r.category_id,
        price=fmt(from_minor(int(r.price_minor), r.currency), r.currency),
        currency=r.currency,
        hot=r.hot,
        boost=str(c.boost),
        because=because,
    )


@router.get("/v1/camp/products", response_model=CampPage)
async def products(
    response: Response,
    session: Session,
    camp: Camp,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="keyword in the title: it must hold at least 3 letters or digits in "
            "a row (else `422 query_too_short`)",
        ),
    ] = None,
    category_id: Annotated[Ident | None, Query(description="only this category")] = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=1000,
            description="the previous page's `next_cursor`, unchanged, with the same `q` and "
            "`category_id` (opaque and sealed: a forged, altered or foreign one is 422 "
            "`bad_cursor`)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 24,
    alliance_vid: Annotated[
        str | None,
        Cookie(
            description="the visitor, as the tracker's redirect sealed it (optional; one "
            "that does not verify is ignored, never an error)"
        ),
    ] = None,
) -> CampPage:
    """Products of the stores in the program, for buyers: keyword (title, case-insensitive)
    and category search, ranked by the product channel's composite score (30 if hot + 10 if
    a main product + 100 × rate + 10 × log10(1 + affiliate orders in 90 days)) times the
    visitor's personal boost ``1 + 0.15 × k_category + 0.10 × k_store``, where ``k`` is the
    strongest thing the visitor did in the product's category / store in the last 90 days
    (bought 3, clicked 2, viewed 1, nothing 0). At an equal score the higher commission rate
    ranks first. Without the ``alliance_vid`` cookie, or with one that does not verify, the
    plain ranking. The scores are not shown (they would reveal the stores' commission rates
    and affiliate sales): the order is the ranking. Keyset pages: pass ``next_cursor`` (opaque
    and sealed) back as ``cursor`` with the same ``q`` and ``category_id``."""
    visitor = camp.visitor(alliance_vid)
    result = await camp.products(
        session, visitor, q=q, category_id=category_id, cursor=cursor, limit=limit
    )
    response.headers.update(_PRIVATE)
    return CampPage(
        items=[_product(r) for r in result.rows],
        next_cursor=result.next_cursor,
        personalised=result.personalised,
    )


@router.get("/v1/camp/categories", response_model=CampCategories)
async def categories(session: Session, camp: Camp) -> CampCategories:
    """The categories of the program's products, the largest first (at most 200)."""
    rows = await camp.categories(session)
    return CampCategories(
        items=[CampCategory(category_id=r.category_id, products=r.products) for r in rows]
    )


def _file(name: str, media_type: str) -> FileResponse:
    return FileResponse(
        STATIC / name, media_type=media_type, headers={"Content-Security-Policy": CAMP_CSP}
    )


@router.get("/camp", include_in_schema=False)
async def camp_page() -> FileResponse:
    """The buyer page: search, category filter, the ranked list, more. Its script and style
    are files of this origin: the policy forbids inline script, other origins and framing."""
    return _file("camp.html", "text/html")


@router.get("/camp/camp.js", include_in_schema=False)
async def camp_script() -> FileResponse:
    return _file("camp.js", "text/javascript")


@router.get("/camp/camp.css", include_in_schema=False)
async def camp_style() -> FileResponse:
    return _file("camp.css", "text/css")
