"""Request and response models of the postback and webhook routes (with the OpenAPI
examples of each event's payload)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.commission.core.webhooks import (
    DISABLE_AFTER_FAILURES,
    MACROS,
    RESPONSE_BODY_MAX,
    URL_MAX,
    WebhookEvent,
)

#: what each event's body looks like (POST endpoints receive it as JSON; GET templates take
#: their macros from its ``data``)
EVENT_EXAMPLES: dict[WebhookEvent, dict[str, Any]] = {
    WebhookEvent.ORDER_ATTRIBUTED: {
        "id": "evt_3b1f0c9d2e4a5b6c7d8e9f0a1b2c3d4e",
        "type": "order.attributed",
        "created_at": "2026-11-28T10:15:02+00:00",
        "data": {
            "order_id": "o-1001",
            "store_id": "acme",
            "affiliate_id": "aff-7",
            "click_id": "0190d7c3a1b2c3d4e5f6a7b8c9d0e1f2",
            "sub_id": "spring-video",
            "status": "placed",
            "commission": "2.19",
            "currency": "USD",
            "placed_at": "2026-11-28T10:14:58+00:00",
        },
    },
    WebhookEvent.COMMISSION_PAYABLE: {
        "id": "evt_9f86d081884c7d659a2feaa0c55ad015",
        "type": "commission.payable",
        "created_at": "2026-12-03T08:00:11+00:00",
        "data": {
            "order_id": "o-1001",
            "store_id": "acme",
            "affiliate_id": "aff-7",
            "click_id": "0190d7c3a1b2c3d4e5f6a7b8c9d0e1f2",
            "sub_id": "spring-video",
            "status": "completed",
            "commission": "2.19",
            "currency": "USD",
            "placed_at": "2026-11-28T10:14:58+00:00",
            "locks_at": "2027-02-01T08:00:11+00:00",
        },
    },
    WebhookEvent.COMMISSION_REVERSED: {
        "id": "evt_60303ae22b998861bce3b28f33eec1be",
        "type": "commission.reversed",
        "created_at": "2026-12-05T16:42:00+00:00",
        "data": {
            "order_id": "o-1001",
            "store_id": "acme",
            "affiliate_id": "aff-7",
            "click_id": "0190d7c3a1b2c3d4e5f6a7b8c9d0e1f2",
            "sub_id": "spring-video",
            "status": "completed",
            "commission": "-1.10",
            "currency": "USD",
            "placed_at": "2026-11-28T10:14:58+00:00",
            "refund_id": "r-1",
            "locks_at": "2027-02-01T08:00:11+00:00",
        },
    },
    WebhookEvent.COMMISSION_ADJUSTED: {
        "id": "evt_2c26b46b68ffc68ff99b453c1d304134",
        "type": "commission.adjusted",
        "created_at": "2026-12-06T10:00:00+00:00",
        "data": {
            "order_id": "o-1001",
            "store_id": "acme",
            "affiliate_id": "aff-7",
            "click_id": "0190d7c3a1b2c3d4e5f6a7b8c9d0e1f2",
            "sub_id": "spring-video",
            "status": "completed",
            "commission": "-1.10",
            "currency": "USD",
            "placed_at": "2026-11-28T10:14:58+00:00",
            "locks_at": "2027-02-01T08:00:11+00:00",
            "adjustment_id": 1,
            "action": "amend",
            "reason": "item_returned",
            "note": "one of two returned",
        },
    },
    WebhookEvent.COMMISSION_LOCKED: {
        "id": "evt_e3b0c44298fc1c149afbf4c8996fb924",
        "type": "commission.locked",
        "created_at": "2027-02-01T08:01:00+00:00",
        "data": {
            "order_id": "o-1001",
            "store_id": "acme",
            "affiliate_id": "aff-7",
            "click_id": "0190d7c3a1b2c3d4e5f6a7b8c9d0e1f2",
            "sub_id": "spring-video",
            "status": "completed",
            "commission": "1.09",
            "currency": "USD",
            "placed_at": "2026-11-28T10:14:58+00:00",
            "locks_at": "2027-02-01T08:00:11+00:00",
            "locked": True,
        },
    },
    WebhookEvent.COMMISSION_HELD: {
        "id": "evt_4e07408562bedb8b60ce05c1decfe3ad",
        "type": "commission.held",
        "created_at": "2026-12-06T09:00:00+00:00",
        "data": {
            "hold_id": 3,
            "affiliate_id": "aff-7",
            "store_id": "acme",
            "reason": "fraud",
            "note": "self-referrals under review",
            "status": "active",
        },
    },
    WebhookEvent.COMMISSION_RELEASED: {
        "id": "evt_4b227777d4dd1fc61c6f884f48641d02",
        "type": "commission.released",
        "created_at": "2026-12-08T09:00:00+00:00",
        "data": {
            "hold_id": 3,
            "affiliate_id": "aff-7",
            "store_id": "acme",
            "reason": "fraud",
            "note": "self-referrals under review",
            "status": "released",
        },
    },
    WebhookEvent.PAYOUT_CREATED: {
        "id": "evt_a665a45920422f9d417e4867efdc4fb8",
        "type": "payout.created",
        "created_at": "2027-01-02T09:00:00+00:00",
        "data": {
            "payout_id": 42,
            "affiliate_id": "aff-7",
            "amounts": {"EUR": "12.00", "USD": "131.40"},
            "up_to": "2027-01-01T00:00:00+00:00",
        },
    },
}

EVENT_MEANINGS: dict[WebhookEvent, str] = {
    WebhookEvent.ORDER_ATTRIBUTED: "an order was attributed to an affiliate (commission is "
    "the estimate at placement)",
    WebhookEvent.COMMISSION_PAYABLE: "the order completed and its commission was posted",
    WebhookEvent.COMMISSION_REVERSED: "a refund reversed commission already posted "
    "(commission is negative)",
    WebhookEvent.COMMISSION_ADJUSTED: "a reason-coded adjustment changed posted commission "
    "(commission is the change, signed; reason and note as the store gave them)",
    WebhookEvent.COMMISSION_LOCKED: "the order's commission reached its locking date "
    "(commission is its final net: nothing changes it any more)",
    WebhookEvent.COMMISSION_HELD: "finance placed the affiliate on hold: its commissions on "
    "the store (or every store) are posted but not payable",
    WebhookEvent.COMMISSION_RELEASED: "the hold ended: released (payable again, nothing lost) "
    "or voided (status voided: reversed with reason fraud before their lock)",
    WebhookEvent.PAYOUT_CREATED: "finance paid the affiliate's balance",
}


class WebhookEventBody(BaseModel):
    """An event as a POST endpoint receives it (its JSON body), signed in the
    ``Alliance-Signature`` header; ``id`` is stable (deduplicate by it)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [EVENT_EXAMPLES[e] for e in WebhookEvent]}
    )

    id: str = Field(description="stable: the same cause always has the same id")
    type: WebhookEvent
    created_at: str = Field(description="when it happened: ISO 8601, UTC")
    data: dict[str, Any] = Field(
        description="an order's event: order_id, store_id, affiliate_id, click_id, sub_id, "
        "status, commission (decimal string; negative for a reversal), currency, placed_at "
        "(and refund_id for a reversal); a payout's: payout_id, affiliate_id, amounts "
        "(currency → decimal string), up_to, and for a payout run's: run_id, source_amounts, "
        "fx_rate, rounding"
    )


class EndpointRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/alliance",
                    "method": "POST",
                    "events": ["order.attributed", "commission.payable", "commission.reversed"],
                },
                {
                    "url": "https://track.example.net/postback?sub={sub_id}&amount={commission}"
                    "&cur={currency}&status={status}&txn={event_id}",
                    "method": "GET",
                    "events": ["commission.payable"],
                },
            ]
        },
    )

    url: str = Field(
        max_length=URL_MAX,
        description="http(s) URL; for GET, a template with {macro}s in its path or query",
    )
    method: Literal["POST", "GET"] = "POST"
    events: list[WebhookEvent] = Field(min_length=1, max_length=len(WebhookEvent))


class EndpointView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "we_0190d7c3a1b2c3d4e5f6a7b8c9d0e1f2",
                    "url": "https://hooks.example.com/alliance",
                    "method": "POST",
                    "events": ["commission.payable"],
                    "status": "disabled",
                    "disabled_reason": f"{DISABLE_AFTER_FAILURES} consecutive failed "
                    "deliveries; last: HTTP 503",
                    "disabled_at": "2026-11-29T03:12:44+00:00",
                    "consecutive_failures": DISABLE_AFTER_FAILURES,
                    "retry_at": None,
                    "previous_secret_until": None,
                    "created_at": "2026-11-28T10:00:00+00:00",
                }
            ]
        }
    )

    id: str
    url: str
    method: str
    events: list[str]
    status: Literal["active", "disabled"]
    disabled_reason: str | None = Field(description="why it was disabled (the last failure)")
    disabled_at: datetime | None
    consecutive_failures: int
    retry_at: datetime | None = Field(
        description="while failing, no delivery before this time (the endpoint's backoff)"
    )
    previous_secret_until: datetime | None = Field(
        description="after a rotation, deliveries carry a second v1 signature by the "
        "previous secret until this time"
    )
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> EndpointView:
        return cls(
            id=row.id,
            url=row.url,
            method=row.method,
            events=list(row.events),
            status=row.status,
            disabled_reason=row.disabled_reason,
            disabled_at=row.disabled_at,
            consecutive_failures=row.consecutive_failures,
            retry_at=row.retry_at,
            previous_secret_until=row.previous_secret_until,
            created_at=row.created_at,
        )


