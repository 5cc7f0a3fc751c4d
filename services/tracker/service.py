"""Tracker use cases: turn link visits and storefront posts into events on Kafka."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from services.tracker.links import Link, LinkSigner
from services.tracker.schemas import EventResult
from shared.clock import Clock
from shared.config import Settings
from shared.events import Click, OrderEvent, OrderPlaced, Topic, encode, order_event_adapter
from shared.ids import new_id


def append_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` added to its query string (existing parameters kept)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class TrackerService:
    settings: Settings
    signer: LinkSigner
    producer: AIOKafkaProducer
    clock: Clock

    def landing_url(self, link: Link) -> str:
        template = (
            self.settings.landing_url_template
            if link.product_id
            else self.settings.store_url_template
        )
        return template.format(store_id=link.store_id, product_id=link.product_id or "")

    def link_url(self, base_url: str, code: str) -> str:
        return f"{base_url.rstrip('/')}/r/{code}"

    async def record_click(
        self, link: Link, code: str, visitor_id: str, ip: str | None, user_agent: str | None
    ) -> Click:
        """Publish the click and return once Kafka acknowledged it (acks=all)."""
        now = self.clock.now()
        click = Click(
            event_id=new_id(),
            occurred_at=now,
            received_at=now,
            affiliate_id=link.affiliate_id,
            store_id=link.store_id,
            product_id=link.product_id,
            sub_id=link.sub_id,
            link_code=code,
            visitor_id=visitor_id,
            ip=ip,
            user_agent=user_agent[:512] if user_agent else None,
        )
        await self.producer.send_and_wait(
            self.settings.topic(Topic.CLICKS), encode(click), key=visitor_id.encode()
        )
        return click

    def validate_events(
        self, store_id: str, raw_events: list[dict[str, Any]]
    ) -> tuple[list[OrderEvent], list[EventResult]]:
        """Validate each event on its own; a bad one never drops its valid neighbours."""
        valid: list[OrderEvent] = []
        results: list[EventResult] = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_events):
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            try:
                event = order_event_adapter.validate_python({**raw, "store_id": store_id})
            except ValidationError as exc:
                errors = [
                    {"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]}
                    for e in exc.errors(include_url=False, include_input=False)
                ]
                results.append(
                    EventResult(
                        index=index, event_id=_str(event_id), status="rejected", errors=errors
                    )
                )
                continue
            if event.event_id in seen:
                results.append(
                    EventResult(index=index, event_id=event.event_id, status="duplicate")
                )
                continue
            seen.add(event.event_id)
            valid.append(event)
            results.append(EventResult(index=index, event_id=event.event_id, status="accepted"))
        return valid, results

    async def publish_events(self, events: list[OrderEvent]) -> None:
        """Send every event and return once Kafka acknowledged all of them."""
        topic = self.settings.topic(Topic.ORDERS)
        futures = []
        for event in events:
            # order_placed goes with the visitor's clicks (the attribution join); the rest of an
            # order's life is keyed by order id.
            key = event.visitor_id if isinstance(event, OrderPlaced) else event.order_id
            futures.append(await self.producer.send(topic, encode(event), key=key.encode()))
        await asyncio.gather(*futures)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
