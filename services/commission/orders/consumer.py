"""The commission pipeline: attributions and order events in, ledger postings out."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.models import consumer_offsets
from services.commission.orders.service import Incoming, OrderService
from shared.config import Settings
from shared.events import Attribution, Topic, order_event_adapter
from shared.kafka import ConsumerPipeline, TopicDecoder, service_pipeline
from shared.offsets import OffsetRepository

CONSUMER_NAME = "commission"


#: what the pipeline reads, and how
ROUTES: dict[Topic, TopicDecoder[Incoming]] = {
    Topic.ATTRIBUTIONS: Attribution.model_validate_json,
    Topic.ORDERS: order_event_adapter.validate_json,
}


def make_pipeline(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    service: OrderService,
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
