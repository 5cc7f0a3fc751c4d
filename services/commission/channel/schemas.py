"""Response models of the product channel."""

from __future__ import annotations

from pydantic import BaseModel


class LinkRequest(BaseModel):
    store_id: str
    product_id: str


class ChannelProduct(BaseModel):
    store_id: str
    product_id: str
    title: str
    category_id: str | None
    price: str
    currency: str
    rate: str  # what an affiliate earns on an order placed now (main, category or default)
    commission_per_unit: str  # price × rate, before shipping is taken off
    hot: bool
    main: bool
    affiliate_orders_90d: int
    score: str
    link_request: LinkRequest  # the body of POST /v1/links for this product


class ChannelPage(BaseModel):
    sort: str
    items: list[ChannelProduct]
    next_cursor: str | None
