"""The attribution pipeline: clicks + orders in, decisions out through the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.attribution.models import consumer_offsets
from services.attribution.repository import AttributionRepository
from services.attribution.service import AttributionService, Incoming
from shared.config import Settings
from shared.events import Click, Topic, order_event_adapter
from shared.kafka import ConsumerPipeline, PoisonMessage, service_pipeline
from shared.offsets import OffsetRepository

log = logging.getLogger(__name__)

CONSUMER_NAME = "attribution"


def make_decoder(settings: Settings) -> Decoder:
    return Decoder(settings.topic(Topic.CLICKS), settings.topic(Topic.ORDERS))


class Decoder:
    def __init__(self, clicks_topic: str, orders_topic: str) -> None:
        self.clicks_topic = clicks_topic
        self.orders_topic = orders_topic

    def __call__(self, topic: str, raw: bytes) -> Incoming:
        if topic == self.clicks_topic:
            return Click.model_validate_json(raw)
        if topic == self.orders_topic:
            event = order_event_adapter.validate_json(raw)
            return event if event.type != "order_refunded" else None
        raise PoisonMessage(f"unexpected topic {topic}")


class OutboxRelay:
    """Publishes committed outbox rows, oldest first, and deletes them once Kafka has them.

    At least once: a crash between send and delete re-sends; consumers dedupe by event id.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], producer: AIOKafkaProducer
    ) -> None:
        self.sessions = sessions
        self.producer = producer
        self.wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0

    def poke(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()

    async def drain_once(self, limit: int = 1000) -> int:
        async with self.sessions() as session, session.begin():
            repo = AttributionRepository(session)
            rows = await repo.claim_outbox(limit)
            if not rows:
                return 0
            futures = [
                await self.producer.send(r.topic, r.payload, key=r.key.encode()) for r in rows
            ]
            await asyncio.gather(*futures)
            await repo.delete_outbox([r.id for r in rows])
        self.published += len(rows)
        return len(rows)

    async def run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                while await self.drain_once():
                    pass
                backoff = 0.1
            except Exception:
                log.exception("outbox relay failed; retrying in %.1fs", backoff)
                backoff = min(backoff * 2, 30.0)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=backoff if backoff > 0.1 else 1.0)
        with contextlib.suppress(Exception):
            while await self.drain_once():
                pass


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
        topics=[Topic.CLICKS, Topic.ORDERS],
        sessions=sessions,
        offsets=OffsetRepository(consumer_offsets),
        decode=make_decoder(settings),
        handle=service.handle_batch,
        producer=producer,
        after_commit=relay.poke,
    )
