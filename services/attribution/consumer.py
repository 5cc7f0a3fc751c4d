"""The attribution pipeline: clicks + orders in, decisions out through the outbox."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.attribution.models import consumer_offsets
from services.attribution.service import AttributionService, Incoming
from shared.config import Settings
from shared.events import Click, StoreEntry, Topic, directory_adapter, order_event_adapter
from shared.kafka import ConsumerPipeline, PoisonMessage, service_pipeline
from shared.offsets import OffsetRepository
from shared.outbox import OutboxRelay

CONSUMER_NAME = "attribution"


def make_decoder(settings: Settings) -> Decoder:
    return Decoder(
        settings.topic(Topic.CLICKS), settings.topic(Topic.ORDERS), settings.topic(Topic.DIRECTORY)
    )


class Decoder:
    def __init__(self, clicks_topic: str, orders_topic: str, directory_topic: str) -> None:
        self.clicks_topic = clicks_topic
        self.orders_topic = orders_topic
        self.directory_topic = directory_topic

    def __call__(self, topic: str, raw: bytes) -> Incoming:
        if topic == self.clicks_topic:
            return Click.model_validate_json(raw)
        if topic == self.orders_topic:
            event = order_event_adapter.validate_json(raw)
            return event if event.type != "order_refunded" else None
        if topic == self.directory_topic:  # stores' attribution windows
            entry = directory_adapter.validate_json(raw)
            return entry if isinstance(entry, StoreEntry) else None
        raise PoisonMessage(f"unexpected topic {topic}")


def make_pipeline(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    service: AttributionService,
    relay: OutboxRelay,
) -> ConsumerPipeline[Incoming]:
    return service_pipeline(
        settings,
        name=CONSUMER_NAME,
        topics=[Topic.CLICKS, Topic.ORDERS, Topic.DIRECTORY],
        sessions=sessions,
        offsets=OffsetRepository(consumer_offsets),
        decode=make_decoder(settings),
        handle=service.handle_batch,
        producer=producer,
        after_commit=relay.poke,
    )
