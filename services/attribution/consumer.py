"""The attribution pipeline: clicks + orders in, decisions out through the outbox."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.attribution.models import consumer_offsets
from services.attribution.service import AttributionService, Incoming
from shared.config import Settings
from shared.events import Click, StoreEntry, Topic, directory_adapter, order_event_adapter
from shared.kafka import ConsumerPipeline, TopicDecoder, service_pipeline
from shared.offsets import OffsetRepository
from shared.outbox import OutboxRelay

CONSUMER_NAME = "attribution"


def decode_order(raw: bytes) -> Incoming:
    """An order event; a refund is skipped (it moves money, not attribution)."""
    event = order_event_adapter.validate_json(raw)
    return event if event.type != "order_refunded" else None


def decode_window(raw: bytes) -> Incoming:
    """A store's directory entry (its attribution window); affiliates' entries are skipped."""
    entry = directory_adapter.validate_json(raw)
    return entry if isinstance(entry, StoreEntry) else None


#: what the pipeline reads, and how
ROUTES: dict[Topic, TopicDecoder[Incoming]] = {
    Topic.CLICKS: Click.model_validate_json,
    Topic.ORDERS: decode_order,
    Topic.DIRECTORY: decode_window,
}


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
        routes=ROUTES,
        sessions=sessions,
        offsets=OffsetRepository(consumer_offsets),
        handle=service.handle_batch,
        producer=producer,
        after_commit=relay.poke,
    )
