"""The reports consumer: clicks, page views and catalog updates in, the reports' read models
out (:class:`~services.commission.reports.service.TrafficService`)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.models import consumer_offsets
from services.commission.reports.service import Incoming, TrafficService
from shared.config import Settings
from shared.events import Click, PageView, ProductUpserted, Topic, storefront_event_adapter
from shared.kafka import ConsumerPipeline, TopicDecoder, service_pipeline
from shared.offsets import OffsetRepository

CONSUMER_NAME = "reports"


def decode_storefront(raw: bytes) -> Incoming:
    """A page view or a product upsert; the other storefront events are not the reports'."""
    event = storefront_event_adapter.validate_json(raw)
    return event if isinstance(event, PageView | ProductUpserted) else None


#: what the pipeline reads, and how
ROUTES: dict[Topic, TopicDecoder[Incoming]] = {
    Topic.CLICKS: Click.model_validate_json,
    Topic.PAGE_VIEWS: decode_storefront,
    Topic.CATALOG: decode_storefront,
}


def make_pipeline(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    service: TrafficService,
) -> ConsumerPipeline[Incoming]:
    return service_pipeline(
        settings,
        name=CONSUMER_NAME,
        routes=ROUTES,
        sessions=sessions,
        offsets=OffsetRepository(consumer_offsets),
        handle=service.handle_batch,
        producer=producer,
    )
