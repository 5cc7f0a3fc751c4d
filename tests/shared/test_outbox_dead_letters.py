"""The outbox relay with rows Kafka refuses: the row is dead-lettered and the others go on; a
transient failure deletes nothing and is retried (the database and Kafka are in-memory fakes
here; the integration tests run the relay on the real ones)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from shared.dlq import MAX_LETTER_BYTES
from shared.events import DeadLetter
from shared.outbox import OutboxRelay, OutboxRepository, OutboxRow

LIMIT = 1024 * 1024


class FakeSession:
    @asynccontextmanager
    async def begin(self) -> AsyncIterator[None]:
        yield


@asynccontextmanager
async def sessions() -> AsyncIterator[FakeSession]:
    yield FakeSession()


class MemoryOutbox(OutboxRepository):
    def __init__(self, rows: list[OutboxRow]) -> None:
        self.rows = rows

    async def claim(self, session: Any, limit: int) -> list[OutboxRow]:
        return self.rows[:limit]

    async def delete(self, session: Any, ids: list[int]) -> None:
        self.rows = [r for r in self.rows if r.id not in ids]


class FakeProducer:
    """Refuses values over 1 MiB at once, as aiokafka does; ``broker`` maps a value to the
    error the broker answers for it."""

    def __init__(self, broker: dict[bytes, BaseException] | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.broker = broker or {}

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        if len(value) > LIMIT:
            raise MessageSizeTooLargeError(f"The message is {len(value)} bytes")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if value in self.broker:
            future.set_exception(self.broker[value])
        else:
            self.sent.append((topic, value, key))
            future.set_result(None)
        return future

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await (await self.send(topic, value, key))


def relay(producer: FakeProducer, outbox: MemoryOutbox) -> OutboxRelay:
    return OutboxRelay(
        cast(Any, sessions),
        cast(Any, producer),
        outbox,
        name="attribution-outbox",
        dead_letter_topic="t-dead-letters",
    )


def row(n: int, payload: bytes) -> OutboxRow:
    return OutboxRow(n, "t-attributions", f"s:o{n}", payload)


class TestUnpublishableRows:
    async def test_a_row_too_large_to_publish_is_dead_lettered_and_the_others_published(
        self,
    ) -> None:
        big = b'{"order": "' + b"x" * (LIMIT + 10) + b'"}'
        outbox = MemoryOutbox([row(1, b"a"), row(2, big), row(3, b"c")])
        producer = FakeProducer()
        r = relay(producer, outbox)
        assert await r.drain_once() == 3
        assert outbox.rows == []
        published = [(t, v) for t, v, _ in producer.sent if t == "t-attributions"]
        assert published == [("t-attributions", b"a"), ("t-attributions", b"c")]
        (letter_bytes,) = [v for t, v, _ in producer.sent if t == "t-dead-letters"]
        assert len(letter_bytes) <= MAX_LETTER_BYTES
        letter = DeadLetter.model_validate_json(letter_bytes)
        assert (letter.consumer, letter.source_topic, letter.partition, letter.offset) == (
            "attribution-outbox",
            "t-attributions",
            -1,
            2,
        )
        assert letter.error == "MessageSizeTooLargeError"
        assert letter.truncated
        assert letter.key == "s:o2"
        assert letter.value_bytes == len(big)
        assert (r.published, r.dead_lettered, dict(r.letters)) == (
            2,
            1,
            {"MessageSizeTooLargeError": 1},
        )

    async def test_a_row_the_broker_refuses_as_invalid_is_dead_lettered(self) -> None:
        outbox = MemoryOutbox([row(1, b"refused"), row(2, b"b")])
        producer = FakeProducer({b"refused": MessageSizeTooLargeError("broker: too large")})
        r = relay(producer, outbox)
        assert await r.drain_once() == 2
        assert outbox.rows == []
        assert [v for t, v, _ in producer.sent if t == "t-attributions"] == [b"b"]
        assert r.dead_lettered == 1


class TestTransientFailures:
    async def test_a_transient_failure_deletes_nothing_and_letters_nothing(self) -> None:
        rows = [row(1, b"a"), row(2, b"slow"), row(3, b"c")]
        outbox = MemoryOutbox(list(rows))
        producer = FakeProducer({b"slow": KafkaTimeoutError()})
        r = relay(producer, outbox)
        with pytest.raises(KafkaTimeoutError):
            await r.drain_once()
        assert outbox.rows == rows  # all sent again next time: consumers deduplicate
        assert not [t for t, _, _ in producer.sent if t == "t-dead-letters"]
        producer.broker.clear()
        assert await r.drain_once() == 3
        assert outbox.rows == []
