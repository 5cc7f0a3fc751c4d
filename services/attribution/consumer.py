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
from shared.kafka import Consumes

CONSUMER_NAME = "attribution"


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
        Topic.CLICKS: Click.model_validate_json,
        Topic.ORDERS: decode_order,
        Topic.DIRECTORY: decode_window,
        Topic.PRIVACY: Erasure.model_validate_json,
    },
    offsets=consumer_offsets,
)
