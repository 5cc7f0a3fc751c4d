"""Response models of the order routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from services.commission.core.commission import Adjustment, AdjustmentAction, AdjustmentReason
from shared.events import MAX_ITEMS, DecimalStr, Ident, Text


class AdjustmentLineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: Ident
    amount: Annotated[DecimalStr, Field(gt=0, le=1_000_000_000)] = Field(
        description="what the product's commission base is lowered by (amend)"
    )


class AdjustmentRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "reason": "item_returned",
                    "note": "one of two returned",
                    "action": "amend",
                    "lines": [{"product_id": "sku-1", "amount": "50.00"}],
                },
                {"reason": "fraud", "action": "decline"},
            ]
        },
    )

    reason: AdjustmentReason
    action: AdjustmentAction = Field(
        description="amend: lower the named lines' commission base (never raise it); decline: "
        "the order's commission becomes zero; reset: undo the adjustments before it"
    )
    note: Text | None = Field(None, max_length=1000, description="shown to the affiliate")
    lines: list[AdjustmentLineBody] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="amend: the lines it lowers"
    )


class BatchAdjustmentItem(AdjustmentRequest):
    model_config = ConfigDict(extra="forbid")

    order_id: Ident


class BatchAdjustmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchAdjustmentItem] = Field(min_length=1, max_length=10_000)


class AdjustmentView(BaseModel):
    """An accepted adjustment of an order's commission."""

    adjustment_id: int = Field(description="numbered per order from 1")
    store_id: str
    order_id: str
    at: datetime
    action: str
    reason: str
    note: str | None
    lines: list[dict[str, str]]
    actor: str | None = None  # who made it (not shown to affiliates)

    @classmethod
    def of_core(cls, store_id: str, order_id: str, a: Adjustment) -> AdjustmentView:
        """As an order's facts hold it (no actor: what the affiliate may see)."""
        return cls(
            adjustment_id=a.seq,
            store_id=store_id,
            order_id=order_id,
            at=a.at,
            action=a.action.value,
            reason=a.reason.value,
            note=a.note,
            lines=[{"product_id": x.product_id, "amount": str(x.amount)} for x in a.lines],
        )

    @classmethod
    def of(cls, r: Any, *, with_actor: bool = True) -> AdjustmentView:
        return cls(
            adjustment_id=r.seq,
            store_id=r.store_id,
            order_id=r.order_id,
            at=r.at,
            action=r.action,
            reason=r.reason,
            note=r.note,
            lines=list(r.lines),
            actor=r.actor if with_actor else None,
        )


class BatchItemResult(BaseModel):
    """One item's outcome: ``status`` 201 (accepted now), 200 (accepted before, by its key) or
    the refusal's status with its ``code``."""

    index: int
    order_id: str
    status: int
    code: str | None = None
    message: str | None = None
    adjustment: AdjustmentView | None = None


class BatchAdjustmentResponse(BaseModel):
    accepted: int
    refused: int
    items: list[BatchItemResult]


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
    amended: str = "0"  # what adjustments lowered the base by
    #: the new-buyer bonus's extra rate, paid on top of ``rate`` (docs/incentives.md)
    bonus_rate: str = "0"


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
    #: the storefront marked the buyer's first order (the new-buyer bonus, docs/incentives.md)
    new_buyer: bool = False
    attribution_decided: bool  # the attribution service's decision has arrived
    attributed: bool
    chargeable: bool
    estimated: str
    payable: str
    #: what the order pays: the lines' commission, at most the program's per-order cap in force
    #: at placement (docs/incentives.md)
    commission: str
    #: the amount the per-order cap cut from the lines' commission ("0.00": not capped)
    capped: str = "0.00"
    reversed: str
    net: str
    items: list[ItemView]
    #: when the commission locks (completed_at + the lock period in force at placement); None:
    #: nothing to lock (open, cancelled or organic)
    locks_at: datetime | None = None
    locked: bool = False
    #: an active hold holds the commission: posted, not payable (``payable`` 0.00)
    held: bool = False
    hold_id: int | None = None
    declined: bool = False  # an adjustment declined it (and no reset since)
    #: refunds reported at or after the lock: recorded, reversing nothing
    reversal_skipped: dict[str, str] = Field(default_factory=dict)
    adjustments: list[AdjustmentView] = Field(default_factory=list)


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
    locks_at: datetime | None = None
    locked: bool = False
    held: bool = False  # an active hold holds it: settled, not payable while held
    #: each adjustment's action, reason and note, in the order made
    adjustments: list[AdjustmentView] = Field(default_factory=list)


class AffiliateOrdersPage(BaseModel):
    items: list[AffiliateOrder]
    next_cursor: str | None


class TierStanding(BaseModel):
    """An affiliate's standing in one currency's performance tiers for a month
    (docs/incentives.md)."""

    currency: str
    orders: int = Field(description="chargeable orders completed in the month")
    qualifying_sales: str = Field(
        description="sales amounts (price × quantity − shipping) of those orders, less what "
        "was refunded: what the thresholds count (never items or orders)"
    )
    tier: dict[str, str] | None = Field(description='the highest reached: {"from", "extra_rate"}')
    next_tier: dict[str, str] | None = Field(description="the next threshold, if any")
    bonus: str = Field(description="the reached tier's extra rate × the qualifying sales")
    capped_bonus: str = Field(
        description="the bonus under the month's cap, after the month's orders' commission"
    )
    settled: bool = Field(
        description="the month is over and all its orders have locked: the figures are final"
    )


class TierProgressView(BaseModel):
    store_id: str
    affiliate_id: str
    month: str
    currencies: list[TierStanding]
