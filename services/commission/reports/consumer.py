"""The reports consumer: clicks, page views, catalog updates and placed orders in, the
reports' read models out (:class:`~services.commission.reports.service.TrafficService`)."""

from __future__ import annotations

from services.commission.models import consumer_offsets
from services.commission.reports.service import Incoming
from shared.events import (
    Click,
    OrderPlaced,
    PageView,
    ProductUpserted,
    Topic,
    order_event_adapter,
    storefront_event_adapter,
)
from shared.kafka import Consumes

CONSUMER_NAME = "reports"


def decode_storefront(raw: bytes) -> Incoming:
    """A page view or a product upsert; the other storefront events are not the reports'."""
    event = storefront_event_adapter.validate_json(raw)
    return event if isinstance(event, PageView | ProductUpserted) else None


def decode_placed(raw: bytes) -> Incoming:
    """A placed order (what its visitor bought: the camp's interests); the other order events
    are not the reports'. A message that is no valid order event is skipped here, not
    dead-lettered: the ledger consumer reads the same topic and dead-letters it, once."""
    try:
        event = order_event_adapter.validate_json(raw)
    except ValueError:  # pydantic's ValidationError, malformed JSON included
        return None
    return event if isinstance(event, OrderPlaced) else None


#: what the reports' pipeline reads, and how
CONSUMER: Consumes[Incoming] = Consumes(
    name=CONSUMER_NAME,
    routes={
        Topic.CLICKS: Click.model_validate_json,
        Topic.PAGE_VIEWS: decode_storefront,
        Topic.CATALOG: decode_storefront,
        Topic.ORDERS: decode_placed,
    },
    offsets=consumer_offsets,
)
