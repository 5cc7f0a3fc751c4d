"""The consumer pipeline on real Kafka and PostgreSQL with a handler of its own: a record that
fails alone is dead-lettered once and everything else is applied in order; a transient
failure is retried and never dead-lettered; the dead-letter limit stops a partition."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.attribution.models import consumer_offsets
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.dlq import MAX_LETTER_BYTES, DlqLimit, unique_letters
from shared.events import Topic
from shared.kafka import ConsumerPipeline, PoisonMessage, Received, make_producer, read_topic
from shared.offsets import OffsetRepository
from tests.integration.harness import eventually

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS pipeline_test;
CREATE TABLE IF NOT EXISTS pipeline_test.applied (
    run text NOT NULL, topic text NOT NULL, partition int NOT NULL, off bigint NOT NULL,
    value text NOT NULL, PRIMARY KEY (run, topic, partition, off)
)
"""


@dataclass
class Handler:
    """Writes each record's value; ``boom`` values raise (a bug that meets a record), values
    with a NUL character are refused by PostgreSQL (as the tracker's poison was);
    ``transient`` failures are raised that many times first."""

    run: str
    transient: list[BaseException] = field(default_factory=list)
    calls: int = 0

    async def __call__(self, session: AsyncSession, batch: list[Received[str]]) -> None:
        self.calls += 1
        if self.transient:
            raise self.transient.pop(0)
        for r in batch:
            if r.value.startswith("boom"):
                raise RuntimeError(f"cannot handle {r.value}")
        await session.execute(
            text(
                "INSERT INTO pipeline_test.applied (run, topic, partition, off, value) "
                "SELECT :run, * FROM unnest(CAST(:topics AS text[]), CAST(:parts AS int[]), "
                "CAST(:offs AS bigint[]), CAST(:values AS text[]))"
            ),
            {
                "run": self.run,
                "topics": [r.topic for r in batch],
                "parts": [r.partition for r in batch],
                "offs": [r.offset for r in batch],
                "values": [r.value for r in batch],
            },
        )


def decode(_: str, raw: bytes) -> str:
    if raw.startswith(b"!"):
        raise PoisonMessage("undecodable")
    return raw.decode()


