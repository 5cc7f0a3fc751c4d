"""Sealed tokens: what was sealed opens unchanged; nothing else opens, and nothing shows."""

from __future__ import annotations

import base64
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.sealed import MAX_TOKEN_CHARS, Sealer

KEY = "a-deployment-secret-key-of-32-characters"
sealer = Sealer(KEY, "camp-cursor")
_URLSAFE = re.compile(r"[A-Za-z0-9_\-]+")


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TestRoundTrip:
    @given(st.binary(max_size=600))
    def test_what_is_sealed_opens_unchanged(self, plaintext: bytes) -> None:
        token = sealer.seal(plaintext)
        assert _URLSAFE.fullmatch(token)
        assert sealer.open(token) == plaintext

    def test_another_sealer_of_the_same_key_and_purpose_opens_it(self) -> None:
        assert Sealer(KEY, "camp-cursor").open(sealer.seal(b"page 2")) == b"page 2"

    def test_each_seal_is_a_fresh_token(self) -> None:
        tokens = {sealer.seal(b"the same") for _ in range(50)}
        assert len(tokens) == 50  # a random nonce each: equal plaintexts do not show
        assert all(sealer.open(t) == b"the same" for t in tokens)


class TestNothingElseOpens:
    @settings(max_examples=60)
    @given(st.binary(min_size=0, max_size=80), st.data())
    def test_any_bit_flip_is_refused(self, plaintext: bytes, data: st.DataObject) -> None:
        raw = bytearray(_raw(sealer.seal(plaintext)))
        bit = data.draw(st.integers(0, len(raw) * 8 - 1))
        raw[bit // 8] ^= 1 << (bit % 8)
        assert sealer.open(_text(bytes(raw))) is None

    def test_every_single_bit_flip_of_one_token_is_refused(self) -> None:
        raw = _raw(sealer.seal(b'["2026-11-28T10:00:00+00:00","52.5","0.12","acme","p-1"]'))
        for bit in range(len(raw) * 8):
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            assert sealer.open(_text(bytes(flipped))) is None, bit

    def test_another_key_is_refused(self) -> None:
        token = sealer.seal(b"cursor")
        assert Sealer("another-deployment-secret-key-of-32ch", "camp-cursor").open(token) is None

    def test_another_purpose_is_refused(self) -> None:
        token = sealer.seal(b"cursor")
        assert Sealer(KEY, "another-purpose").open(token) is None

    @given(st.binary(max_size=80), st.data())
    def test_a_truncated_or_extended_token_is_refused(
        self, plaintext: bytes, data: st.DataObject
    ) -> None:
        token = sealer.seal(plaintext)
        cut = data.draw(st.integers(0, len(token) - 1))
        assert sealer.open(token[:cut]) is None
        raw = _raw(token)
        assert sealer.open(_text(raw[:-1])) is None
        assert sealer.open(_text(raw + b"\x00")) is None

    @given(st.text(max_size=200))
    def test_garbage_is_refused_never_raises(self, garbage: str) -> None:
        assert sealer.open(garbage) is None

    @given(st.binary(min_size=28, max_size=200))
    def test_random_bytes_of_a_plausible_length_are_refused(self, raw: bytes) -> None:
        assert sealer.open(_text(raw)) is None

    @pytest.mark.parametrize(
        "token",
        [
            None,
            "",
            "=",
            "====",
            "not base64 at all!",
            "A" * (MAX_TOKEN_CHARS + 1),
            "é" * 40,
            # what the cursors were before sealing: base64 JSON
            "WyIyMDI2LTExLTI4VDEwOjAwOjAwWiIsIjUyLjUiXQ",
        ],
    )
    def test_malformed_is_refused(self, token: str | None) -> None:
        assert sealer.open(token) is None

    def test_a_non_canonical_spelling_is_refused(self) -> None:
        token = sealer.seal(b"cursor")
        assert sealer.open(token) == b"cursor"
        assert sealer.open(token + "==") is None  # padded
        assert sealer.open(token[:10] + "\n" + token[10:]) is None  # a stray character


class TestNothingShows:
    @given(
        st.decimals(min_value=0, max_value=10**6, places=4),
        st.decimals(min_value=0, max_value=1, places=4),
    )
    def test_the_score_and_rate_do_not_show(self, score: Decimal, rate: Decimal) -> None:
        numbers = f'"{score}","{rate}"'.encode()
        assert len(numbers) >= 17  # four places each: long enough that chance cannot match
        plaintext = b'["2026-11-28T10:00:00+00:00",' + numbers + b',"acme","lamp-1"]'
        token = sealer.seal(plaintext)
        decoded = _raw(token)
        # not in the clear
        for part in (numbers, b"acme", b"lamp-1", b"2026-11-28"):
            assert part not in decoded
        # nor base64 of it, at any of the three alignments
        for shift in range(3):
            encoded = _text(b"\x00" * shift + numbers)[4:-4]
            assert encoded not in token
            assert _text(b"\x00" * shift + plaintext)[4:-4] not in token

    def test_the_token_is_as_long_as_the_plaintext_plus_a_fixed_overhead(self) -> None:
        # only the length shows: 12 bytes of nonce, 16 of tag
        assert len(_raw(sealer.seal(b"x" * 100))) == 100 + 28


def test_a_sealer_needs_a_purpose() -> None:
    with pytest.raises(ValueError, match="purpose"):
        Sealer(KEY, "")
