"""Sealed tokens, pure: bytes a service hands out and must get back unread and unchanged.

A token is ``base64url(nonce ‖ AES-256-GCM(plaintext))`` (unpadded, URL-safe): encrypted, so
whoever holds it learns nothing of what it carries but its length, and authenticated, so a
token changed in any bit, cut short, made up, or sealed under another key or for another
purpose does not open. The key is derived from the deployment's ``ALLIANCE_SECRET_KEY``
(``HMAC-SHA256(secret key, "sealed:" + purpose)``), so each purpose has its own key and none
is the secret itself or another derived key (the visitor cookie's, the webhook secrets'); the
purpose is also the cipher's associated data. The nonce is 12 random bytes per token: with
AES-GCM's 2³² tokens per key bound at random nonces, far more than any deployment seals.

Used by the alliance camp for its keyset cursors, which hold a row's score and commission
rate: the public must neither read those nor forge a cursor.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16  # AES-GCM's full tag
#: the longest token worth trying to open (callers bound their inputs more tightly)
MAX_TOKEN_CHARS: Final = 4_096


class Sealer:
    """Seals and opens tokens under a key derived from ``secret_key`` for ``purpose``."""

    def __init__(self, secret_key: str, purpose: str) -> None:
        if not purpose:
            raise ValueError("a sealer needs a purpose")
        self._purpose = purpose.encode()
        key = hmac.digest(secret_key.encode(), b"sealed:" + self._purpose, "sha256")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes) -> str:
        """A URL-safe token carrying ``plaintext``, which only this key and purpose opens."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext, self._purpose)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, token: str | None) -> bytes | None:
        """What :meth:`seal` was given, or None if ``token`` is not one it made with this key
        and purpose (changed, truncated, garbage, another key's). Never raises."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            return None
        # the canonical text only: one token, one spelling (no padding, no stray bits)
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
            return None
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._purpose)
        except InvalidTag:
            return None
