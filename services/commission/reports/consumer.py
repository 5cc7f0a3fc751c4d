"""The reports consumer: clicks, page views and catalog updates in, the reports' read models
out (:class:`~services.commission.reports.service.TrafficService`)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.models import consumer_offsets
from services.commission.reports.service import Incoming, TrafficService
from shared.config import Settings
from shared.events import Click, PageView, ProductUpserted, Topic, storefront_event_adapter
from shared.kafka import ConsumerPipeline, PoisonMessage, service_pipeline
from shared.offsets import OffsetRepository

CONSUMER_NAME = "reports"


class Decoder:
    def __init__(self, settings: Settings) -> None:
        self.clicks = settings.topic(Topic.CLICKS)
        self.page_views = settings.topic(Topic.PAGE_VIEWS)
        self.catalog = settings.topic(Topic.CATALOG)

    def __call__(self, topic: str, raw: bytes) -> Incoming:
        if topic == self.clicks:
            return Click.model_validate_json(raw)
        if topic in (self.page_views, self.catalog):
            event = storefront_event_adapter.validate_json(raw)
            return event if isinstance(event, PageView | ProductUpserted) else None
        raise PoisonMessage(f"unexpected topic {topic}")


def make_pipeline(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    service: TrafficService,
) -> ConsumerPipeline[Incoming]:
    return service_pipeline(
        settings,
        name=CONSUMER_NAME,
        topics=[Topic.CLICKS, Topic.PAGE_VIEWS, Topic.CATALOG],
        sessions=sessions,
        offsets=OffsetRepository(consumer_offsets),
        decode=Decoder(settings),
        handle=service.handle_batch,
        producer=producer,
    )
