"""Reading a test's topics back, to see exactly what a service wrote."""

from __future__ import annotations

from typing import Any

import orjson

from shared.config import KafkaConnection
from shared.kafka import read_topic as read_raw


async def read_topic(kafka: KafkaConnection, topic: str) -> list[dict[str, Any]]:
    """Every message currently on ``topic`` (all partitions), decoded as JSON."""
    return [orjson.loads(v) for v in await read_raw(kafka, topic)]
