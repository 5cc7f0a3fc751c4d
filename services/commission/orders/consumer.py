"""The commission pipeline: attributions and order events in, ledger postings out."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.models import consumer_offsets
from services.commission.orders.service import Incoming, OrderService
from shared.config import Settings
from shared.events import Attribution, Topic, order_event_adapter
from shared.kafka import ConsumerPipeline, PoisonMessage, service_pipeline
from shared.offsets import OffsetRepository

CONSUMER_NAME = "commission"


class Decoder:
    def __init__(self, settings: Settings) -> None:
        self.attributions = settings.topic(Topic.ATTRIBUTIONS)
        self.orders = settings.topic(Topic.ORDERS)

    def __call__(self, topic: str, raw: bytes) -> Incoming:
        if topic == self.attributions:
            return Attribution.model_validate_json(raw)
        if topic == self.orders:
            return order_event_adapter.validate_json(raw)
        raise PoisonMessage(f"unexpected topic {topic}")


def make_pipeline(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    service: OrderService,
) -> ConsumerPipeline[Incoming]:
    return service_pipeline(
        settings,
        name=CONSUMER_NAME,
        topics=[Topic.ATTRIBUTIONS, Topic.ORDERS],
        sessions=sessions,
        offsets=OffsetRepository(consumer_offsets),
        decode=Decoder(settings),
        handle=service.handle_batch,
        producer=producer,
    )
