"""Postbacks and webhooks, pure: the events, their stable ids, who receives them, the URL
rules and GET templates, the signature, the retry schedule and the disable rule.

No I/O and no clock: times are parameters. The shells (``services/commission/webhooks/``)
store endpoints and deliveries, and the delivery worker sends what this module says, when it
says.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Final
from urllib.parse import quote, urlsplit

from services.commission.core.commission import OrderFacts
from services.commission.core.errors import ProgramError
from services.commission.core.ledger import LedgerTxn, TxnKind
from shared.money import fmt
from shared.secrets import sign_body, verify_signature
from shared.urls import http_url_problem


class WebhookEvent(StrEnum):
    """What an endpoint may subscribe to."""

    #: commission's orders consumer stored an attribution decision that names an affiliate
    ORDER_ATTRIBUTED = "order.attributed"
    #: the commission of a completed order was posted to the ledger (payable after holding)
    COMMISSION_PAYABLE = "commission.payable"
    #: a refund reversed (part of) a posted commission: a claw-back
    COMMISSION_REVERSED = "commission.reversed"
    #: a reason-coded adjustment changed a posted commission (docs/program-controls.md)
    COMMISSION_ADJUSTED = "commission.adjusted"
    #: an order's commission reached its locking date: nothing changes it any more
    COMMISSION_LOCKED = "commission.locked"
    #: finance placed the affiliate on hold (its commissions on the scope are not payable)
    COMMISSION_HELD = "commission.held"
    #: finance released (or voided) the hold
    COMMISSION_RELEASED = "commission.released"
    #: finance paid an affiliate's balance
    PAYOUT_CREATED = "payout.created"


class OwnerKind(StrEnum):
    AFFILIATE = "affiliate"
    STORE = "store"
    FINANCE = "finance"


class Method(StrEnum):
    POST = "POST"
    GET = "GET"


#: the macros a GET template may hold, with an example value each (``GET …/templates``)
MACROS: Final[Mapping[str, str]] = {
    "order_id": "o-1001",
    "store_id": "acme",
    "click_id": "0190d7c3a1b2c3d4e5f6a7b8c9d0e1f2",
    "sub_id": "spring-video",
    "status": "completed",
    "commission": "2.19",
    "currency": "USD",
    "event_id": "evt_9f86d081884c7d659a2feaa0c55ad015",
}
#: the longest URL (or template) an endpoint may register
URL_MAX: Final = 2048
#: retries: the first after 1 s, doubling, at most an hour apart, for 72 hours
FIRST_RETRY: Final = timedelta(seconds=1)
MAX_RETRY: Final = timedelta(hours=1)
GIVE_UP_AFTER: Final = timedelta(hours=72)
#: an endpoint whose attempts failed this many times in a row is disabled (at most 2 are in
#: flight while it is healthy, one probe once it fails; see :func:`after_attempts`)
DISABLE_AFTER_FAILURES: Final = 20
#: how long the previous secret still signs after a rotation (both signatures are sent)
ROTATION_OVERLAP: Final = timedelta(hours=24)
#: the name of the signature header
SIGNATURE_HEADER: Final = "Alliance-Signature"

_MACRO = re.compile(r"\{([^{}]*)\}")


class InvalidEndpoint(ProgramError):
    """The URL, method or events of an endpoint are not acceptable (422, with the reason)."""

    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "invalid_endpoint"
    default_message: ClassVar[str] = "the endpoint is not acceptable"


# -- events --------------------------------------------------------------------------------


def event_id(kind: WebhookEvent, source_key: str) -> str:
    """The event's stable id: a digest of its kind and the idempotency key of what caused it
    (a ledger transaction's key, an attribution's ``store:order:revision``, a payout's key).
    The same cause always gives the same id, so a replayed Kafka event adds nothing and a
    receiver can deduplicate by it; the digest keeps the id short and says nothing of the
    internal key's shape."""
    digest = hashlib.sha256(f"{kind.value}\n{source_key}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


@dataclass(frozen=True, slots=True)
class Notice:
    """One event to send: ``data`` is its JSON body's ``data`` (strings, numbers, None).

    ``order`` (store id, order id) orders its deliveries: an endpoint receives the events of
    one order in the order they were written. ``affiliate_id`` and ``store_id`` say whose
    endpoints receive it (besides finance's)."""

    id: str
    type: WebhookEvent
    occurred_at: datetime
    data: Mapping[str, Any]
    affiliate_id: str | None
    store_id: str | None
    order: tuple[str, str] | None

    def body(self) -> dict[str, Any]:
        """What a POST endpoint receives (as JSON)."""
        return {
            "id": self.id,
            "type": self.type.value,
            "created_at": self.occurred_at.isoformat(),
            "data": dict(self.data),
        }


def order_notice(
    kind: WebhookEvent,
    source_key: str,
    facts: OrderFacts,
    amount: Decimal,
    at: datetime,
    *,
    sub_id: str | None,
    refund_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Notice:
    """An order's event: ``amount`` is the commission it is about (the estimate of an
    attribution, the posting of a payable commission, the negative amount of a reversal),
    rounded to the currency. Its id comes from ``source_key``."""
    data: dict[str, Any] = {
        "order_id": facts.order_id,
        "store_id": facts.store_id,
        "affiliate_id": facts.affiliate_id,
        "click_id": facts.click_id,
        "sub_id": sub_id,
        "status": facts.status.value,
        "commission": fmt(amount, facts.currency),
        "currency": facts.currency,
        "placed_at": facts.placed_at.isoformat(),
    }
    if refund_id is not None:
        data["refund_id"] = refund_id
    data.update(extra or {})
    return Notice(
        event_id(kind, source_key),
        kind,
        at,
        data,
        facts.affiliate_id,
        facts.store_id,
        facts.key,
    )


def attribution_key(store_id: str, order_id: str, revision: int) -> str:
    """The cause of an ``order.attributed``: the decision's revision of the order (the
    attribution event's own id)."""
    return f"attribution:{store_id}:{order_id}:{revision}"


def ledger_notice(
    txn: LedgerTxn,
    facts: OrderFacts,
    at: datetime,
    sub_id: str | None,
    locks_at: datetime | None = None,
) -> Notice:
    """The event of a commission, reversal or adjustment posting of the order ``facts``: its
    id comes from the transaction's idempotency key (posted once, so notified once).
    ``locks_at``: the order's locking date, shown as ``locks_at`` (docs/program-controls.md)."""
    extra: dict[str, Any] = {"locks_at": locks_at.isoformat() if locks_at else None}
    refund_id = None
    if txn.kind is TxnKind.COMMISSION:
        kind = WebhookEvent.COMMISSION_PAYABLE
    elif txn.kind is TxnKind.REVERSAL:
        kind, refund_id = WebhookEvent.COMMISSION_REVERSED, txn.key.rpartition("/")[2]
    elif txn.kind is TxnKind.ADJUSTMENT:
        kind = WebhookEvent.COMMISSION_ADJUSTED
        seq = int(txn.key.rpartition("/")[2])
        adj = next((a for a in facts.adjustments if a.seq == seq), None)
        extra |= {"adjustment_id": seq, "reason": txn.reason}
        if adj is not None:
            extra |= {"action": adj.action.value, "reason": adj.reason.value, "note": adj.note}
    else:
        raise ValueError(f"no order event for a {txn.kind} transaction")
    return order_notice(
        kind, txn.key, facts, txn.amount, at, sub_id=sub_id, refund_id=refund_id, extra=extra
    )


def lock_key(store_id: str, order_id: str) -> str:
    """The cause of a ``commission.locked``: the order's lock (announced once)."""
    return f"locked:{store_id}:{order_id}"


def lock_notice(
    facts: OrderFacts, net: Decimal, locks_at: datetime, at: datetime, sub_id: str | None
) -> Notice:
    """An order's ``commission.locked``: ``commission`` is its net commission, final now."""
    return order_notice(
        WebhookEvent.COMMISSION_LOCKED,
        lock_key(facts.store_id, facts.order_id),
        facts,
        net,
        at,
        sub_id=sub_id,
        extra={"locks_at": locks_at.isoformat(), "locked": True},
    )


def hold_notice(
    kind: WebhookEvent,
    hold_id: int,
    affiliate_id: str,
    store_id: str | None,
    reason: str,
    note: str | None,
    status: str,
    at: datetime,
) -> Notice:
    """A hold's event (placed, released or voided), for the affiliate's endpoints, the
    store's when the hold names one, and finance's; its id from the hold and its status."""
    return Notice(
        event_id(kind, f"hold:{hold_id}:{status}"),
        kind,
        at,
        {
            "hold_id": hold_id,
            "affiliate_id": affiliate_id,
            "store_id": store_id,
            "reason": reason,
            "note": note,
            "status": status,
        },
        affiliate_id,
        store_id,
        None,
    )


def payout_notice(
    payout_key: str,
    payout_id: int,
    affiliate_id: str,
    amounts: Mapping[str, str],
    up_to: datetime,
    at: datetime,
    *,
    run_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> Notice:
    """A payout's event, for the payee's endpoints and finance's; ``amounts`` is currency →
    decimal string; a run's payout names its run and carries its source amounts, rates and
    rounding. Its id comes from the payout's idempotency key."""
    data: dict[str, Any] = {
        "payout_id": payout_id,
        "affiliate_id": affiliate_id,
        "amounts": dict(sorted(amounts.items())),
        "up_to": up_to.isoformat(),
    }
    if run_id is not None:
        data["run_id"] = run_id
    if detail is not None:
        data |= {k: detail[k] for k in ("source_amounts", "fx_rate", "rounding")}
    return Notice(
        event_id(WebhookEvent.PAYOUT_CREATED, f"payout:{payout_key}"),
        WebhookEvent.PAYOUT_CREATED,
        at,
        data,
        affiliate_id,
        None,
        None,
    )


@dataclass(frozen=True, slots=True)
class EndpointRef:
    """What deciding the recipients needs of an endpoint."""

    id: str
    owner_kind: OwnerKind
    owner_id: str
    events: frozenset[WebhookEvent]


def recipients(notice: Notice, endpoints: Iterable[EndpointRef]) -> list[str]:
    """The ids of the endpoints that receive ``notice``: those subscribed to its type and
    owned by its affiliate, by its store, or by finance (any finance user's). Sorted."""
    out = []
    for e in endpoints:
        if notice.type not in e.events:
            continue
        if (
            e.owner_kind is OwnerKind.FINANCE
            or (e.owner_kind is OwnerKind.AFFILIATE and e.owner_id == notice.affiliate_id)
            or (e.owner_kind is OwnerKind.STORE and e.owner_id == notice.store_id)
        ):
            out.append(e.id)
    return sorted(out)


# -- URLs and templates --------------------------------------------------------------------


def macros_in(url: str) -> list[str]:
    return _MACRO.findall(url)


def endpoint_problem(url: str, method: Method) -> str | None:
    """Why ``url`` may not be registered for ``method``, or None when it may: an absolute
    http(s) URL with a host, printable ASCII without spaces, at most :data:`URL_MAX`
    characters, no user name or password, no fragment. A GET URL is a template whose
    ``{macro}``s (of :data:`MACROS`) stand only in the path or the query (a value can never
    change the host); a POST URL has none."""
    if len(url) > URL_MAX:
        return f"at most {URL_MAX} characters"
    if not url.isascii() or not url.isprintable() or " " in url:
        return "only printable ASCII without spaces (percent-encode the rest, punycode a host)"
    names = macros_in(url)
    if method is Method.POST and ("{" in url or "}" in url):
        return "a POST endpoint receives the event as its body: no {macro} in its URL"
    unknown = sorted({n for n in names if n not in MACROS})
    if unknown:
        return f"unknown macro {{{unknown[0]}}} (known: {', '.join(sorted(MACROS))})"
    bare = _MACRO.sub("", url)
    if "{" in bare or "}" in bare:
        return "a brace that is not part of a {macro}"
    try:
        raw = urlsplit(url)
    except ValueError:
        return "not a URL (a bad host or port)"
    if "{" in raw.netloc or "}" in raw.netloc or "{" in raw.scheme:
        return "a {macro} may stand only in the path or the query"
    filled = _MACRO.sub("x", url)
    problem = http_url_problem(filled)
    if problem is not None:
        return problem
    parts = urlsplit(filled)
    if parts.fragment:
        return "no fragment (it is never sent)"
    return None


def expand(template: str, values: Mapping[str, object]) -> str:
    """The template with each ``{macro}`` replaced by its value, percent-encoded (every
    reserved character, so a value can add no parameter or path segment); a value that is
    None is empty. An unknown macro raises :class:`InvalidEndpoint`."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in MACROS:
            raise InvalidEndpoint(f"unknown macro {{{name}}}")
        value = values.get(name)
        return "" if value is None else quote(str(value), safe="")

    return _MACRO.sub(one, template)


def macro_values(body: Mapping[str, Any]) -> dict[str, object]:
    """The macros' values for an event ``body`` (:meth:`Notice.body`); those it has no value
    for are empty."""
    data: Mapping[str, Any] = body.get("data") or {}
    return {
        "order_id": data.get("order_id"),
        "store_id": data.get("store_id"),
        "click_id": data.get("click_id"),
        "sub_id": data.get("sub_id"),
        "status": data.get("status"),
        "commission": data.get("commission"),
        "currency": data.get("currency"),
        "event_id": body.get("id"),
    }


#: IPv6 ranges that carry an IPv4 address in their last 32 bits: NAT64's well-known prefix
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
#: refused outright: IPv4-compatible (deprecated, ``::a.b.c.d``), NAT64 for local use (where
#: the IPv4 address sits depends on the prefix length the network chose), Teredo
_REFUSED_V6: Final = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("2001::/32"),
)


def address_allowed(address: str, allow_private: bool) -> bool:
    """Whether a delivery may connect to ``address`` (an IP literal): any when private
    targets are allowed (development, tests), else only globally routable unicast ones —
    never loopback, private, link-local (cloud metadata), multicast or reserved ranges (an
    endpoint cannot be aimed at the platform's own network). An IPv6 address that carries an
    IPv4 one is judged by it too: IPv4-mapped (``::ffff:a.b.c.d``), NAT64 (``64:ff9b::/96``)
    and 6to4 (``2002::/16``); IPv4-compatible (``::/96``), local-use NAT64
    (``64:ff9b:1::/48``) and Teredo (``2001::/32``) are refused outright."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if allow_private:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif any(ip in net for net in _REFUSED_V6):
            return False
        else:
            inner = ip.sixtofour
            if ip in _NAT64:
                inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            if inner is not None and not _public(inner):
                return False
    return _public(ip)


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


# -- secrets and signatures ----------------------------------------------------------------


def endpoint_secret(secret_key: str, endpoint_id: str, version: int) -> str:
    """An endpoint's signing secret: derived from the deployment's secret key, so none is
    stored; a rotation bumps ``version``."""
    mac = hmac.new(
        secret_key.encode(), f"endpoint:{endpoint_id}:{version}".encode(), hashlib.sha256
    )
    return "whsec_" + mac.hexdigest()


def signed_content(method: Method, body: bytes, url: str) -> bytes:
    """What is signed: a POST's raw body; for a GET (no body), the path and query of the URL
    requested (``/hook?order=o-1``)."""
    if method is Method.POST:
        return body
    parts = urlsplit(url)
    return (parts.path or "/").encode() + (b"?" + parts.query.encode() if parts.query else b"")


def signature(secrets: Sequence[str], timestamp: int, content: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<content>")>``, with one ``v1``
    per secret (the new and the previous one while a rotation overlaps)."""
    return ",".join(
        [f"t={timestamp}", *(f"v1={sign_body(s, timestamp, content)}" for s in secrets)]
    )


def verify(secret: str, header: str, content: bytes, now_unix: int, tolerance_s: int = 300) -> bool:
    """A receiver's check (as docs/webhooks.md shows): a ``v1`` of ``header`` is the HMAC of
    ``content`` with ``secret`` and ``t`` is within ``tolerance_s`` of now (the storefront
    signature's check, :func:`shared.secrets.verify_signature`: the same scheme)."""
    return verify_signature([secret], header, content, now_unix, tolerance_s) is None


def signing_secrets(
    secret_key: str,
    endpoint_id: str,
    version: int,
    previous_until: datetime | None,
    now: datetime,
) -> list[str]:
    """The secrets a delivery at ``now`` is signed with: the current one, and the previous one
    until ``previous_until`` (a rotation's overlap)."""
    out = [endpoint_secret(secret_key, endpoint_id, version)]
    if previous_until is not None and now < previous_until and version > 1:
        out.append(endpoint_secret(secret_key, endpoint_id, version - 1))
    return out


# -- retries and disabling -----------------------------------------------------------------


def backoff(failures: int) -> timedelta:
    """The pause after the ``failures``-th failed attempt in a row (≥ 1): 1 s, 2 s, 4 s, …,
    at most an hour."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    if failures > 13:  # 2**12 s is already past the cap
        return MAX_RETRY
    return min(FIRST_RETRY * 2 ** (failures - 1), MAX_RETRY)


def next_attempt(failures: int, since: datetime, now: datetime) -> datetime | None:
    """After the ``failures``-th failed attempt (at ``now``) of a delivery first due at
    ``since``: when to try again, or None to give up. The last try is at ``since`` + 72 h
    exactly; a failure then or later gives up."""
    deadline = since + GIVE_UP_AFTER
    if now >= deadline:
        return None
    return min(now + backoff(failures), deadline)


def is_success(status_code: int | None) -> bool:
    """A 2xx answer delivers; anything else (a redirect too: none is followed), a timeout or a
    refused connection is a failure."""
    return status_code is not None and 200 <= status_code < 300


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """What the worker keeps of an endpoint's recent attempts."""

    consecutive_failures: int
    disabled: bool
    disabled_reason: str | None


def after_attempts(health: EndpointHealth, outcomes: Sequence[tuple[bool, str]]) -> EndpointHealth:
    """The endpoint's health after one round of attempts whose (success, description) are
    ``outcomes``, in the order they ended. A round counts as **at most one failure**: a
    success resets the count of failures in a row, and failures after the round's last
    success (or all of them, if none succeeded) add one; so a receiver restarting for two
    seconds, which fails every delivery of the round that is due meanwhile, costs one failure,
    not one per delivery. The :data:`DISABLE_AFTER_FAILURES`-th failure in a row disables the
    endpoint, with the last failure as the reason. A disabled endpoint stays disabled (its
    owner re-enables it). No outcomes: nothing changes. The delivery worker records each
    attempt as it ends (a round of one): with :func:`schedule`'s per-endpoint limit, a
    receiver restarting costs at most that many failures."""
    failures = health.consecutive_failures
    disabled, reason = health.disabled, health.disabled_reason
    last_ok = max((i for i, (ok, _) in enumerate(outcomes) if ok), default=-1)
    if last_ok >= 0:
        failures = 0
    failed_after = [what for ok, what in outcomes[last_ok + 1 :] if not ok]
    if failed_after:
        failures += 1
        if failures >= DISABLE_AFTER_FAILURES and not disabled:
            disabled = True
            reason = f"{failures} consecutive failed deliveries; last: {failed_after[-1]}"[:500]
    return EndpointHealth(failures, disabled, reason)


# -- scheduling: which due deliveries a worker starts --------------------------------------

#: attempts in flight at once per endpoint (across workers), while it is healthy
ENDPOINT_CONCURRENCY: Final = 2
#: a worker's attempts in flight at once
WORKER_SLOTS: Final = 32
#: of which one owner's endpoints may hold at most
OWNER_SHARE: Final = 8
#: how much of the answer's body an attempt keeps
RESPONSE_BODY_MAX: Final = 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """How a worker shares itself: ``slots`` attempts in flight at once, at most
    ``per_endpoint`` of them to one endpoint (1 while it is failing: a single probe) and at
    most ``per_owner`` to the endpoints of one owner."""

    slots: int = WORKER_SLOTS
    per_endpoint: int = ENDPOINT_CONCURRENCY
    per_owner: int = OWNER_SHARE

    def __post_init__(self) -> None:
        if min(self.slots, self.per_endpoint, self.per_owner) < 1:
            raise ValueError("every limit is at least 1")


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery that may be started, with what the rule needs of its endpoint."""

    delivery_id: int
    endpoint_id: str
    owner: str  # "<kind>:<id>"
    failing: bool  # the endpoint's last attempt failed


def endpoint_limit(limits: Limits, failing: bool) -> int:
    """How many attempts one endpoint may have in flight: one probe while it is failing."""
    return 1 if failing else limits.per_endpoint


def schedule(
    due: Sequence[Due],
    limits: Limits,
    busy: int,
    busy_endpoints: Mapping[str, int],
    busy_owners: Mapping[str, int],
) -> list[Due]:
    """The deliveries to start now, in the order of ``due`` (oldest first): each is taken
    while the worker has a free slot (``busy`` of :attr:`Limits.slots` in flight), its
    endpoint is under its limit (:func:`endpoint_limit`; ``busy_endpoints``: its attempts in
    flight, every worker's) and its owner under :attr:`Limits.per_owner` (``busy_owners``:
    this worker's attempts in flight per owner). Greedy and maximal: a delivery left out
    would break one of these limits, so one slow endpoint holds at most ``per_endpoint``
    slots and one owner at most ``per_owner``, whatever its backlog; nobody waits for a
    round. A delivery listed twice is taken once."""
    endpoints, owners = dict(busy_endpoints), dict(busy_owners)
    free = limits.slots - busy
    taken: list[Due] = []
    seen: set[int] = set()
    for d in due:
        if free <= 0:
            break
        if d.delivery_id in seen:
            continue
        if endpoints.get(d.endpoint_id, 0) >= endpoint_limit(limits, d.failing):
            continue
        if owners.get(d.owner, 0) >= limits.per_owner:
            continue
        seen.add(d.delivery_id)
        taken.append(d)
        endpoints[d.endpoint_id] = endpoints.get(d.endpoint_id, 0) + 1
        owners[d.owner] = owners.get(d.owner, 0) + 1
        free -= 1
    return taken


def response_excerpt(body: bytes) -> str:
    """What an attempt keeps of the answer's body: its first :data:`RESPONSE_BODY_MAX` bytes
    as UTF-8 (a byte sequence that is not, or a character cut at the end, becomes U+FFFD; a
    NUL too, which PostgreSQL text cannot hold)."""
    text = body[:RESPONSE_BODY_MAX].decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")
