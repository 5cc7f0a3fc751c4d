"""The visitor cookie cannot be forged: only ids the tracker sealed open to a visitor."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from shared.ids import new_id
from shared.secrets import webhook_secret
from shared.visitors import MAX_COOKIE_CHARS, VisitorCookies

KEY = "a-deployment-secret-key-of-32-characters"
cookies = VisitorCookies(KEY)
idents = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-",
    min_size=1,
    max_size=64,
)


class TestSealedCookies:
    @given(idents)
    def test_a_sealed_cookie_opens_to_its_visitor(self, visitor_id: str) -> None:
        assert cookies.open(cookies.seal(visitor_id)) == visitor_id

    def test_a_minted_visitor_fits_the_cookie(self) -> None:
        visitor_id = new_id()
        sealed = cookies.seal(visitor_id)
        assert cookies.open(sealed) == visitor_id
        assert len(sealed) <= MAX_COOKIE_CHARS

    def test_the_tag_is_128_bits_of_base64url(self) -> None:
        _, _, tag = cookies.seal("v-1").rpartition(".")
        assert len(base64.urlsafe_b64decode(tag + "==")) == 16


class TestForgery:
    def test_a_forged_visitor_cookie_is_ignored(self) -> None:
        victim = cookies.seal("v-victim")
        tag = victim.rpartition(".")[2]
        assert cookies.open("v-victim") is None, "a plain id (as in the landing URL) is no cookie"
        assert cookies.open(f"v-other.{tag}") is None, "a tag belongs to its id"
        flipped = tag[:-2] + ("AA" if tag[-2:] != "AA" else "BB")
        assert cookies.open(f"v-victim.{flipped}") is None
        assert VisitorCookies("another-deployment-secret-key-32ch").open(victim) is None

    def test_the_cookie_key_is_derived_not_the_secret_key_itself(self) -> None:
        """Neither the deployment key nor a store's webhook secret makes a valid tag."""
        for key in (KEY.encode(), webhook_secret(KEY, "s1", 1).encode()):
            mac = hmac.new(key, b"v-1", hashlib.sha256).digest()[:16]
            tag = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
            assert cookies.open(f"v-1.{tag}") is None

    def test_a_new_id_is_32_hex_digits_and_never_repeats(self) -> None:
        ids = {new_id() for _ in range(10_000)}
        assert len(ids) == 10_000
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


class TestMalformedCookies:
    def test_a_malformed_cookie_is_ignored(self) -> None:
        good = cookies.seal("v-1")
        tag = good.rpartition(".")[2]
        for bad in (
            "",
            ".",
            f".{tag}",  # no id
            "v-1.",  # no tag
            good + "x",  # tag too long
            good[:-1],  # tag too short
            f"v 1.{tag}",  # not an identifier
            f"v/1.{tag}",
            f"{'v' * 65}.{tag}",  # over the identifier budget
            good + "é",
            "é" + good,  # non-ASCII
            "v-1\x00." + tag,
            "x" * 100_000,
        ):
            assert cookies.open(bad) is None, bad
        assert cookies.open(None) is None

    @given(st.text(max_size=300))
    def test_opening_any_text_never_raises(self, value: str) -> None:
        opened = cookies.open(value)
        assert opened is None or cookies.seal(opened) == value
