"""Tracker use cases: turn link visits and storefront posts into events on Kafka."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from services.tracker.clickproducer import ClickBatcher
from services.tracker.directory import Claim, Directory
from services.tracker.errors import (
    EVENT_TIME_ERRORS,
    NotApproved,
    ProductNotFound,
    StoreNotFound,
    StoreNotInProgram,
    Unauthorized,
    Unavailable,
)
from services.tracker.links import InvalidCode, Link, LinkSigner
from services.tracker.quality import FloodGuard, SelfReferral, cut_user_agent, is_bot, suspicion
from services.tracker.schemas import EventResult
from services.tracker.spool import ClickSpool, SpoolFull
from shared.clock import Clock
from shared.config import Settings
from shared.events import (
    Click,
    OrderPlaced,
    PageView,
    ProductUpserted,
    StoreEntry,
    StorefrontEvent,
    Topic,
    encode,
    storefront_event_adapter,
)
from shared.ids import new_id
from shared.partners import ClickSuspicion, click_suspicion, may_promote
from shared.privacy import Consent, may_set_cookie
from shared.retry import Transient
from shared.secrets import (
    hash_key,
    previous_secret_accepted,
    verify_signature,
    webhook_secret,
)
from shared.visitors import VisitorCookies

log = logging.getLogger(__name__)

#: how far ahead of the tracker's clock an event may be (clocks drift)
MAX_CLOCK_SKEW = timedelta(minutes=5)


def accepted_secret_versions(store: StoreEntry, grace: timedelta, now: datetime) -> list[int]:
    """The webhook secret versions of ``store`` that verify a signature at ``now``: the current
    one, and the previous one while its rotation's grace lasts
    (:func:`shared.secrets.previous_secret_accepted`). An entry published before the grace
    existed carries no end: its previous version lasts ``grace`` from the entry's
    ``updated_at``, never until the next rotation."""
    until = store.previous_secret_until
    if until is None and len(store.secret_versions) > 1:
        until = store.updated_at + grace
    if previous_secret_accepted(until, now):
        return list(store.secret_versions)
    return store.secret_versions[:1]


def append_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` added to its query string (existing parameters kept)."""
    base, query, fragment = _split_landing(url)
    added = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params.items())
    return f"{base}?{query}&{added}{fragment}" if query else f"{base}?{added}{fragment}"


#: what quote_plus leaves as it is
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")


def _quote(value: str) -> str:
    """``quote_plus(value)``, as urlencode writes it; ids and names of plain characters (all
    the minted ones) skip it, which halves the cost of a redirect's URL."""
    return value if _PLAIN.fullmatch(value) else quote_plus(value)


@functools.lru_cache(maxsize=4096)
def _split_landing(url: str) -> tuple[str, str, str]:
    """``url`` without its query and fragment, its query re-encoded as :func:`urlencode`
    writes it, and ``#fragment`` (or ''): parsed once per landing page, not once per click
    (a cache of a few thousand pages, each at most a template's length)."""
    parts = urlsplit(url)
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True))
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return urlunsplit(parts._replace(query="", fragment="")), query, fragment


def store_page(template: str) -> str:
    """The store page of a landing template: its origin (a link without product lands there)."""
    parts = urlsplit(template)
    return urlunsplit((parts.scheme, parts.netloc, "/", "", ""))


def event_time_problem(occurred_at: datetime, now: datetime, max_backdate: timedelta) -> str | None:
    """Why an event time is refused (``occurred_too_long_ago``, ``occurred_in_future``), or
    None when it is within ``[now − max_backdate, now + 5 minutes]``."""
    if occurred_at < now - max_backdate:
        return "occurred_too_long_ago"
    if occurred_at > now + MAX_CLOCK_SKEW:
        return "occurred_in_future"
    return None


