"""Dead letters: what a consumer or the outbox relay could never process, kept with why.

A letter names its source by coordinates, (consumer, source topic, partition, offset); the
outbox relay's letters have partition −1 and the outbox row's id as offset. A letter is
produced, and acknowledged by Kafka, *before* the consumer's offsets (or the relay's delete)
that pass its record are committed: a record is never skipped without its letter. A crash
between the two makes the record fail again after the restart and be dead-lettered again, so
letters are at least once and the coordinates identify one (``alliance dlq list`` and
``replay`` count each once). Within a running process a record is dead-lettered once.

:class:`DlqLimit` keeps a bad deploy from dead-lettering a whole stream: per partition, over a
sliding window of its latest records, a ratio of letters and a run of consecutive letters
(after getsentry/arroyo's ``DlqLimit``; there the ratio counts from the start of the
assignment, here over the last ``window`` records, so that a long good history cannot hide a
new flood of letters).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from shared.events import DeadLetter, encode
from shared.retry import Transient, describe, error_kind

#: a letter is kept under this size (the topic takes 1 MiB): a longer value is truncated
MAX_LETTER_BYTES = 256 * 1024
#: the longest reason and key a letter keeps (characters)
MAX_REASON_CHARS = 2000
MAX_KEY_CHARS = 1000
#: broker and producer errors that mean "this record can never be published", by class name
#: (aiokafka has no class for some codes) and by Kafka error code: corrupt (2), too large
#: (10), batch too large (18), timestamp out of range (32), invalid record (87)
UNPUBLISHABLE_NAMES = frozenset(
    {
        "MessageSizeTooLargeError",
        "RecordTooLargeError",
        "RecordListTooLargeError",
        "InvalidTimestampError",
        "CorruptRecordException",
        "InvalidRecordError",
    }
)
UNPUBLISHABLE_CODES = frozenset({2, 10, 18, 32, 87})


def unpublishable(exc: BaseException) -> bool:
    """True when Kafka refuses this record for what it is (too large, invalid), so that
    sending it again can never succeed."""
    return type(exc).__name__ in UNPUBLISHABLE_NAMES or getattr(exc, "errno", None) in (
        UNPUBLISHABLE_CODES
    )


def letter_for(
    *,
    consumer: str,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    failure: BaseException | tuple[str, str],
    now: datetime,
) -> DeadLetter:
    """The letter of one record; ``failure`` is the exception, or (error kind, reason)."""
    if isinstance(failure, BaseException):
        error, reason = error_kind(failure), describe(failure, MAX_REASON_CHARS)
    else:
        error, reason = failure
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        consumer=consumer,
        reason=reason[:MAX_REASON_CHARS],
        key=key.decode("utf-8", "replace")[:MAX_KEY_CHARS] if key else None,
        value=value.decode("utf-8", "replace"),
        failed_at=now,
        error=error,
        value_bytes=len(value),
    )


def encode_letter(letter: DeadLetter, limit: int = MAX_LETTER_BYTES) -> bytes:
    """The letter as JSON, at most ``limit`` bytes: a value that would not fit is cut (and
    the letter marked ``truncated``; its coordinates still find the original)."""
    data = encode(letter)
    keep = len(letter.value)
    while len(data) > limit and keep > 0:
        # JSON escapes make bytes per character vary: shrink in proportion, with a margin
        keep = int(keep * limit / len(data) * 0.9)
        data = encode(letter.model_copy(update={"value": letter.value[:keep], "truncated": True}))
    return data


async def send_letter(
    producer: AIOKafkaProducer, topic: str, letter: DeadLetter, key: bytes | None
) -> None:
    """Produce ``letter`` to ``topic`` and wait until Kafka acknowledged it. A letter still
    refused as too large (a topic configured smaller) is sent again without its value. Any
    failure raises :class:`~shared.retry.Transient`: a letter that cannot be written is
    retried, never itself dead-lettered."""
    try:
        try:
            await producer.send_and_wait(topic, encode_letter(letter), key=key)
        except Exception as exc:
            if not unpublishable(exc):
                raise
            bare = letter.model_copy(update={"value": "", "truncated": True})
            await producer.send_and_wait(topic, encode(bare), key=key)
    except Exception as exc:
        raise Transient(f"could not produce a dead letter: {describe(exc)}") from exc


Coordinates = tuple[str, str, int, int]


def coordinates(letter: DeadLetter) -> Coordinates:
    """(consumer, source topic, partition, offset): what identifies one letter."""
    return (letter.consumer, letter.source_topic, letter.partition, letter.offset)


def unique_letters(values: Iterable[bytes]) -> list[DeadLetter]:
    """The letters among ``values`` (a dead-letter topic's messages), each once (the first
    of a set with the same coordinates), oldest first. Values that are not letters are
    skipped."""
    seen: dict[Coordinates, DeadLetter] = {}
    for value in values:
        try:
            letter = DeadLetter.model_validate_json(value)
        except ValidationError:
            continue
        seen.setdefault(coordinates(letter), letter)
    return sorted(seen.values(), key=lambda d: (d.failed_at, coordinates(d)))


@dataclass(frozen=True)
class Replayed:
    sent: list[DeadLetter]
    #: truncated letters: the original value is not in the letter, so it cannot be re-fed
    skipped: list[DeadLetter]


async def replay(producer: AIOKafkaProducer, letters: Iterable[DeadLetter]) -> Replayed:
    """Republish each letter's original value to its source topic with its key, in order.
    Safe to repeat: every consumer applies an event once by its natural id (click id, event
    id, store + order + revision), so a replayed record that was applied elsewhere changes
    nothing, and one that still fails is dead-lettered again (at its new offset)."""
    sent: list[DeadLetter] = []
    skipped: list[DeadLetter] = []
    for letter in letters:
        if letter.truncated:
            skipped.append(letter)
            continue
        key = letter.key.encode() if letter.key is not None else None
        await producer.send_and_wait(letter.source_topic, letter.value.encode(), key=key)
        sent.append(letter)
    return Replayed(sent, skipped)


@dataclass(frozen=True)
class DlqLimit:
    """How many dead letters a consumer may write before it stops a partition instead: more
    than ``max_ratio`` of the partition's last ``window`` records (judged once it has had
    that many), or more than ``max_consecutive`` letters in a row. None: no such limit."""

    max_ratio: float | None = 0.5
    max_consecutive: int | None = 50
    window: int = 200


@dataclass
class _Window:
    outcomes: deque[bool]  # the partition's latest records, True: dead-lettered
    dead: int = 0
    consecutive: int = 0

    def copy(self) -> _Window:
        return _Window(deque(self.outcomes, self.outcomes.maxlen), self.dead, self.consecutive)


Partition = tuple[str, int]


@dataclass
class DlqLimitState:
    """The limit's counts per partition (topic, partition), in memory: a restart begins
    afresh. Pure bookkeeping; :meth:`copy` lets a batch try its outcomes and keep them only
    if it commits."""

    limit: DlqLimit
    windows: dict[Partition, _Window] = field(default_factory=dict)

    def _window(self, tp: Partition) -> _Window:
        if tp not in self.windows:
            self.windows[tp] = _Window(deque(maxlen=max(1, self.limit.window)))
        return self.windows[tp]

    def refusal(self, tp: Partition) -> str | None:
        """Why dead-lettering the next record of ``tp`` would pass the limit; None: it may."""
        w = self._window(tp)
        cap = self.limit.max_consecutive
        if cap is not None and w.consecutive + 1 > cap:
            return f"{w.consecutive + 1} dead letters in a row (limit {cap})"
        ratio = self.limit.max_ratio
        size = w.outcomes.maxlen or 1
        full = len(w.outcomes) + 1 >= size
        if ratio is not None and full:
            leaving = len(w.outcomes) == size and w.outcomes[0]
            dead = w.dead + 1 - leaving
            if dead / size > ratio:
                return f"{dead} dead letters in the last {size} records (limit {ratio:.0%})"
        return None

    def record(self, tp: Partition, dead: bool) -> None:
        """One more record of ``tp`` handled: dead-lettered or not."""
        w = self._window(tp)
        if len(w.outcomes) == w.outcomes.maxlen and w.outcomes[0]:
            w.dead -= 1
        w.outcomes.append(dead)
        w.dead += dead
        w.consecutive = w.consecutive + 1 if dead else 0

    def copy(self) -> DlqLimitState:
        return DlqLimitState(self.limit, {tp: w.copy() for tp, w in self.windows.items()})
