"""Privacy rules, pure: consent on the redirect, a visitor's keyed pseudonym, the erasure's
sealed id, and the truncation of client addresses at rest (docs/privacy.md).

Shared: the tracker applies the consent rule on the redirect; the commission service and
attribution pseudonymise and erase with the same keys (derived from the deployment's
``ALLIANCE_SECRET_KEY``, which every service already has).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final

from shared.sealed import Sealer

#: the cookie a storefront's consent banner may set on the tracker's host (a first-party
#: tracker host such as ``go.store.example``) to declare the buyer's choice
CONSENT_COOKIE: Final = "alliance_consent"
#: the query parameter of the redirect (``/r/{code}?consent=false``) that declares it per click
CONSENT_PARAM: Final = "consent"
#: how a pseudonym starts: an identifier (:data:`shared.events.Ident`) no visitor id the tracker
#: mints takes (those are 32 hex characters)
PSEUDONYM_PREFIX: Final = "erased-"
#: the sealer's purpose of the erasure events' visitor id
ERASURE_PURPOSE: Final = "erasure"


class Consent(StrEnum):
    """A program's setting: whether the visitor cookie needs the buyer's consent."""

    NOT_REQUIRED = "not_required"  # a cookie unless the buyer objects (GPC, consent=false)
    REQUIRED = "required"  # a cookie only when the storefront declares consent=true


def declared(value: str | None) -> bool | None:
    """A storefront's declaration (``consent=`` or the cookie): True, False, or None when
    absent or not one of the spellings (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    return None


def may_set_cookie(consent: Consent, *, gpc: bool, declared_consent: bool | None) -> bool:
    """Whether the redirect may read or write the ``alliance_vid`` cookie (ePrivacy art. 5(3):
    storing or reading on the buyer's device). ``Sec-GPC: 1`` and a declared ``false`` always
    refuse; a program that requires consent needs a declared ``true``; otherwise yes."""
    if gpc or declared_consent is False:
        return False
    if consent is Consent.REQUIRED:
        return declared_consent is True
    return True


@functools.lru_cache(maxsize=16)  # one derivation per key, not per click screened
def _key(secret_key: str, label: bytes) -> bytes:
    return hmac.digest(secret_key.encode(), label, "sha256")


def pseudonym(secret_key: str, visitor_id: str) -> str:
    """The keyed pseudonym that replaces an erased visitor's id where money needs a row:
    ``erased-`` and 40 hex characters of HMAC-SHA256 (a key derived from the secret key).
    Irreversible without the key; the same for one visitor (an erasure is idempotent)."""
    mac = hmac.new(_key(secret_key, b"privacy:pseudonym"), visitor_id.encode(), hashlib.sha256)
    return PSEUDONYM_PREFIX + mac.hexdigest()[:40]


def visitor_hash(secret_key: str, visitor_id: str) -> str:
    """The keyed hash of a visitor id kept in the lists of erased visitors (64 hex): a
    consumer drops a later event of the visitor by hashing its id, never storing it."""
    mac = hmac.new(_key(secret_key, b"privacy:erased"), visitor_id.encode(), hashlib.sha256)
    return mac.hexdigest()


def is_pseudonym(value: str) -> bool:
    return value.startswith(PSEUDONYM_PREFIX)


class ErasureSeal:
    """Seals a visitor id into an erasure event (AES-GCM, a key derived from the secret key
    for this purpose only): the consumers find the visitor's rows by it, and it is unreadable
    to anyone without the secret key; it leaves the topic with the topic's retention."""

    def __init__(self, secret_key: str) -> None:
        self._sealer = Sealer(secret_key, ERASURE_PURPOSE)

    def seal(self, visitor_id: str) -> str:
        return self._sealer.seal(visitor_id.encode())

    def open(self, token: str) -> str | None:
        raw = self._sealer.open(token)
        return raw.decode() if raw is not None else None


#: the prefix lengths an address keeps once its full form is no longer needed
IPV4_PREFIX: Final = 24
IPV6_PREFIX: Final = 48


def truncate_address(address: str) -> str:
    """An address cut to its network (IPv4 /24, IPv6 /48), as ``a.b.c.0/24``: what click
    quality may keep after its windows. Something that is no address is cut to ``unknown``
    (an unparsable value could be anything, so it is not kept)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        if "/" in address:  # already truncated
            try:
                return str(ipaddress.ip_network(address.strip(), strict=False))
            except ValueError:
                pass
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def full_addresses_from(now: datetime, keep: timedelta) -> date:
    """The first UTC day whose click-cap rows still keep full addresses at ``now``: a day's
    rows are cut once the day is over by ``keep`` (the cap counts within its day; the
    self-referral and flood memories are shorter than ``keep``'s default)."""
    return (now - keep).date()
