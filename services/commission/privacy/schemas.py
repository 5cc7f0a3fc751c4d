"""Response models of a visitor's erasure and export."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErasureView(BaseModel):
    visitor_pseudonym: str = Field(
        description="the keyed pseudonym that now stands for the visitor in orders' records"
    )
    already_erased: bool = Field(description="the visitor was erased before (idempotent)")
    erased: dict[str, int] = Field(
        description="rows deleted or pseudonymised per table of the commission service; "
        "attribution erases its own on the privacy topic"
    )


class VisitorExport(BaseModel):
    """What the commission service holds about a visitor (a subject access request)."""

    visitor_id: str
    erased: bool = Field(description="the visitor was erased: nothing is held any more")
    clicks: list[dict[str, Any]] = Field(
        description="the visitor's affiliate clicks (the same clicks attribution holds for "
        "its window, which also keep the link's code, product and sub id)"
    )
    visits: list[dict[str, Any]] = Field(description="per store and UTC day: clicked, viewed")
    interests: list[dict[str, Any]] = Field(description="the camp's profile (90 days)")
    click_counts: list[dict[str, Any]] = Field(description="the click cap's counts per day")
    orders: list[dict[str, Any]] = Field(description="orders the storefronts reported")