class EndpointCreated(EndpointView):
    secret: str = Field(
        description="the signing secret, shown this once (rotate-secret gives a new one)"
    )


class EndpointList(BaseModel):
    items: list[EndpointView]


class DeliveryView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 812,
                    "event_id": "evt_9f86d081884c7d659a2feaa0c55ad015",
                    "event_type": "commission.payable",
                    "status": "pending",
                    "attempts": 3,
                    "last_status_code": 502,
                    "last_latency_ms": 131,
                    "last_error": "HTTP 502",
                    "last_attempt_at": "2026-12-03T08:00:18+00:00",
                    "next_attempt_at": "2026-12-03T08:00:22+00:00",
                    "delivered_at": None,
                    "created_at": "2026-12-03T08:00:11+00:00",
                    "event": EVENT_EXAMPLES[WebhookEvent.COMMISSION_PAYABLE],
                }
            ]
        }
    )

    id: int
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed", "cancelled"] = Field(
        description="pending (to be tried at next_attempt_at), delivered (2xx), failed (72 h "
        "of retries without success) or cancelled (the endpoint was deleted)"
    )
    attempts: int
    last_status_code: int | None
    last_latency_ms: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    event: WebhookEventBody = Field(description="the event as a POST endpoint receives it")

    @classmethod
    def of(cls, row: Any) -> DeliveryView:
        return cls(
            id=row.id,
            event_id=row.event_id,
            event_type=row.event_type,
            status=row.status,
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_latency_ms=row.last_latency_ms,
            last_error=row.last_error,
            last_attempt_at=row.last_attempt_at,
            next_attempt_at=row.next_attempt_at,
            delivered_at=row.delivered_at,
            created_at=row.created_at,
            event=WebhookEventBody.model_validate(row.payload),
        )


class DeliveriesPage(BaseModel):
    items: list[DeliveryView]
    next_cursor: int | None = Field(
        description="pass as cursor for the next (older) page; null on the last"
    )


class AttemptView(BaseModel):
    """One attempt of a delivery, as it happened (never changed afterwards)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 4051,
                    "attempt": 3,
                    "at": "2026-12-03T08:00:18+00:00",
                    "status_code": 502,
                    "latency_ms": 131,
                    "error": "HTTP 502",
                    "response_body": "<html><body>Bad gateway</body></html>",
                }
            ]
        }
    )

    id: int
    attempt: int = Field(
        description="which attempt of the delivery (counted since it was written, re-enabled "
        "or redelivered)",
        ge=1,
    )
    at: datetime = Field(description="when the attempt began (UTC)")
    status_code: int | None = Field(description="the answer's HTTP status; null without one")
    latency_ms: int = Field(description="from the start of the attempt to its end", ge=0)
    error: str | None = Field(
        description="why it failed (HTTP status, timeout, refused connection or target); "
        "null when it delivered"
    )
    response_body: str | None = Field(
        max_length=RESPONSE_BODY_MAX,
        description="the first 1 KiB (1,024 bytes) of the answer's body, decoded as UTF-8 "
        "(bytes that are not become U+FFFD); null without an answer",
    )

    @classmethod
    def of(cls, row: Any) -> AttemptView:
        return cls(
            id=row.id,
            attempt=row.attempt,
            at=row.at,
            status_code=row.status_code,
            latency_ms=row.latency_ms,
            error=row.error,
            response_body=row.response_body,
        )


class AttemptsPage(BaseModel):
    items: list[AttemptView] = Field(description="the delivery's attempts, newest first")
    next_cursor: int | None = Field(
        description="pass as cursor for the next (older) page; null on the last"
    )


class EventDoc(BaseModel):
    type: str
    meaning: str
    example: WebhookEventBody


class MacroDoc(BaseModel):
    name: str
    example: str


class TemplatesView(BaseModel):
    """What an endpoint may subscribe to and what a GET template may hold."""

    events: list[EventDoc]
    macros: list[MacroDoc]
    example_get_url: str
    signature: str

    @classmethod
    def build(cls) -> TemplatesView:
        return cls(
            events=[
                EventDoc(
                    type=e.value,
                    meaning=EVENT_MEANINGS[e],
                    example=WebhookEventBody.model_validate(EVENT_EXAMPLES[e]),
                )
                for e in WebhookEvent
            ],
            macros=[MacroDoc(name=f"{{{k}}}", example=v) for k, v in MACROS.items()],
            example_get_url="https://track.example.net/postback?sub={sub_id}&amount="
            "{commission}&cur={currency}&status={status}&txn={event_id}",
            signature="Alliance-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "
            "\"<t>.<content>\")> where content is a POST's raw body, or a GET's path and "
            "query (/postback?sub=…); during a rotation's overlap a second v1 is signed by "
            "the previous secret",
        )
