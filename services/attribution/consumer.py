"""The attribution pipeline: clicks + orders in, decisions out through the outbox."""

from __future__ import annotations

from services.attribution.models import consumer_offsets
from services.attribution.privacy import WithErasures
from shared.events import (
    Click,
    CouponEntry,
    Erasure,
    StoreEntry,
    Topic,
    directory_adapter,
    order_event_adapter,
)
from shared.kafka import Consumes, PoisonMessage

CONSUMER_NAME = "attribution"


def decode_click(raw: bytes) -> WithErasures:
    """A click; one with a NUL in any of its texts is poison: PostgreSQL's text cannot hold
    it (JSON escapes a NUL as ``\\u0000``, so only such messages are looked into)."""
    click = Click.model_validate_json(raw)
    if b"\\u0000" in raw and any(
        isinstance(v, str) and "\x00" in v for v in click.__dict__.values()
    ):
        raise PoisonMessage("a NUL character in the click's text (nul_character)")
    return click


def decode_order(raw: bytes) -> WithErasures:
    """An order event; a refund is skipped (it moves money, not attribution)."""
    event = order_event_adapter.validate_json(raw)
    return event if event.type != "order_refunded" else None


def decode_window(raw: bytes) -> WithErasures:
    """A store's directory entry (its attribution window and coupon policy) or a coupon code's;
    affiliates' entries are skipped."""
    entry = directory_adapter.validate_json(raw)
    return entry if isinstance(entry, StoreEntry | CouponEntry) else None


#: what the pipeline reads, and how (clicks, orders, stores' windows, policies and codes;
#: visitors erased, services/attribution/privacy.py)
CONSUMER: Consumes[WithErasures] = Consumes(
    name=CONSUMER_NAME,
    routes={
        Topic.CLICKS: decode_click,
        Topic.ORDERS: decode_order,
        Topic.DIRECTORY: decode_window,
        Topic.PRIVACY: Erasure.model_validate_json,
    },
    offsets=consumer_offsets,
)
