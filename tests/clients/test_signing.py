"""The client's signing and webhook verification, against the services' own code: what the
client signs, the tracker accepts; what the commission service's delivery worker signs, the
client verifies; a tampered body, timestamp or secret never verifies."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance_client import InvalidSignature, parse_event, signing
from services.commission.core import webhooks as hooks
from shared import secrets as shared

SECRETS = st.text(min_size=1, max_size=60)
BODIES = st.binary(max_size=2048)
STAMPS = st.integers(min_value=0, max_value=10**11)
#: the machine is shared: no per-example deadline (the properties are what is checked)
relaxed = settings(deadline=None)


class TestStorefrontSignatures:
    @relaxed
    @given(SECRETS, STAMPS, BODIES)
    def test_the_signature_is_the_one_the_tracker_computes(
        self, secret: str, t: int, body: bytes
    ) -> None:
        assert signing.sign(secret, t, body) == shared.sign_body(secret, t, body)
        assert signing.signature_header(secret, t, body) == shared.signature_header(secret, t, body)

    @relaxed
    @given(SECRETS, BODIES, st.integers(min_value=-300, max_value=300))
    def test_the_tracker_accepts_a_fresh_signed_post(
        self, secret: str, body: bytes, skew: int
    ) -> None:
        now = 1_767_000_000
        headers = signing.store_headers("s1", secret, body, timestamp=now + skew)
        assert headers[signing.STORE_HEADER] == "s1"
        header = headers[signing.SIGNATURE_HEADER]
        assert shared.verify_signature([secret], header, body, now) is None

    @relaxed
    @given(SECRETS, BODIES, BODIES)
    def test_a_tampered_body_is_refused_by_the_tracker(
        self, secret: str, body: bytes, other: bytes
    ) -> None:
        now = 1_767_000_000
        header = signing.signature_header(secret, now, body)
        expected = None if other == body else "mismatch"
        assert shared.verify_signature([secret], header, other, now) == expected

    @relaxed
    @given(SECRETS, BODIES, st.integers(min_value=301, max_value=10**6), st.booleans())
    def test_a_stale_signature_is_refused_by_the_tracker(
        self, secret: str, body: bytes, age: int, future: bool
    ) -> None:
        now = 1_767_000_000
        header = signing.signature_header(secret, now + age if future else now - age, body)
        assert shared.verify_signature([secret], header, body, now) == "stale"


class TestWebhookVerification:
    @relaxed
    @given(st.lists(SECRETS, min_size=1, max_size=2), BODIES, st.integers(-300, 300))
    def test_what_the_delivery_worker_signs_verifies(
        self, secrets: list[str], body: bytes, skew: int
    ) -> None:
        now = 1_767_000_000
        header = hooks.signature(secrets, now + skew, body)
        for secret in secrets:  # during a rotation, either secret verifies
            assert signing.verify(secret, header, body, now=now) == now + skew
            assert hooks.verify(secret, header, body, now)

    @relaxed
    @given(SECRETS, BODIES, BODIES)
    def test_a_tampered_body_fails(self, secret: str, body: bytes, other: bytes) -> None:
        now = 1_767_000_000
        header = hooks.signature([secret], now, body)
        if other == body:
            assert signing.verify(secret, header, other, now=now) == now
        else:
            with pytest.raises(InvalidSignature) as err:
                signing.verify(secret, header, other, now=now)
            assert err.value.reason == "mismatch"

    @relaxed
    @given(SECRETS, BODIES, STAMPS, STAMPS)
    def test_a_tampered_timestamp_fails(
        self, secret: str, body: bytes, signed_at: int, claimed: int
    ) -> None:
        """A header whose ``t`` was changed (to look fresh) no longer matches its ``v1``."""
        header = hooks.signature([secret], signed_at, body)
        forged = header.replace(f"t={signed_at}", f"t={claimed}", 1)
        if claimed == signed_at:
            assert signing.verify(secret, forged, body, now=claimed) == claimed
        else:
            with pytest.raises(InvalidSignature) as err:
                signing.verify(secret, forged, body, now=claimed)
            assert err.value.reason == "mismatch"

    @relaxed
    @given(SECRETS, SECRETS, BODIES)
    def test_another_secret_fails(self, secret: str, other: str, body: bytes) -> None:
        now = 1_767_000_000
        header = hooks.signature([secret], now, body)
        if other != secret:
            with pytest.raises(InvalidSignature):
                signing.verify(other, header, body, now=now)

    @relaxed
    @given(st.text(max_size=200), BODIES, SECRETS, st.integers(0, 2 * 10**9))
    def test_any_header_gets_the_services_verdict(
        self, header: str, body: bytes, secret: str, now: int
    ) -> None:
        """Whatever arrives (malformed, non-ASCII, odd lengths), the client decides as the
        services' own check does, reason included."""
        verdict = shared.verify_signature([secret], header, body, now)
        if verdict is None:
            signing.verify(secret, header, body, now=now)
        else:
            with pytest.raises(InvalidSignature) as err:
                signing.verify(secret, header, body, now=now)
            assert err.value.reason == verdict

    @relaxed
    @given(
        st.lists(st.text("abcxyz-_/", min_size=1, max_size=8), max_size=4),
        st.dictionaries(st.text("abc", min_size=1, max_size=4), st.text(max_size=8), max_size=3),
    )
    def test_a_get_postback_signs_its_path_and_query(
        self, segments: list[str], query: dict[str, str]
    ) -> None:
        import httpx

        url = httpx.URL("https://hooks.example/" + "/".join(segments), params=query)
        content = signing.get_content(str(url))
        assert content == hooks.signed_content(hooks.Method.GET, b"", str(url))
        assert content == url.raw_path  # what the worker signs: the request target

    def test_a_delivery_parses_once_it_verifies(self) -> None:
        import orjson

        from services.commission.webhooks.schemas import EVENT_EXAMPLES

        example = EVENT_EXAMPLES[hooks.WebhookEvent.COMMISSION_PAYABLE]
        body = orjson.dumps(example)
        secret = hooks.endpoint_secret("k" * 32, "ep-1", 1)
        header = hooks.signature([secret], int(time.time()), body)
        event = parse_event(secret, header, body)
        assert event.id == example["id"]
        assert event.type == "commission.payable"
        assert event.data["commission"] == example["data"]["commission"]
        with pytest.raises(InvalidSignature):
            parse_event(secret, header, body + b" ")
        with pytest.raises(InvalidSignature) as stale:
            parse_event(secret, header, body, now=int(time.time()) + 3600)
        assert stale.value.reason == "stale"
