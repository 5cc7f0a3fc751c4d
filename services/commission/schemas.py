"""Request and response models of the commission service's HTTP API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from shared.events import DecimalStr


class JoinRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"default_rate": "0.06"}]}
    )

    default_rate: DecimalStr | None = None


class RateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rate": "0.08"}]})

    rate: DecimalStr


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


class LedgerLine(BaseModel):
    txn_id: int
    key: str
    kind: str
    order_id: str | None
    account: str
    currency: str
    amount: str
    occurred_at: datetime
