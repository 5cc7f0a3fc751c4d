"""The reports consumer: clicks, page views and catalog updates in, the reports' read models
out (:class:`~services.commission.reports.service.TrafficService`)."""

from __future__ import annotations

from services.commission.models import consumer_offsets
from services.commission.reports.service import Incoming
from shared.events import Click, PageView, ProductUpserted, Topic, storefront_event_adapter
from shared.kafka import Consumes

CONSUMER_NAME = "reports"


def decode_storefront(raw: bytes) -> Incoming:
    """A page view or a product upsert; the other storefront events are not the reports'."""
    event = storefront_event_adapter.validate_json(raw)
    return event if isinstance(event, PageView | ProductUpserted) else None


#: what the reports' pipeline reads, and how
CONSUMER: Consumes[Incoming] = Consumes(
    name=CONSUMER_NAME,
    routes={
        Topic.CLICKS: Click.model_validate_json,
        Topic.PAGE_VIEWS: decode_storefront,
        Topic.CATALOG: decode_storefront,
    },
    offsets=consumer_offsets,
)
