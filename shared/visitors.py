"""The visitor cookie, pure: a visitor id the tracker minted, sealed so it cannot be forged.

Shared: the tracker seals and opens it (the redirect), the commission service opens it (the
alliance camp's personal ranking); both derive the key from the deployment's
``ALLIANCE_SECRET_KEY``, which every service already has.

The ``alliance_vid`` cookie is ``<visitor id>.<tag>``: the tag is the first 16 bytes (128 bits)
of HMAC-SHA256 over the id, base64url, under a key derived from the deployment's secret key
(``HMAC(secret key, "visitor-cookie")``, so it is none of the stores' webhook secrets). A
cookie whose tag does not verify, or that is malformed in any way, is no visitor at all: the
redirect mints a new one. Without the tag anyone who learned a buyer's visitor id (it is in
the landing URL, which storefronts report) could set it in their own browser and take the
buyer's orders with their clicks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

from shared.events import IDENT_MAX

_TAG_BYTES: Final = 16
_TAG_CHARS: Final = 22  # base64url of 16 bytes, unpadded
#: the longest cookie value worth reading: an id of the identifier budget, a dot, a tag
MAX_COOKIE_CHARS: Final = IDENT_MAX + 1 + _TAG_CHARS
#: an :data:`~shared.events.Ident`
_IDENT: Final = re.compile(rf"[A-Za-z0-9._:@\-]{{1,{IDENT_MAX}}}")


#: the cookie's name, on the tracker's redirect and on the camp's requests
VISITOR_COOKIE: Final = "alliance_vid"


class VisitorCookies:
    def __init__(self, secret_key: str) -> None:
        key = hmac.digest(secret_key.encode(), b"visitor-cookie", "sha256")
        # keyed once: a copy per tag skips deriving the inner and outer pads every time
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def _tag(self, visitor_id: str) -> str:
        mac = self._keyed.copy()
        mac.update(visitor_id.encode())
        return base64.urlsafe_b64encode(mac.digest()[:_TAG_BYTES]).rstrip(b"=").decode()

    def seal(self, visitor_id: str) -> str:
        """The cookie value that carries ``visitor_id``."""
        return f"{visitor_id}.{self._tag(visitor_id)}"

    def open(self, cookie: str | None) -> str | None:
        """The visitor id a cookie carries, or None when it is absent, malformed or forged.
        Never raises; the tag is compared in constant time."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or not cookie.isascii():
            return None
        visitor_id, _, tag = cookie.rpartition(".")
        if len(tag) != _TAG_CHARS or not _IDENT.fullmatch(visitor_id):
            return None
        if not hmac.compare_digest(tag.encode(), self._tag(visitor_id).encode()):
            return None
        return visitor_id
