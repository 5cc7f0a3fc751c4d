"""Request and response models of the commission service's HTTP API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Final

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from shared.events import DecimalStr, Ident, PrincipalId, Text, UtcDatetime
from shared.urls import landing_template_problem

# -- parameters: what an id, a time or a row number may be, checked before any query ---------

#: the largest value of a BIGINT column (payout and posting ids): a larger number names nothing
MAX_BIGINT: Final = 2**63 - 1
#: a store, affiliate or finance user id in a path (the shape they are created with)
PrincipalIdPath = Annotated[PrincipalId, Path()]
StoreIdPath = Annotated[PrincipalId, Path(description="the store's id")]
#: an order, product or category id in a path (the identifier budget of the events)
OrderIdPath = Annotated[Ident, Path(description="the store's order number")]
IdentPath = Annotated[Ident, Path()]
RowIdPath = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
#: times of a range: with an offset, and representable in UTC (else 422)
TimeFrom = Annotated[
    UtcDatetime | None, Query(alias="from", description="from this time (included)")
]
TimeTo = Annotated[UtcDatetime | None, Query(alias="to", description="to this time (excluded)")]
#: the UTC days a report may cover (a range of days must be computable in both directions)
FIRST_DAY: Final = date(1970, 1, 1)
LAST_DAY: Final = date(9998, 12, 31)


class CreateStore(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "store_id": "s1",
                    "name": "Phone Case Planet",
                    "landing_url_template": "https://shop.example/item/{product_id}",
                }
            ]
        },
    )

    store_id: PrincipalId
    name: Text = Field(min_length=1, max_length=256)
    landing_url_template: Text = Field(
        min_length=8,
        max_length=1024,
        description="Landing URL of a product link: `http` or `https` with a host; at most one "
        "`{product_id}`, in the path or the query, is replaced by the product id, and no other "
        "brace may appear. A link without product lands on the URL's origin (the store page). "
        "Otherwise 422 with the code `invalid_landing_url`.",
    )

    @field_validator("landing_url_template")
    @classmethod
    def _landing_url(cls, value: str) -> str:
        if problem := landing_template_problem(value):
            raise PydanticCustomError(
                "invalid_landing_url",
                "invalid landing URL template: {problem}",
                {"problem": problem},
            )
        return value


class CreatedStore(BaseModel):
    store_id: str
    api_key: str
    webhook_secret: str


class RotatedSecret(BaseModel):
    store_id: str
    webhook_secret: str


class CreateAffiliate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"affiliate_id": "aff-a", "name": "Tech blog"}]},
    )

    affiliate_id: PrincipalId
    name: Text = Field(min_length=1, max_length=256)


class CreateFinanceUser(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"user_id": "fin-1"}]}
    )

    user_id: PrincipalId


class CreatedKey(BaseModel):
    id: str
    api_key: str


class JoinRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"default_rate": "0.06"}]}
    )

    default_rate: DecimalStr | None = None


class RateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rate": "0.08"}]})

    rate: DecimalStr


class WindowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"days": 10}]})

    days: int = Field(description="the attribution window in days, 1 to 30")


class MainProductRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rate": "0.12"}]})

    rate: DecimalStr | None = None


class ProgramResponse(BaseModel):
    store_id: str
    state: str  # joined | exited | never_joined
    joined_at: datetime | None
    exited_at: datetime | None
    exit_allowed_at: datetime | None
    rejoin_allowed_at: datetime | None
    default_rate: str
    category_rates: dict[str, str]
    main_products: dict[str, str | None]
    attribution_window_days: int = Field(
        description="the window in force: the program's own, else the deployment's default"
    )
    attribution_window_is_default: bool


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
    verdict: (
        str  # won | earlier_than_winner | outside_window | after_order | suspicious | other_store
    )


class AttributionExplanation(BaseModel):
    order_id: str
    store_id: str
    rule: str  # last_click | organic
    revision: int  # 0 the first decision, n > 0 its n-th correction
    decided_at: datetime
    affiliate_id: str | None
    click_id: str | None
    click_at: datetime | None
    sub_id: str | None
    placed_at: datetime
    window_start: datetime
    window_end: datetime
    considered: list[ConsideredClickView]


class SettlementTotals(BaseModel):
    currency: str
    affiliate_sales: str  # product amount of completed chargeable orders, shipping excluded
    orders_completed: int
    commission_payable: str  # gross commission of those orders
    reversed: str  # refunds' reversals of those orders (claw-backs included)
    net: str
    orders_open: int  # chargeable orders placed in the range, not completed yet
    estimated: str  # their commission, not payable yet


class Settlement(BaseModel):
    subject: str  # store:<id> | affiliate:<id>
    start: datetime
    end: datetime
    totals: list[SettlementTotals]


class LedgerLine(BaseModel):
    posting_id: int
    txn_id: int
    key: str
    kind: str
    store_id: str | None
    order_id: str | None
    account: str
    currency: str
    amount: str
    occurred_at: datetime


class LedgerPage(BaseModel):
    items: list[LedgerLine]
    next_cursor: int | None  # pass as ``cursor`` for the next page; None on the last page


class OperationView(BaseModel):
    id: int
    kind: str
    at: datetime
    key: str | None  # category or product id
    rate: str | None
    days: int | None  # attribution window
    actor: str
    before: dict[str, object]
    after: dict[str, object]


class MainProductView(BaseModel):
    product_id: str
    rate: str | None  # its own rate; None: the category or default rate applies
    effective_rate: str  # the rate an order placed now would get (without a category)


class PayoutRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"affiliate_id": "aff-a", "up_to": "2026-03-31T23:59:59Z"}]
        },
    )

    affiliate_id: PrincipalId
    up_to: UtcDatetime


class PayoutView(BaseModel):
    payout_id: int
    affiliate_id: str
    up_to: datetime
    amounts: dict[str, str]  # currency → amount paid
    created_at: datetime


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


class StatementTotals(BaseModel):
    """What the ledger posted on the store's account in the period (later events land in the
    period they are posted in)."""

    currency: str
    orders_charged: int  # commission transactions posted in the period
    commission: str  # commission charged (owed by the store)
    refunds: int  # reversal transactions posted in the period (claw-backs included)
    reversed: str
    net: str


class Statement(BaseModel):
    store_id: str
    period: str  # YYYY-MM (UTC)
    start: datetime
    end: datetime
    closed: bool
    closed_at: datetime | None
    closed_by: str | None
    totals: list[StatementTotals]  # frozen at closing when closed, live otherwise


class ReconciliationDay(BaseModel):
    day: str  # YYYY-MM-DD (UTC)
    currency: str
    estimated_at_placement: str  # gross commission of chargeable orders placed that day
    became_payable: str  # commission posted that day (orders completed)
    cancelled: str  # gross commission of orders cancelled that day
    reversed: str  # reversals posted that day (refunds, claw-backs)
    day_orders_payable: str  # of that day's estimate: orders completed since
    day_orders_cancelled: str  # … cancelled since
    day_orders_open: str  # … still placed
    unexplained: str  # estimate − the three above: zero when the books agree