@dataclass
class Harness:
    settings: Settings
    engine: AsyncEngine
    run: str
    topic: str

    @property
    def dead_letters(self) -> str:
        return self.settings.topic(Topic.DEAD_LETTERS)

    async def produce(self, values: list[tuple[int, bytes]]) -> None:
        producer = make_producer(self.settings.kafka)
        await producer.start()
        try:
            for partition, value in values:
                await producer.send_and_wait(self.topic, value, partition=partition)
        finally:
            await producer.stop()

    def pipeline(
        self,
        handler: Handler,
        *,
        limit: DlqLimit | None = None,
        batch_size: int = 1000,
        decoder: Callable[[str, bytes], str] = decode,
    ) -> ConsumerPipeline[str]:
        return ConsumerPipeline(
            name=self.run,
            kafka=self.settings.kafka,
            topics=[self.topic],
            group_id=self.run,
            sessions=make_sessions(self.engine),
            offsets=OffsetRepository(consumer_offsets),
            decode=decoder,
            handle=handler,
            producer=make_producer(self.settings.kafka),
            dead_letter_topic=self.dead_letters,
            batch_size=batch_size,
            batch_ms=50,
            dlq_limit=limit,
            retry_cap_s=0.5,
        )

    async def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` about this run (``:run``)."""
        async with self.engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(text(sql), {"run": self.run})]

    async def applied(self) -> list[tuple[int, int, str]]:
        rows = await self._rows(
            "SELECT partition, off, value FROM pipeline_test.applied WHERE run = :run "
            "ORDER BY partition, off"
        )
        return [(p, o, v) for p, o, v in rows]

    async def stored(self) -> dict[int, int]:
        rows = await self._rows(
            "SELECT partition, next_offset FROM attribution.consumer_offsets WHERE consumer = :run"
        )
        return {p: o for p, o in rows}

    async def letters(self) -> list[dict[str, Any]]:
        values = await read_topic(self.settings.kafka, self.dead_letters)
        raw = [v for v in values if f'"consumer":"{self.run}"'.encode() in v]
        return [d.model_dump() for d in unique_letters(raw)] + [
            {"copies": len(raw)}  # letters written, counting copies
        ]


@asynccontextmanager
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    engine = make_engine(settings.database_url, pool_size=2)
    async with engine.begin() as conn:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                await conn.execute(text(statement))
    try:
        yield Harness(settings, engine, f"iso-{uuid.uuid4().hex[:8]}", settings.topic("clicks"))
    finally:
        await engine.dispose()


@asynccontextmanager
async def consuming(pipeline: ConsumerPipeline[str]) -> AsyncIterator[None]:
    await pipeline.producer.start()
    await pipeline.start()
    task = asyncio.create_task(pipeline.run())
    try:
        yield
    finally:
        pipeline.stop()
        await asyncio.wait_for(task, 30)
        await pipeline.producer.stop()


async def reached(h: Harness, want: dict[int, int]) -> bool | None:
    got = await h.stored()
    # a poll: stored offsets only grow, and each test asserts what it applied
    return True if all(got.get(p, 0) >= o for p, o in want.items()) else None


class TestBisection:
    async def test_records_that_fail_alone_are_dead_lettered_once_and_the_rest_applied_in_order(
        self, settings: Settings
    ) -> None:
        async with harness(settings) as h:
            values = [f"v{n}".encode() for n in range(300)]
            values[17] = b"boom-17"  # the handler raises
            values[18] = b"!undecodable"  # the decoder refuses
            values[150] = b"nul-\x00-150"  # PostgreSQL refuses
            values[299] = b"boom-299"
            await h.produce([(0, v) for v in values] + [(1, b"other")])
            handler = Handler(h.run)
            pipeline = h.pipeline(handler)
            async with consuming(pipeline):
                await eventually(lambda: reached(h, {0: 300, 1: 1}), timeout_s=60)
            applied = await h.applied()
            letters = await h.letters()
        bad = {17, 18, 150, 299}
        assert applied == [
            *[(0, n, f"v{n}") for n in range(300) if n not in bad],
            (1, 0, "other"),
        ]
        *found, copies = letters
        unique = sorted(found, key=lambda d: d["offset"])  # written in the order found
        assert [(d["partition"], d["offset"], d["error"]) for d in unique] == [
            (0, 17, "RuntimeError"),
            (0, 18, "PoisonMessage"),
            (0, 150, "CharacterNotInRepertoireError"),
            (0, 299, "RuntimeError"),
        ]
        assert copies == {"copies": 4}  # each once
        assert unique[0]["reason"] == "RuntimeError: cannot handle boom-17"
        assert "0x00" in unique[2]["reason"]
        assert "INSERT" not in unique[2]["reason"]  # the driver's words, not the statement
        assert unique[2]["value"] == "nul-\x00-150"
        assert unique[2]["source_topic"] == h.topic
        assert pipeline.processed == 297
        assert pipeline.dead_lettered == 4
        assert pipeline.letters == {
            "RuntimeError": 2,
            "PoisonMessage": 1,
            "CharacterNotInRepertoireError": 1,
        }

    async def test_a_record_that_fails_only_with_another_is_applied(
        self, settings: Settings
    ) -> None:
        """Bisection separates records that conflict in one statement; none is dead-lettered."""
        async with harness(settings) as h:
            await h.produce([(0, b"same"), (0, b"same")])

            def same_key(_: str, raw: bytes) -> str:
                return raw.decode()

            class Conflicting(Handler):
                async def __call__(self, session: AsyncSession, batch: list[Received[str]]) -> None:
                    if len(batch) > 1:
                        raise RuntimeError("ON CONFLICT DO UPDATE cannot affect a row twice")
                    await super().__call__(session, batch)

            pipeline = h.pipeline(Conflicting(h.run), decoder=same_key)
            async with consuming(pipeline):
                await eventually(lambda: reached(h, {0: 2}), timeout_s=30)
            assert [v for _, _, v in await h.applied()] == ["same", "same"]
            assert pipeline.dead_lettered == 0


class TestTransientFailures:
    @pytest.mark.parametrize(
        "failure",
        [
            ConnectionRefusedError(111, "Connect call failed"),
            TimeoutError(),
        ],
        ids=["connection_refused", "timeout"],
    )
    async def test_a_transient_failure_is_retried_and_never_dead_lettered(
        self, settings: Settings, failure: BaseException
    ) -> None:
        async with harness(settings) as h:
            await h.produce([(0, f"v{n}".encode()) for n in range(5)])
            handler = Handler(h.run, transient=[failure, failure, failure])
            pipeline = h.pipeline(handler)
            async with consuming(pipeline):
                await eventually(lambda: reached(h, {0: 5}), timeout_s=30)
            assert [v for _, _, v in await h.applied()] == [f"v{n}" for n in range(5)]
            assert pipeline.dead_lettered == 0
            assert pipeline.retries == 3


class TestDeadLetterLimit:
    @pytest.mark.allow_logged_errors  # the stop is logged as an error, on purpose
    async def test_consecutive_letters_past_the_limit_stop_that_partition_only(
        self, settings: Settings
    ) -> None:
        async with harness(settings) as h:
            # one record per batch: a per-batch ratio would never see more than one
            await h.produce(
                [(0, b"v0"), *[(0, b"!bad") for _ in range(6)], (0, b"v7")]
                + [(1, f"w{n}".encode()) for n in range(5)]
            )
            limit = DlqLimit(max_ratio=None, max_consecutive=3)
            pipeline = h.pipeline(Handler(h.run), limit=limit, batch_size=1)
            async with consuming(pipeline):
                await eventually(lambda: reached(h, {0: 4, 1: 5}), timeout_s=30)
                await asyncio.sleep(0.5)  # nothing more of partition 0 comes
                halted = pipeline.halted()
            stored = await h.stored()
            letters = await h.letters()
        assert stored[0] == 4  # stopped before the 4th letter in a row: offset 4
        assert [(d["partition"], d["offset"]) for d in letters[:-1]] == [(0, 1), (0, 2), (0, 3)]
        assert halted == (
            f"consumer {h.run} stopped {h.topic}[0] at offset 4: 4 dead letters in a row (limit 3)"
        )
        assert [v for p, _, v in await h.applied() if p == 1] == [f"w{n}" for n in range(5)]

    @pytest.mark.allow_logged_errors
    async def test_the_ratio_is_judged_over_a_sliding_window(self, settings: Settings) -> None:
        async with harness(settings) as h:
            # 1 bad in 2 over a window of 10 with a limit of 40%: the window is full at the
            # 10th record; the 5th letter there would make 5 of 10
            values = [b"!bad" if n % 2 else f"v{n}".encode() for n in range(20)]
            await h.produce([(0, v) for v in values])
            limit = DlqLimit(max_ratio=0.4, max_consecutive=None, window=10)
            pipeline = h.pipeline(Handler(h.run), limit=limit, batch_size=3)
            async with consuming(pipeline):
                await eventually(lambda: reached(h, {0: 9}), timeout_s=30)
                await asyncio.sleep(0.5)
            assert (await h.stored())[0] == 9
            assert "5 dead letters in the last 10 records (limit 40%)" in (pipeline.halted() or "")


class TestLetterSize:
    async def test_a_dead_letter_too_large_for_the_topic_is_stored_truncated(
        self, settings: Settings
    ) -> None:
        async with harness(settings) as h:
            big = b"boom" + b"\x01" * 900_000  # JSON escapes make it 5.4 MB as a letter
            await h.produce([(0, big), (0, b"after")])
            pipeline = h.pipeline(Handler(h.run))
            async with consuming(pipeline):
                await eventually(lambda: reached(h, {0: 2}), timeout_s=30)
            raw = [
                v for v in await read_topic(settings.kafka, h.dead_letters) if h.run.encode() in v
            ]
            assert [v for _, _, v in await h.applied()] == ["after"]
        assert len(raw) == 1
        assert len(raw[0]) <= MAX_LETTER_BYTES
        (letter,) = unique_letters(raw)
        assert letter.truncated
        assert letter.value_bytes == len(big)
        assert (letter.partition, letter.offset, letter.source_topic) == (0, 0, h.topic)
        assert letter.value.startswith("boom\x01")


class TestRebalance:
    async def test_workers_joining_and_leaving_mid_batch_apply_every_record_once_and_letter_none(
        self, settings: Settings
    ) -> None:
        """Two workers of one group: the second joins while the first is in a batch, then the
        first leaves. Handlers read ``progress`` as attribution's does (which once raised for
        a partition revoked mid-batch, and the records were dead-lettered as their fault)."""
        async with harness(settings) as h:
            partitions = settings.topic_partitions
            total = 400 * partitions
            await h.produce([(n % partitions, f"r{n}".encode()) for n in range(total)])

            class Slow(Handler):
                progress: Callable[[], object] = staticmethod(lambda: None)

                async def __call__(self, session: AsyncSession, batch: list[Received[str]]) -> None:
                    await asyncio.sleep(0.1)  # batches are in flight when the group changes
                    self.progress()  # as attribution does, after its first statements
                    await super().__call__(session, batch)

            workers = []
            for _ in range(2):
                handler = Slow(h.run)
                pipeline = h.pipeline(handler, batch_size=20)
                handler.progress = lambda p=pipeline: p.progress(h.topic)  # type: ignore[misc]
                workers.append(pipeline)
            first, second = workers
            async with consuming(first):
                await eventually(lambda: reached(h, {0: 20}), timeout_s=60)
                # the second joins while the first is in a batch
                await second.producer.start()
                await second.start()
                joined = asyncio.create_task(second.run())
                await eventually(lambda: reached(h, {p: 200 for p in range(partitions)}), 60)
            try:  # the first has left; the second drains the rest
                await eventually(lambda: reached(h, {p: 400 for p in range(partitions)}), 90)
            finally:
                second.stop()
                await asyncio.wait_for(joined, 30)
                await second.producer.stop()
            applied = await h.applied()
            letters = await h.letters()
        assert len(applied) == total
        assert sorted(v for _, _, v in applied) == sorted(f"r{n}" for n in range(total))
        assert letters == [{"copies": 0}]
        assert first.dead_lettered == second.dead_lettered == 0
