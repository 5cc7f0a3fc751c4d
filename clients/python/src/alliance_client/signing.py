"""Signing a storefront's posts and verifying the webhooks Alliance sends: the same scheme
both ways, written here by hand (no dependency on the services' code).

Both carry ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<content>")>``:

- a storefront signs the raw JSON body of ``POST /v1/events`` and ``POST /v1/clicks`` with its
  store's webhook secret, in ``X-Alliance-Signature`` next to ``X-Alliance-Store``; the
  tracker refuses a signature more than five minutes (``ALLIANCE_EVENT_MAX_AGE_S``) from its
  clock;
- a webhook endpoint receives ``Alliance-Signature`` over the raw body of a POST, or over the
  path and query of a GET (a postback template), signed with the endpoint's secret; during a
  secret rotation's overlap it carries two ``v1`` values, one per secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Final, Literal
from urllib.parse import urlsplit

#: the header naming the store that signed a storefront post
STORE_HEADER: Final = "X-Alliance-Store"
#: the header of a storefront post's signature
SIGNATURE_HEADER: Final = "X-Alliance-Signature"
#: the header of a webhook delivery's signature
WEBHOOK_SIGNATURE_HEADER: Final = "Alliance-Signature"
#: how far (seconds) a signature's time may be from the verifier's clock, either way
DEFAULT_TOLERANCE_S: Final = 300

_HEX: Final = frozenset("0123456789abcdefABCDEF")
_SIGNATURE_HEX_LEN: Final = 64
_TIMESTAMP_MAX_DIGITS: Final = 12

Reason = Literal["malformed", "stale", "mismatch"]


class InvalidSignature(Exception):
    """A signature does not verify; ``reason`` says why: ``malformed`` (no ``t`` or no
    well-formed ``v1``), ``stale`` (its time is too far from now) or ``mismatch`` (no ``v1`` is
    the HMAC of the content by any of the secrets)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"signature {reason}")
        self.reason: Reason = reason


def sign(secret: str, timestamp: int, content: bytes) -> str:
    """The ``v1`` value: hex HMAC-SHA256 of ``"<timestamp>.<content>"`` keyed by ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + content, hashlib.sha256).hexdigest()


def signature_header(secret: str | Sequence[str], timestamp: int, content: bytes) -> str:
    """``t=<timestamp>,v1=<signature>``, one ``v1`` per secret."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, content)}" for s in secrets)])


def store_headers(
    store_id: str, secret: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of a storefront's signed post of ``body`` (exactly the bytes sent), signed
    now unless ``timestamp`` is given."""
    at = int(time.time()) if timestamp is None else timestamp
    return {
        STORE_HEADER: store_id,
        SIGNATURE_HEADER: signature_header(secret, at, body),
        "Content-Type": "application/json",
    }


def parse_header(header: str) -> tuple[int, list[str]] | None:
    """``(t, [v1 values, lower case])`` of a signature header, or None when it is malformed:
    only ASCII digits (at most 12) make ``t`` and only 64 hex digits make a ``v1``; other
    parts are ignored."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if (
            name == "t"
            and 0 < len(value) <= _TIMESTAMP_MAX_DIGITS
            and value.isascii()
            and value.isdigit()
        ):
            timestamp = int(value)
        elif name == "v1" and len(value) == _SIGNATURE_HEX_LEN and all(c in _HEX for c in value):
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify(
    secret: str | Sequence[str],
    header: str,
    content: bytes,
    *,
    now: int | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check that ``header`` signs ``content`` by ``secret`` (or one of several, during a
    rotation) within ``tolerance_s`` of ``now`` (unix seconds; the clock by default). Returns
    the signature's time; raises :class:`InvalidSignature` otherwise. Constant-time."""
    parsed = parse_header(header)
    if parsed is None:
        raise InvalidSignature("malformed")
    timestamp, given = parsed
    clock = int(time.time()) if now is None else now
    if abs(clock - timestamp) > tolerance_s:
        raise InvalidSignature("stale")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    for s in secrets:
        expected = sign(s, timestamp, content)
        if any(hmac.compare_digest(expected, g) for g in given):
            return timestamp
    raise InvalidSignature("mismatch")


def get_content(url: str) -> bytes:
    """What a GET delivery (a postback) signs: the path and query of the URL requested, as
    they arrived (``/hook?order=o-1``), without scheme, host or fragment."""
    parts = urlsplit(url)
    return (parts.path or "/").encode() + (b"?" + parts.query.encode() if parts.query else b"")
