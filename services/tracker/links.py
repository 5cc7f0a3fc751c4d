"""Signed link codes, pure: the redirect checks them without a database.

A code is ``<key id>.<payload>.<tag>``: the payload is the link's affiliate, store, product
and sub id, base64url-encoded; the tag is the first 12 bytes of HMAC-SHA256 over
``<key id>.<payload>`` with the named server key. Several keys verify (rotation), the first
one signs. A code that was altered in any byte fails verification.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass

_SEP = "\x1f"  # unit separator: cannot occur in identifiers
_TAG_BYTES = 12
#: longer than any code we sign (four identifiers, base64url, a key id and a tag)
MAX_CODE_CHARS = 1024
#: valid codes remembered as verified (each well under 1 KB: a few MB at most)
VERIFIED_CACHE = 4096


@dataclass(frozen=True, slots=True)
class Link:
    affiliate_id: str
    store_id: str
    product_id: str | None = None
    sub_id: str | None = None


class InvalidCode(ValueError):
    """The code was not issued by us (tampered, truncated or signed with an unknown key)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, keys: dict[str, bytes]) -> None:
        """``keys``: key id → secret, in order; the first signs, all verify."""
        if not keys:
            raise ValueError("at least one link key is required")
        for kid in keys:
            if not kid.isalnum():
                raise ValueError(f"link key id {kid!r} must be alphanumeric")
        self.keys = dict(keys)
        self.signing_kid = next(iter(keys))
        # codes verified lately (a link is clicked again and again); only valid codes are
        # cached (a failure raises), so the cache holds at most that many of our own codes
        self._verified = functools.lru_cache(maxsize=VERIFIED_CACHE)(self._verify)

    @classmethod
    def from_config(cls, spec: str) -> LinkSigner:
        """Parse ``"k1:secret1,k0:secret0"``."""
        keys: dict[str, bytes] = {}
        for part in spec.split(","):
            kid, _, secret = part.strip().partition(":")
            if not secret:
                raise ValueError("link keys are 'id:secret' pairs separated by commas")
            keys[kid] = secret.encode()
        return cls(keys)

    def _tag(self, kid: str, payload: str) -> str:
        mac = hmac.new(self.keys[kid], f"{kid}.{payload}".encode(), hashlib.sha256).digest()
        return _b64(mac[:_TAG_BYTES])

    def sign(self, link: Link) -> str:
        fields = [link.affiliate_id, link.store_id, link.product_id or "", link.sub_id or ""]
        payload = _b64(_SEP.join(fields).encode())
        return f"{self.signing_kid}.{payload}.{self._tag(self.signing_kid, payload)}"

    def verify(self, code: str) -> Link:
        """The link a code stands for, or :class:`InvalidCode` (never another error, whatever
        the code holds). Constant-time tag check (for codes not verified lately)."""
        return self._verified(code)

    def _verify(self, code: str) -> Link:
        if len(code) > MAX_CODE_CHARS or not code.isascii():
            raise InvalidCode(code[:MAX_CODE_CHARS])
        parts = code.split(".")
        if len(parts) != 3 or parts[0] not in self.keys:
            raise InvalidCode(code)
        kid, payload, tag = parts
        if not hmac.compare_digest(tag, self._tag(kid, payload)):
            raise InvalidCode(code)
        try:
            fields = _unb64(payload).decode().split(_SEP)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidCode(code) from exc
        if len(fields) != 4 or not fields[0] or not fields[1]:
            raise InvalidCode(code)
        return Link(fields[0], fields[1], fields[2] or None, fields[3] or None)
