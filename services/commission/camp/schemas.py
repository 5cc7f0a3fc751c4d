"""Response models of the alliance camp (public: what a buyer's page shows)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class CampProduct(BaseModel):
    store_id: str
    product_id: str
    title: str
    category_id: str | None
    price: str
    currency: str
    hot: bool = Field(description="among its store's 20 best sellers to affiliate buyers")
    score: str = Field(description="the final score the list is ranked by: base × boost")
    base_score: str = Field(description="the product channel's composite score")
    boost: str = Field(description="the visitor's personal multiplier (1 without history)")
    because: list[Literal["category", "store"]] = Field(
        description="what in the visitor's last 90 days lifted it: its category, its store"
    )


class CampPage(BaseModel):
    items: list[CampProduct]
    next_cursor: str | None = Field(description="the next page's cursor; null on the last page")
    personalised: bool = Field(
        description="ranked with the visitor's history (a valid alliance_vid cookie with "
        "interests in the last 90 days)"
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "items": [
                        {
                            "store_id": "acme",
                            "product_id": "lamp-1",
                            "title": "Desk lamp",
                            "category_id": "lighting",
                            "price": "24.90",
                            "currency": "EUR",
                            "hot": True,
                            "score": "52.5000",
                            "base_score": "42.0000",
                            "boost": "1.25",
                            "because": ["category", "store"],
                        }
                    ],
                    "next_cursor": "WyIyMDI2LTExLTI4VDEwOjAwOjAwWiIsIjUyLjUiXQ",
                    "personalised": True,
                }
            ]
        }
    }


class CampCategory(BaseModel):
    category_id: str
    products: int


class CampCategories(BaseModel):
    items: list[CampCategory]
