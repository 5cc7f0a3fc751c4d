"""A consumer's decoding: each topic's messages read by that topic's function, a skipped event
kept (its offset moves on), and every message that can never be read dead with its reason —
the message of a topic nobody routes, one that fails validation, an empty one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord
from pydantic import BaseModel

from services.attribution.consumer import CONSUMER
from shared.config import Settings
from shared.events import (
    AffiliateEntry,
    Click,
    OrderItem,
    OrderPlaced,
    OrderRefunded,
    RefundItem,
    StoreEntry,
    Topic,
    encode,
)
from shared.kafka import (
    PoisonMessage,
    decode_record,
    route_decoder,
    service_pipeline,
)

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLICK = Click(
    event_id="c1",
    occurred_at=T,
    received_at=T,
    affiliate_id="a1",
    store_id="s1",
    link_code="k1.x.y",
    visitor_id="v1",
)
PLACED = OrderPlaced(
    event_id="e1",
    occurred_at=T,
    store_id="s1",
    order_id="o1",
    visitor_id="v1",
    currency="EUR",
    items=[OrderItem(product_id="p1", quantity=1, unit_price=Decimal("10.00"))],
)
REFUNDED = OrderRefunded(
    event_id="e2",
    occurred_at=T,
    store_id="s1",
    order_id="o1",
    refund_id="r1",
    items=[RefundItem(product_id="p1", amount=Decimal("10.00"))],
)
STORE = StoreEntry(
    event_id="d1",
    store_id="s1",
    name="Store",
    landing_url_template="https://s1.example/p/{product_id}",
    secret_versions=[1],
    in_program=True,
    key_hash="h",
    updated_at=T,
    attribution_window_days=7,
)
AFFILIATE = AffiliateEntry(event_id="d2", affiliate_id="a1", name="A", key_hash="h", updated_at=T)

#: the attribution consumer's routes, on a deployment with a topic prefix
PREFIX = "test-"
#: what the pipeline is built with but never uses here (nothing is consumed)
NOTHING: Any = None

ROUTES = CONSUMER.routes
DECODE = route_decoder({f"{PREFIX}{t}": read for t, read in ROUTES.items()})


def record(topic: str, value: bytes | None, offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=2,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=b"v1",
        value=cast(bytes, value),  # Kafka delivers a tombstone as None
        checksum=None,
        serialized_key_size=2,
        serialized_value_size=len(value or b""),
        headers=(),
    )


def value_of(topic: Topic, event: BaseModel) -> object:
    unit = decode_record(DECODE, record(f"{PREFIX}{topic}", encode(event)))
    assert unit.received is not None, unit.reason
    return unit.received.value


class TestRouting:
    def test_each_topic_is_read_by_its_own_function(self) -> None:
        assert value_of(Topic.CLICKS, CLICK) == CLICK
        assert value_of(Topic.ORDERS, PLACED) == PLACED
        assert value_of(Topic.DIRECTORY, STORE) == STORE

    def test_a_decoded_record_keeps_where_it_came_from_and_its_raw_bytes(self) -> None:
        raw = encode(CLICK)
        unit = decode_record(DECODE, record(f"{PREFIX}{Topic.CLICKS}", raw, offset=41))
        assert unit.received is not None
        assert (unit.received.topic, unit.received.partition, unit.received.offset) == (
            f"{PREFIX}{Topic.CLICKS}",
            2,
            41,
        )
        assert (unit.received.key, unit.received.raw) == (b"v1", raw)

    def test_the_same_payload_on_another_topic_is_read_by_that_topic_s_function(self) -> None:
        # a click's JSON on the orders topic is not an order event: dead, not a click
        unit = decode_record(DECODE, record(f"{PREFIX}{Topic.ORDERS}", encode(CLICK)))
        assert unit.dead
        assert unit.error == "ValidationError"


class TestSkip:
    def test_a_function_that_returns_none_skips_the_event_without_killing_it(self) -> None:
        assert value_of(Topic.ORDERS, REFUNDED) is None  # money, not attribution
        assert value_of(Topic.DIRECTORY, AFFILIATE) is None  # no attribution window

    def test_a_skipped_record_is_not_dead(self) -> None:
        unit = decode_record(DECODE, record(f"{PREFIX}{Topic.ORDERS}", encode(REFUNDED)))
        assert not unit.dead
        assert unit.error == ""


class TestPoison:
    def test_a_topic_without_a_route_is_poison(self) -> None:
        unit = decode_record(DECODE, record(f"{PREFIX}{Topic.PAGE_VIEWS}", encode(CLICK)))
        assert unit.dead
        assert unit.error == "PoisonMessage"
        assert unit.reason == f"PoisonMessage: unexpected topic {PREFIX}{Topic.PAGE_VIEWS}"

    def test_a_topic_routed_without_the_deployment_s_prefix_is_unknown(self) -> None:
        unit = decode_record(DECODE, record(str(Topic.CLICKS), encode(CLICK)))
        assert unit.error == "PoisonMessage"

    def test_an_invalid_payload_is_dead_with_the_validation_error(self) -> None:
        unit = decode_record(DECODE, record(f"{PREFIX}{Topic.CLICKS}", b'{"type": "click"}'))
        assert unit.dead
        assert unit.error == "ValidationError"
        assert unit.reason.startswith("ValidationError: ")
        assert "event_id" in unit.reason

    def test_bytes_that_are_not_json_are_dead(self) -> None:
        unit = decode_record(DECODE, record(f"{PREFIX}{Topic.ORDERS}", b"\xff not json"))
        assert (unit.dead, unit.error) == (True, "ValidationError")

    def test_an_empty_message_is_poison(self) -> None:
        unit = decode_record(DECODE, record(f"{PREFIX}{Topic.CLICKS}", None))
        assert (unit.error, unit.reason) == ("PoisonMessage", "PoisonMessage: empty message")

    def test_any_exception_of_a_function_makes_the_record_dead_with_its_kind(self) -> None:
        def broken(raw: bytes) -> object:
            raise KeyError("surprise")

        unit = decode_record(route_decoder({"t": broken}), record("t", b"{}"))
        assert (unit.dead, unit.error) == (True, "KeyError")

    def test_the_decoder_itself_raises_poison_for_an_unknown_topic(self) -> None:
        with pytest.raises(PoisonMessage, match="unexpected topic elsewhere"):
            DECODE("elsewhere", b"{}")


class TestServicePipeline:
    async def test_routes_name_the_topics_with_the_deployment_s_prefix(self) -> None:
        settings = Settings(env="dev", topic_prefix=PREFIX)
        pipeline = service_pipeline(
            settings,
            CONSUMER,
            sessions=NOTHING,  # never used: nothing is consumed
            handle=NOTHING,
            producer=NOTHING,
        )
        assert pipeline.topics == [
            f"{PREFIX}{t}" for t in (Topic.CLICKS, Topic.ORDERS, Topic.DIRECTORY, Topic.PRIVACY)
        ]
        assert pipeline.group_id == f"{PREFIX}alliance-attribution"
        assert pipeline.decode(f"{PREFIX}{Topic.CLICKS}", encode(CLICK)) == CLICK
        with pytest.raises(PoisonMessage):
            pipeline.decode(str(Topic.CLICKS), encode(CLICK))
