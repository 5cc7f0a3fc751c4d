"""The audit log's rules, pure: what one entry holds (who, when, from where, which change,
the subject's state before and after), how secrets are kept out of it, which fields changed,
and who may read which entries. No I/O, no clock: the time is a parameter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

#: what stands in the log in place of a secret's value (a key, a signing secret, a token)
REDACTED: Final = "[redacted]"
#: field names whose values are secrets wherever they appear (any depth, any case)
SECRET_NAMES: Final = frozenset(
    {"api_key", "key_hash", "secret", "secret_hash", "webhook_secret", "token", "password"}
)
#: parts of a field name that make it a secret too (``previous_secret``, ``admin_token``)
SECRET_PARTS: Final = ("secret", "password", "token", "api_key", "key_hash")
#: a user agent is the client's to choose: kept to this many characters
USER_AGENT_MAX: Final = 512
#: a client address as stored (an IPv6 address with a zone fits)
ADDRESS_MAX: Final = 64

Json = Any  # a JSON value: None, bool, int, str, list, dict (Decimal and datetime as str)


class Role(StrEnum):
    """Who acted: the admin token or a principal's key."""

    ADMIN = "admin"
    FINANCE = "finance"
    STORE = "store"
    AFFILIATE = "affiliate"


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller that made the change: its role and principal id (``admin`` for the
    admin token)."""

    role: Role
    id: str


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the request came from, as the edge saw it: the client's address, its user agent
    and the request's id (``X-Request-Id``, :class:`shared.http.RequestIds`)."""

    address: str | None
    user_agent: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change, as appended to the log (never updated, never deleted).

    ``tenant`` is whose data changed (``store:<id>``, ``affiliate:<id>``, ``finance:<id>``,
    or None for the deployment's own): a store reads the entries of its tenant. ``before``
    and ``after`` are JSON with every secret replaced by :data:`REDACTED`; ``changed`` names
    the top-level fields that differ (a rotated secret among them, though both sides show
    :data:`REDACTED`)."""

    at: datetime
    actor: Actor
    origin: Origin
    kind: str
    subject: str
    tenant: str | None
    before: Json
    after: Json
    changed: tuple[str, ...] = field(default=())


def is_secret(name: str) -> bool:
    """True for a field whose value must never be written to the log."""
    lowered = name.lower()
    return lowered in SECRET_NAMES or any(part in lowered for part in SECRET_PARTS)


def to_json(value: Any) -> Json:
    """``value`` as JSON data: Decimals and times as strings, tuples as lists, mappings
    with string keys; anything else by ``str``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, float):
        raise TypeError("no float in the audit log (amounts are Decimal or minor units)")
    return str(value)


def redact_url(url: str) -> str:
    """A URL without what may carry a credential: its user info and its query (receivers
    put tokens there) are replaced by :data:`REDACTED`."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{REDACTED}@{host}" if "@" in parts.netloc else host
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact(value: Json) -> Json:
    """``value`` with the value of every secret field (:func:`is_secret`), at any depth,
    replaced by :data:`REDACTED` (a missing or null secret stays null), and the credentials
    of every ``url`` field (:func:`redact_url`)."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if v is not None else None)
            if is_secret(k)
            else redact_url(v)
            if k == "url" and isinstance(v, str)
            else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def changed_fields(before: Json, after: Json) -> tuple[str, ...]:
    """The top-level fields whose values differ between two states (compared before any
    redaction, so a secret that changed is named); every field of a state created or
    deleted."""
    old = before if isinstance(before, Mapping) else {}
    new = after if isinstance(after, Mapping) else {}
    if before is None or after is None:
        return tuple(sorted(set(old) | set(new)))
    return tuple(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))


def entry(
    *,
    at: datetime,
    actor: Actor,
    origin: Origin,
    kind: str,
    subject: str,
    tenant: str | None,
    before: Any,
    after: Any,
    rotated: Iterable[str] = (),
) -> AuditEntry:
    """The entry of one change. ``rotated`` names secrets that were replaced (their values
    are not given: both sides show :data:`REDACTED`). Refuses a naive time and a kind that is
    not ``<subject kind>.<verb>``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("an audit entry's time is timezone-aware UTC")
    if kind.count(".") != 1 or not all(kind.split(".")):
        raise ValueError(f"an audit kind is '<subject>.<verb>', not {kind!r}")
    old, new = to_json(before), to_json(after)
    names = list(rotated)
    if names:
        old = {**(old or {}), **dict.fromkeys(names, REDACTED)}
        new = {**(new or {}), **dict.fromkeys(names, REDACTED)}
    changed = tuple(sorted(set(changed_fields(old, new)) | set(names)))
    return AuditEntry(
        at=at,
        actor=actor,
        origin=Origin(
            address=(origin.address or None) and origin.address[:ADDRESS_MAX],
            user_agent=(origin.user_agent or None) and origin.user_agent[:USER_AGENT_MAX],
            request_id=origin.request_id,
        ),
        kind=kind,
        subject=subject,
        tenant=tenant,
        before=redact(old),
        after=redact(new),
        changed=changed,
    )


@dataclass(frozen=True, slots=True)
class Scope:
    """Which entries a reader may see: all (``None`` fields), or those of one actor role,
    or those of one tenant."""

    actor_role: Role | None = None
    tenant: str | None = None


def readable_by(role: Role, principal_id: str) -> Scope:
    """The admin reads every entry; finance the entries of finance actions; a store or an
    affiliate the entries about its own data (whoever made them)."""
    if role is Role.ADMIN:
        return Scope()
    if role is Role.FINANCE:
        return Scope(actor_role=Role.FINANCE)
    return Scope(tenant=f"{role.value}:{principal_id}")


def may_read(scope: Scope, e: AuditEntry) -> bool:
    """The reference of :func:`readable_by`'s filter (the repository applies it in SQL)."""
    if scope.actor_role is not None and e.actor.role is not scope.actor_role:
        return False
    return scope.tenant is None or e.tenant == scope.tenant


class Recorder(Protocol):
    """Where a use case records its change (a request's audit trail): one call per change,
    in the change's transaction."""

    async def record(
        self,
        kind: str,
        subject: str,
        *,
        tenant: str | None,
        before: Any,
        after: Any,
        rotated: Iterable[str] = (),
    ) -> None: ...
