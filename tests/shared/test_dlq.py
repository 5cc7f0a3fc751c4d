"""Dead letters: the limit per partition over a sliding window, letters that fit their topic,
one letter per source record however often it was written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.dlq import (
    MAX_LETTER_BYTES,
    DlqLimit,
    DlqLimitState,
    encode_letter,
    letter_for,
    unique_letters,
)
from shared.events import DeadLetter, encode

TP = ("orders", 0)
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def feed(state: DlqLimitState, outcomes: str, tp: tuple[str, int] = TP) -> str | None:
    """Feed ``outcomes`` ("." applied, "x" dead) as a consumer does; returns the refusal of
    the first letter refused (None: all accepted)."""
    for o in outcomes:
        if o == "x" and (why := state.refusal(tp)) is not None:
            return why
        state.record(tp, o == "x")
    return None


class TestDlqLimit:
    def test_consecutive_letters_past_the_count_are_refused(self) -> None:
        state = DlqLimitState(DlqLimit(max_ratio=None, max_consecutive=3))
        assert feed(state, "xxx") is None
        assert feed(state, "x") == "4 dead letters in a row (limit 3)"

    def test_an_applied_record_ends_a_run_of_letters(self) -> None:
        state = DlqLimitState(DlqLimit(max_ratio=None, max_consecutive=3))
        assert feed(state, "xxx.xxx.xxx") is None

    def test_the_ratio_is_judged_only_once_the_window_is_full(self) -> None:
        """A quiet partition's handful of letters never trips it."""
        state = DlqLimitState(DlqLimit(max_ratio=0.5, max_consecutive=None, window=10))
        assert feed(state, "xxxxxxxxx") is None  # 9 of 9, but the window holds 10
        assert feed(state, "x") == "10 dead letters in the last 10 records (limit 50%)"

    def test_the_ratio_is_taken_over_the_latest_records_only(self) -> None:
        state = DlqLimitState(DlqLimit(max_ratio=0.5, max_consecutive=None, window=10))
        assert feed(state, "xxxxx.....") is None  # 5 of 10: at the limit, not over
        assert feed(state, "..........") is None  # the letters left the window
        assert feed(state, "x.x.x.x.x.") is None
        assert feed(state, "x") is None  # it pushes the oldest letter out: still 5 of 10
        assert feed(state, "x") == "6 dead letters in the last 10 records (limit 50%)"

    def test_one_record_batches_trip_it_as_well_as_large_ones(self) -> None:
        """The state outlives batches: today's per-batch ratio never saw small batches."""
        state = DlqLimitState(DlqLimit(max_ratio=None, max_consecutive=5))
        for _ in range(5):
            assert feed(state, "x") is None
        assert feed(state, "x") is not None

    def test_partitions_are_counted_apart(self) -> None:
        state = DlqLimitState(DlqLimit(max_ratio=None, max_consecutive=2))
        assert feed(state, "xx", ("orders", 0)) is None
        assert feed(state, "xx", ("orders", 1)) is None
        assert feed(state, "xx", ("clicks", 0)) is None
        assert feed(state, "x", ("orders", 1)) is not None

    def test_a_copy_is_a_trial_that_leaves_the_original_alone(self) -> None:
        state = DlqLimitState(DlqLimit(max_ratio=None, max_consecutive=2))
        feed(state, "xx")
        trial = state.copy()
        trial.record(TP, False)
        assert trial.refusal(TP) is None
        assert state.refusal(TP) is not None


def letter(value: str, offset: int = 7, failed_at: datetime = NOW) -> DeadLetter:
    return letter_for(
        consumer="attribution",
        source_topic="orders",
        partition=2,
        offset=offset,
        key=b"v-1",
        value=value.encode(),
        failure=OverflowError("date value out of range"),
        now=failed_at,
    )


class TestLetterSize:
    @pytest.mark.parametrize(
        "value",
        ["a" * 2_000_000, "\x01" * 1_000_000, "é" * 900_000],
        ids=["ascii", "escaped_control_characters", "two_byte_characters"],
    )
    def test_a_letter_too_large_for_the_topic_is_truncated_with_its_coordinates(
        self, value: str
    ) -> None:
        data = encode_letter(letter(value))
        assert len(data) <= MAX_LETTER_BYTES
        got = DeadLetter.model_validate_json(data)
        assert got.truncated
        assert value.startswith(got.value)
        assert len(got.value) > 1000
        assert got.value_bytes == len(value.encode())
        assert (got.consumer, got.source_topic, got.partition, got.offset) == (
            "attribution",
            "orders",
            2,
            7,
        )
        assert got.reason == "OverflowError: date value out of range"
        assert got.error == "OverflowError"

    def test_a_small_letter_is_kept_whole(self) -> None:
        data = encode_letter(letter('{"type": "order_placed"}'))
        assert DeadLetter.model_validate_json(data) == letter('{"type": "order_placed"}')


class TestUniqueLetters:
    def test_a_letter_written_twice_counts_once_and_letters_come_oldest_first(self) -> None:
        first = letter("a", offset=1, failed_at=NOW)
        again = letter("a", offset=1, failed_at=NOW + timedelta(minutes=1))  # after a crash
        other = letter("b", offset=2, failed_at=NOW - timedelta(minutes=1))
        values = [encode(first), encode(again), b"not a letter", encode(other)]
        assert unique_letters(values) == [other, first]
