"""Response models of the alliance camp (public: what a buyer's page shows)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class CampProduct(BaseModel):
    """A product as the public sees it. Its scores are not shown: the channel's composite
    score is made of the store's commission rate and its affiliate orders, which are the
    store's business with its affiliates (the list's order is all a buyer needs)."""

    store_id: str
    product_id: str
    title: str
    category_id: str | None
    price: str
    currency: str
    hot: bool = Field(description="among its store's 20 best sellers to affiliate buyers")
    boost: str = Field(description="the visitor's personal multiplier (1 without history)")
    because: list[Literal["category", "store"]] = Field(
        description="what in the visitor's last 90 days lifted it: its category, its store"
    )


class CampPage(BaseModel):
    items: list[CampProduct]
    next_cursor: str | None = Field(
        description="the next page's cursor (opaque, sealed: only this service reads or "
        "makes one); null on the last page"
    )
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
                            "boost": "1.25",
                            "because": ["category", "store"],
                        }
                    ],
                    "next_cursor": (
                        "F5grO8NNOYmTNYlLSg7zbsdvoR-xCIWzfzfElW5EFGsxazIefRJUf9tUO0szCn6iML12"
                        "IzmuqvQaIbsPHCc89WTyFaHSGvSbvkopgs8ObbxEesSOEwVGc-H5REgl4Zb0faqR9kjl"
                        "haRTkQFTxg5o"
                    ),
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
