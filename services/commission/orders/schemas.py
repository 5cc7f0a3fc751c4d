"""Response models of the order routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ItemView(BaseModel):
    product_id: str
    category_id: str | None
    quantity: int
    unit_price: str
    shipping_fee: str
    base: str
    rate: str
    commission: str
    reversed: str
    net: str


class OrderView(BaseModel):
    order_id: str
    store_id: str
    status: str
    currency: str | None
    placed_at: datetime | None
    affiliate_id: str | None
    click_id: str | None
    #: last_click | organic | coupon (None until the decision arrives)
    rule: str | None = None
    coupon_code: str | None = None  # the code that attributed the order (rule coupon)
    attribution_decided: bool  # the attribution service's decision has arrived
    attributed: bool
    chargeable: bool
    estimated: str
    payable: str
    commission: str
    reversed: str
    net: str
    items: list[ItemView]


class ConsideredClickView(BaseModel):
    """A click the decision looked at. What the caller may not see of another tenant's click
    (its store, affiliate or click id) is null: it shows only that the click exists, when it
    happened and why it lost."""

    click_id: str | None
    affiliate_id: str | None
    store_id: str | None
    occurred_at: datetime
    suspicious: bool
    #: won | earlier_than_winner | outside_window | after_order | suspicious | other_store |
    #: coupon_won (eligible, but the order's coupon code attributed it)
    verdict: str


class AttributionExplanation(BaseModel):
    order_id: str
    store_id: str
    rule: str  # last_click | organic | coupon
    revision: int  # 0 the first decision, n > 0 its n-th correction
    decided_at: datetime
    affiliate_id: str | None
    click_id: str | None
    click_at: datetime | None
    sub_id: str | None
    coupon_code: str | None = None  # the code that attributed the order (rule coupon)
    placed_at: datetime
    window_start: datetime
    window_end: datetime
    considered: list[ConsideredClickView]


class AffiliateOrder(BaseModel):
    """An affiliate's view of an order: never the buyer's visitor id."""

    order_id: str
    store_id: str
    placed_at: datetime
    status: str
    currency: str
    chargeable: bool
    affiliate_sales: str
    estimated: str  # not yet payable (order still placed)
    settled: str  # payable net of reversals (order completed)
    reversed: str


class AffiliateOrdersPage(BaseModel):
    items: list[AffiliateOrder]
    next_cursor: str | None