def holds_nul(value: Any) -> bool:
    """True when any string of a decoded JSON value, keys included, holds a NUL character.
    Iterative, so that no nesting depth can exhaust the stack."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


@dataclass
class TrackerService:
    settings: Settings
    signer: LinkSigner
    #: None until Kafka was reached (the tracker starts without it: clicks go to the spool,
    #: storefront events are answered 503)
    producer: AIOKafkaProducer | None
    clock: Clock
    directory: Directory
    spool: ClickSpool
    flood: FloodGuard = field(init=False)
    visitors: VisitorCookies = field(init=False)
    self_referral: SelfReferral = field(init=False)
    metrics: Counter[str] = field(default_factory=Counter)
    _batcher: ClickBatcher | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._clicks_topic = self.settings.topic(Topic.CLICKS)
        self.flood = FloodGuard(
            self.settings.flood_clicks_per_minute, max_keys=self.settings.flood_max_keys
        )
        self.self_referral = SelfReferral(max_keys=self.settings.self_referral_max_keys)
        self.visitors = VisitorCookies(self.settings.secret_key)

    def sweep(self, now: float) -> None:
        """Forget what expired: flood counters, self-referral addresses, event ids past the
        dedup horizon. They also expire as they are used; the tracker's lifespan calls this
        on a timer so that idle memories shrink too."""
        self.flood.sweep(now)
        self.self_referral.sweep(now)
        self.directory.event_ids.expire(time.time())  # wall time, as its ids are stamped
        self.metrics["flood_counters_forgotten_early"] = self.flood.forgotten
        self.metrics["self_referral_forgotten_early"] = self.self_referral.forgotten
        self.metrics["event_ids_forgotten_early"] = self.directory.event_ids.forgotten

    # -- links ------------------------------------------------------------------------------

    def affiliate_for_key(self, api_key: str | None) -> str:
        affiliate = self.directory.affiliate_keys.get(hash_key(api_key)) if api_key else None
        if affiliate is None:
            if api_key and not self.directory.caught_up:
                raise Unavailable("catching_up")  # the key may be newer than what we hold
            raise Unauthorized("unknown affiliate key")
        return affiliate

    def create_link(
        self,
        affiliate_id: str,
        store_id: str,
        product_id: str | None,
        sub_id: str | None,
        ip: str | None,
    ) -> str:
        store = self.directory.stores.get(store_id)
        if store is None:
            raise StoreNotFound(store_id=store_id)
        if product_id is not None and product_id not in self.directory.products.get(
            store_id, set()
        ):
            raise ProductNotFound(product_id=product_id)
        if not store.in_program:
            raise StoreNotInProgram()
        self.check_partner(store_id, affiliate_id)
        if ip:
            self.self_referral.saw(affiliate_id, ip, self.clock.now().timestamp())
        return self.signer.sign(Link(affiliate_id, store_id, product_id, sub_id))

    def check_partner(self, store_id: str, affiliate_id: str) -> None:
        """:class:`NotApproved` unless the affiliate may promote the store (partner approval:
        :func:`shared.partners.may_promote` on what the directory holds)."""
        enrollment, status = self.directory.standing(store_id, affiliate_id)
        if not may_promote(enrollment, status):
            raise NotApproved(
                store_id=store_id,
                affiliate_id=affiliate_id,
                enrollment=enrollment.value,
                status=status.value if status is not None else None,
            )

    def partner_suspicion(self, link: Link) -> ClickSuspicion | None:
        """Why a click of ``link`` is suspicious by its affiliate's standing with the store."""
        return click_suspicion(*self.directory.standing(link.store_id, link.affiliate_id))

    def landing_url(self, link: Link) -> str:
        store = self.directory.stores.get(link.store_id)
        template = store.landing_url_template if store else self.settings.landing_url_template
        if link.product_id:
            return template.format(store_id=link.store_id, product_id=link.product_id)
        if store:
            return store_page(template)
        return self.settings.store_url_template.format(store_id=link.store_id)

    # -- clicks -----------------------------------------------------------------------------

    async def follow(
        self,
        code: str,
        *,
        visitor_cookie: str | None,
        record: bool,
        ip: str | None,
        user_agent: str | None,
        gpc: bool = False,
        declared_consent: bool | None = None,
    ) -> tuple[str, str | None]:
        """The redirect of ``GET /r/{code}``: ``(landing URL, visitor cookie value)``, the click
        written durably first when ``record`` (not for HEAD or a prefetch). The visitor is the
        one the cookie carries if its tag verifies, else a new one (a new cookie); the landing
        URL carries the plain id. :class:`InvalidCode` for a code we did not sign.

        Consent (:func:`shared.privacy.may_set_cookie`, the store's program setting, ``gpc``:
        ``Sec-GPC: 1``, ``declared_consent``: the storefront's ``consent=``): without it the
        cookie is neither read nor written (the cookie value is None) and the visitor id rides
        on the landing URL only."""
        link = self.signer.verify(code)
        store = self.directory.stores.get(link.store_id)
        consent = store.consent if store is not None else Consent.NOT_REQUIRED
        allowed = may_set_cookie(consent, gpc=gpc, declared_consent=declared_consent)
        if not allowed:
            visitor_cookie = None
            self.metrics["redirects_without_cookie"] += 1
        known = self.visitors.open(visitor_cookie)
        visitor_id = known or new_id()
        params = {"alliance_vid": visitor_id}
        if record:
            try:
                click = self.make_click(
                    link, code, visitor_id, ip, user_agent, self.clock.now(), new_visitor=not known
                )
            except ValidationError:
                # signed before the identifier budget (e.g. a product id over 64 characters):
                # no click can carry it, so the link is as good as unknown
                raise InvalidCode("the link's identifiers are out of bounds") from None
            await self.record_click(click)
            params["alliance_click"] = click.click_id
        cookie = self.visitors.seal(visitor_id) if allowed else None
        return append_query(self.landing_url(link), params), cookie

    def make_click(
        self,
        link: Link,
        code: str,
        visitor_id: str,
        ip: str | None,
        user_agent: str | None,
        occurred_at: datetime,
        click_id: str | None = None,
        *,
        new_visitor: bool = False,
    ) -> Click:
        """The click of ``link`` by ``visitor_id``, its quality judged. ``new_visitor``: the
        id was minted for this click, so it has no earlier clicks to count (and no flood
        counter is kept for it: a first-time visitor costs the flood memory nothing)."""
        user_agent = cut_user_agent(user_agent)  # before any matching: bounded work and memory
        now = self.clock.now()
        ts = now.timestamp()
        who = ([] if new_visitor else [f"v:{visitor_id}"]) + ([f"ip:{ip}"] if ip else [])
        flooded = self.flood.flooded(code, who, ts)
        # a banned or unapproved affiliate's click first: it never counts, whatever else
        standing = self.partner_suspicion(link)
        reason = standing.value if standing is not None else None
        reason = reason or suspicion(
            bot=is_bot(user_agent),
            flooded=flooded,
            self_referral=self.self_referral.is_self(link.affiliate_id, ip, ts),
        )
        self.metrics["clicks"] += 1
        if reason:
            self.metrics[f"clicks_suspicious_{reason}"] += 1
        return Click(
            event_id=click_id or new_id(),
            occurred_at=occurred_at,
            received_at=now,
            affiliate_id=link.affiliate_id,
            store_id=link.store_id,
            product_id=link.product_id,
            sub_id=link.sub_id,
            link_code=code,
            visitor_id=visitor_id,
            suspicious=reason is not None,
            suspicious_reason=reason,
            ip=ip,
            user_agent=user_agent,
        )

    async def record_click(self, click: Click, *, required: bool = False) -> None:
        """Return once the click is durable: acknowledged by Kafka within the deadline, else
        fsynced to the local spool (sent later). Never waits long on a broken broker, nor at
        all while Kafka has not been reached since start. When neither can take the click
        (the spool is full or failing): if ``required`` (a server click, whose sender can
        retry) :class:`Unavailable` is raised, so that nothing answered 202 is lost;
        otherwise (a buyer's redirect, which goes on regardless) it is lost and counted."""
        payload = encode(click)
        producer = self.producer
        if producer is not None:
            batcher = self._batcher
            if batcher is None or batcher.producer is not producer:
                timeout_s = self.settings.click_ack_timeout_ms / 1000
                batcher = self._batcher = ClickBatcher(
                    producer, self._clicks_topic, timeout_s, self.metrics
                )
            if await batcher.send(click.visitor_id.encode(), payload):
                return
            # not acknowledged in time, or refused: fall back to the spool
            log.warning("click %s spooled (not acknowledged by Kafka)", click.click_id)
        self.metrics["clicks_spooled"] += 1
        try:
            await self.spool.append(payload)
        except (SpoolFull, OSError) as exc:
            if required:  # its sender retries: refused, not lost
                self.metrics["clicks_refused_spool_full"] += 1
                log.warning("click %s refused: %s", click.click_id, exc)
                raise Unavailable("spool_full") from None
            self.metrics["clicks_lost_spool_full"] += 1
            log.error("click %s lost: %s", click.click_id, exc)

    async def send_spooled(self, records: list[bytes]) -> None:
        """Send spooled clicks and return once Kafka acknowledged every one (the spool
        drainer's work: no connection to Kafka yet is a transient failure)."""
        if self.producer is None:
            raise Transient("no connection to Kafka yet")
        topic = self.settings.topic(Topic.CLICKS)
        futures = []
        for raw in records:
            click = Click.model_validate_json(raw)
            futures.append(await self.producer.send(topic, raw, key=click.visitor_id.encode()))
        await asyncio.gather(*futures)

    # -- storefront events ------------------------------------------------------------------

    def check_signature(self, store_id: str | None, header: str | None, body: bytes) -> str:
        """The store whose webhook secret signed ``body``, else 401."""
        store = self.directory.stores.get(store_id) if store_id else None
        if store is None and store_id and not self.directory.caught_up:
            raise Unavailable("catching_up")  # the store may be newer than what we hold
        if store is None or not header:
            raise Unauthorized("missing store or signature" if store else "unknown store")
        now = self.clock.now()
        grace = timedelta(seconds=self.settings.secret_rotation_grace_s)
        secrets_ = [
            webhook_secret(self.settings.secret_key, store.store_id, v)
            for v in accepted_secret_versions(store, grace, now)
        ]
        problem = verify_signature(
            secrets_, header, body, int(now.timestamp()), self.settings.event_max_age_s
        )
        if problem is not None:
            raise Unauthorized(f"signature {problem}")
        return store.store_id

    def validate_events(
        self, store_id: str, raw_events: list[Any]
    ) -> tuple[list[StorefrontEvent], list[EventResult]]:
        """Validate each event on its own; a bad one never drops its valid neighbours, and
        none raises: a refused event gets a machine-readable ``code`` (``object_required``,
        ``nul_character``, ``store_mismatch``, ``occurred_too_long_ago``,
        ``occurred_in_future``, or the type of its first validation error, such as
        ``currency_unknown`` or ``order_total_out_of_range``). Every accepted event carries
        the tracker's arrival time (``received_at``), whatever the client sent. An event id
        twice in the batch is a duplicate the second time; whether an id was sent before is
        :meth:`publish_events`' business (it is known once Kafka acknowledged it)."""
        valid: list[StorefrontEvent] = []
        results: list[EventResult] = []
        in_batch: set[str] = set()
        now = self.clock.now()
        for index, raw in enumerate(raw_events):
            judged = self._judge(index, raw, store_id, now)
            if isinstance(judged, EventResult):
                results.append(judged)
            elif judged.event_id in in_batch:
                results.append(
                    EventResult(index=index, event_id=judged.event_id, status="duplicate")
                )
            else:
                in_batch.add(judged.event_id)
                valid.append(judged)
                results.append(
                    EventResult(index=index, event_id=judged.event_id, status="accepted")
                )
        return valid, results

    def _judge(
        self, index: int, raw: Any, store_id: str, now: datetime
    ) -> StorefrontEvent | EventResult:
        """One event of a post (the ``index``-th) as validated, with the tracker's arrival time
        ``now``, or the result that refuses it (see :meth:`validate_events`)."""
        if not isinstance(raw, dict):
            return _rejected(index, None, "object_required", "an event is a JSON object")
        event_id = raw.get("event_id")
        if holds_nul(raw):
            # PostgreSQL cannot store a NUL: refused here, never left to a consumer
            return _rejected(index, event_id, "nul_character", "a string holds a NUL character")
        if not isinstance(raw.get("type", ""), str):
            # pydantic writes out the repr of a bad discriminator: unbounded when nested
            return _rejected(index, event_id, "union_tag_invalid", "type is a string", "type")
        try:
            event = storefront_event_adapter.validate_python(
                {**raw, "store_id": store_id, "received_at": now}
            )
        except ValidationError as exc:
            found = exc.errors(include_url=False, include_input=False)
            errors = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in found]
            return EventResult.refused(index, event_id, found[0]["type"], errors)
        if raw.get("store_id") not in (None, store_id):
            return _rejected(
                index,
                event_id,
                "store_mismatch",
                "events may only be posted by their own store",
                "store_id",
            )
        max_backdate = timedelta(days=self.settings.event_max_backdate_days)
        problem = event_time_problem(event.occurred_at, now, max_backdate)
        if problem is not None:
            message = f"occurred_at is outside [now - {max_backdate.days} days, now + 5 min]"
            return _rejected(index, event_id, problem, message, "occurred_at")
        return event

    async def publish_events(
        self, store_id: str, events: list[StorefrontEvent], results: list[EventResult]
    ) -> list[EventResult]:
        """Send the accepted ``events`` (distinct ids, from :meth:`validate_events`) and return
        once Kafka acknowledged each of them, with ``results`` updated: an event whose id was
        already acknowledged (sent before, or by a concurrent post of the same id that this one
        waited for) is a ``duplicate`` and is not sent again.

        An id counts as seen only once Kafka acknowledged it. If that does not happen for
        every event within ``event_ack_timeout_ms`` (Kafka down or slow, a send refused, or a
        concurrent send of the same id failed), :class:`Unavailable` (503) is raised: the
        events acknowledged meanwhile are seen (a retry reports them duplicates), the others
        are sent by the retry. A send still queued in the producer when the deadline passes
        stays *in flight* until Kafka answers it, so a retry meanwhile waits for it instead of
        sending it a second time."""
        if not events:
            return results
        producer = self.producer
        if producer is None:
            raise Unavailable("kafka_unreachable")
        if not self.directory.caught_up:
            raise Unavailable("catching_up")  # an id may be on a topic we have not read yet
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.event_ack_timeout_ms / 1000
        mine, others, duplicates = self._claim(store_id, events)
        acks, failure = await self._queue(producer, store_id, mine, deadline)
        waiting: list[asyncio.Future[Any]] = [*acks, *others]
        late: set[asyncio.Future[Any]] = set()
        if waiting and failure is None:
            # asyncio.wait, not gather: the futures must outlive a timeout (they settle later)
            _, late = await asyncio.wait(waiting, timeout=max(0.0, deadline - loop.time()))
        failed = failure is not None or bool(late) or not all(_acknowledged(f) for f in waiting)
        if failed:
            self.metrics["events_unavailable"] += len(events)
            log.warning(
                "%d events of %s not acknowledged within %d ms (%s): answered 503",
                len(events),
                store_id,
                self.settings.event_ack_timeout_ms,
                type(failure).__name__ if failure else f"{len(late)} pending",
            )
            raise Unavailable("not_acknowledged")
        return [
            EventResult(index=r.index, event_id=r.event_id, status="duplicate")
            if r.status == "accepted" and r.event_id in duplicates
            else r
            for r in results
        ]

    def _claim(
        self, store_id: str, events: list[StorefrontEvent]
    ) -> tuple[list[StorefrontEvent], list[asyncio.Future[bool]], set[str]]:
        """Claim each event's id (:meth:`EventIds.claim`): the events this post sends, the
        outcomes of concurrent sends of the others to wait for, and the ids that are
        duplicates (already seen, or seen once the concurrent send is acknowledged)."""
        ids = self.directory.event_ids
        mine: list[StorefrontEvent] = []
        others: list[asyncio.Future[bool]] = []
        duplicates: set[str] = set()
        for event in events:
            claim = ids.claim(store_id, event.event_id)
            if claim is Claim.NEW:
                mine.append(event)
            elif claim is Claim.IN_FLIGHT:
                others.append(ids.outcome(store_id, event.event_id))
                duplicates.add(event.event_id)  # if that send is acknowledged
            else:
                duplicates.add(event.event_id)
        return mine, others, duplicates

    async def _queue(
        self,
        producer: AIOKafkaProducer,
        store_id: str,
        mine: list[StorefrontEvent],
        deadline: float,
    ) -> tuple[list[asyncio.Future[Any]], Exception | None]:
        """Queue ``mine`` in the producer until ``deadline``, each settling its claim when
        Kafka answers (:meth:`_settle`); returns their futures and what stopped the queueing
        (the deadline, or a send refused), if anything did. The claims of events never
        queued end here: no outcome will come, and a retry sends them."""
        ids = self.directory.event_ids
        acks: list[asyncio.Future[Any]] = []
        failure: Exception | None = None
        try:
            async with asyncio.timeout_at(deadline):
                for event in mine:
                    topic, key = self._route(event)
                    ack = await producer.send(
                        self.settings.topic(topic), encode(event), key=key.encode()
                    )
                    ack.add_done_callback(functools.partial(self._settle, store_id, event))
                    acks.append(ack)
        except Exception as exc:  # the deadline, or a send refused: the rest is not queued
            failure = exc
        finally:
            # never queued (refused, past the deadline, or the request was cancelled): no
            # outcome will come, so the claim ends here and a retry sends them
            for event in mine[len(acks) :]:
                ids.settle(store_id, event.event_id, False, time.time())
        return acks, failure

    def _settle(self, store_id: str, event: StorefrontEvent, ack: asyncio.Future[Any]) -> None:
        """Kafka answered a send (or it was cancelled): the id is seen, or free again."""
        ok = _acknowledged(ack)
        # the dedup horizon is wall time (the feed reads ids back with their Kafka timestamps)
        self.directory.event_ids.settle(store_id, event.event_id, ok, time.time())
        self.metrics[f"events_{event.type}" if ok else "events_send_failed"] += 1

    @staticmethod
    def _route(event: StorefrontEvent) -> tuple[Topic, str]:
        if isinstance(event, PageView):
            return Topic.PAGE_VIEWS, event.visitor_id
        if isinstance(event, ProductUpserted):
            return Topic.CATALOG, f"{event.store_id}:{event.product_id}"
        if isinstance(event, OrderPlaced):
            # placed orders go with the visitor's clicks (the attribution join)
            return Topic.ORDERS, event.visitor_id
        return Topic.ORDERS, f"{event.store_id}:{event.order_id}"

    def check_click_time(self, occurred_at: datetime) -> None:
        """422 for a server click outside ``[now − max backdate, now + 5 minutes]``."""
        max_backdate = timedelta(days=self.settings.event_max_backdate_days)
        problem = event_time_problem(occurred_at, self.clock.now(), max_backdate)
        if problem is not None:
            raise EVENT_TIME_ERRORS[problem](
                f"occurred_at is outside [now - {max_backdate.days} days, now + 5 min]"
            )


def _rejected(
    index: int, event_id: object, code: str, message: str, field_: str | None = None
) -> EventResult:
    error = {"loc": [field_] if field_ else [], "type": code, "msg": message}
    return EventResult.refused(index, event_id, code, [error])


def _acknowledged(outcome: asyncio.Future[Any]) -> bool:
    """A send's future resolved without error; for a concurrent post's outcome, True."""
    if not outcome.done() or outcome.cancelled() or outcome.exception() is not None:
        return False
    return outcome.result() is not False
