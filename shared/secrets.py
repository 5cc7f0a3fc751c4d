"""Keys and secrets: API keys (random, stored hashed) and derived webhook secrets.

A store's webhook secret is ``HMAC(deployment secret key, "webhook:<store>:<version>")``: the
commission service shows it once at creation, and the tracker derives the same value to check
signatures, so no secret ever travels over Kafka. Rotation bumps the version; the tracker
accepts the current version, and the previous one for a bounded grace after the rotation
(:func:`previous_secret_accepted`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Literal

PrincipalKind = Literal["store", "affiliate", "finance"]
_PREFIX: dict[PrincipalKind, str] = {"store": "als", "affiliate": "ala", "finance": "alf"}


def new_api_key(kind: PrincipalKind) -> str:
    """A fresh API key, e.g. ``ala_3q…`` (the prefix tells people what kind of key it is)."""
    return f"{_PREFIX[kind]}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    """What is stored and compared: SHA-256 of a high-entropy key (no salt needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def webhook_secret(secret_key: str, store_id: str, version: int) -> str:
    mac = hmac.new(secret_key.encode(), f"webhook:{store_id}:{version}".encode(), hashlib.sha256)
    return "whsec_" + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def rotation_grace_end(
    rotated_at: datetime, grace: timedelta, *, revoke_previous: bool
) -> datetime:
    """Until when a secret rotated at ``rotated_at`` leaves the previous version accepted: the
    grace (``ALLIANCE_SECRET_ROTATION_GRACE_S``) after the rotation, or the rotation itself
    when the previous version is revoked at once."""
    return rotated_at if revoke_previous else rotated_at + grace


def previous_secret_accepted(previous_until: datetime | None, now: datetime) -> bool:
    """Whether a store's previous webhook secret still verifies at ``now``: only while
    ``now < previous_until``; never when there is no such time (no rotation, or one from
    before the grace existed). The current secret always verifies."""
    return previous_until is not None and now < previous_until


def store_secret_versions(
    version: int, previous_until: datetime | None, now: datetime
) -> list[int]:
    """The secret versions a store's directory entry lists at ``now``: the current one first,
    then the previous one while it is accepted (:func:`previous_secret_accepted`)."""
    if version > 1 and previous_secret_accepted(previous_until, now):
        return [version, version - 1]
    return [version]


def sign_body(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` signature of a storefront post: hex HMAC-SHA256 of ``"<t>.<raw body>"``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign_body(secret, timestamp, body)}"


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_SIGNATURE_HEX_LEN = 64  # hex SHA-256
_TIMESTAMP_MAX_DIGITS = 12  # unix seconds until the year 33658; bounds int() of a hostile value


def _is_ascii_digits(value: str) -> bool:
    return 0 < len(value) <= _TIMESTAMP_MAX_DIGITS and value.isascii() and value.isdigit()


def _is_hex_signature(value: str) -> bool:
    return len(value) == _SIGNATURE_HEX_LEN and all(c in _HEX_DIGITS for c in value)


def parse_signature(header: str) -> tuple[int, list[str]] | None:
    """``(t, [v1 signatures])`` of an ``X-Alliance-Signature`` header, or None if malformed.

    Only ASCII digits make a timestamp and only 64 ASCII hex digits make a ``v1`` signature:
    anything else (non-ASCII, non-hex, another length) is not a signature at all, so it is
    refused like any bad one instead of reaching :func:`hmac.compare_digest`, which raises
    on a non-ASCII ``str``."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and _is_ascii_digits(value):
            timestamp = int(value)
        elif name == "v1" and _is_hex_signature(value):
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify_signature(
    secrets_: list[str], header: str, body: bytes, now_unix: int, tolerance_s: int = 300
) -> str | None:
    """None when the header carries a valid, fresh signature by one of ``secrets_``, else the
    reason (``malformed``, ``stale``, ``mismatch``). Constant-time comparison."""
    parsed = parse_signature(header)
    if parsed is None:
        return "malformed"
    timestamp, given = parsed
    if abs(now_unix - timestamp) > tolerance_s:
        return "stale"
    for secret in secrets_:
        expected = sign_body(secret, timestamp, body)
        if any(hmac.compare_digest(expected, g) for g in given):
            return None
    return "mismatch"
