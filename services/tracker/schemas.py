"""Request and response models of the tracker's HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.events import Ident, Text, UtcDatetime


class LinkRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"store_id": "s1", "product_id": "p1", "sub_id": "blog"}]},
    )

    store_id: Ident
    product_id: Ident | None = None
    sub_id: Ident | None = None


class LinkResponse(BaseModel):
    code: str
    url: str
    affiliate_id: str
    store_id: str
    product_id: str | None
    sub_id: str | None


class EventsRequest(BaseModel):
    """A batch of storefront events; each is validated on its own."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "evt-1001",
                            "type": "order_placed",
                            "occurred_at": "2026-03-01T12:00:00Z",
                            "order_id": "o-1001",
                            "visitor_id": "v-42",
                            "currency": "USD",
                            "items": [
                                {
                                    "product_id": "p1",
                                    "category_id": "c1",
                                    "title": "Phone case",
                                    "quantity": 2,
                                    "unit_price": "20.00",
                                    "shipping_fee": "3.50",
                                }
                            ],
                        },
                        {
                            "event_id": "evt-1002",
                            "type": "order_completed",
                            "occurred_at": "2026-03-06T12:00:00Z",
                            "order_id": "o-1001",
                        },
                    ]
                }
            ]
        }
    )

    events: list[dict[str, Any]] = Field(max_length=1000)


class ServerClick(BaseModel):
    """A click recorded server to server (cookie-less tracking, imports of past clicks)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "clk-778",
                    "code": "k1.YWZmLWEfczEfcDEf.jwin1yEvPTPBsQUS",
                    "visitor_id": "v-42",
                    "occurred_at": "2026-03-01T11:58:00Z",
                    "ip": "203.0.113.7",
                    "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
                }
            ]
        },
    )

    event_id: Ident
    code: Text = Field(max_length=512)
    visitor_id: Ident
    occurred_at: UtcDatetime
    ip: Text | None = Field(None, max_length=64)
    #: cut to 512 characters before it is matched or recorded
    user_agent: Text | None = Field(None, max_length=2048)


class ClickAccepted(BaseModel):
    click_id: str
    suspicious: bool
    suspicious_reason: str | None


class EventResult(BaseModel):
    index: int
    event_id: str | None
    status: str  # accepted | duplicate | rejected
    #: why a rejected event was refused, machine-readable (e.g. ``occurred_too_long_ago``)
    code: str | None = None
    errors: list[dict[str, Any]] | None = None

    @classmethod
    def refused(
        cls, index: int, event_id: object, code: str, errors: list[dict[str, Any]]
    ) -> EventResult:
        """A rejected event; its id is echoed only if it was a string."""
        return cls(
            index=index,
            event_id=event_id if isinstance(event_id, str) else None,
            status="rejected",
            code=code,
            errors=errors,
        )


class EventsResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]
