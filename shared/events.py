"""The one shared vocabulary of Alliance: topic names and event schemas (version 1).

Every event carries ``event_id`` (its idempotency key), ``type``, ``v`` (schema version) and a
timezone-aware UTC ``occurred_at`` (event time; arrival time is recorded apart where it
matters). Amounts are decimal strings on the wire and ``Decimal`` in memory. Services never
define their own copy of an event: they import it from here.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.coupons import COUPON_CODE_MAX, COUPON_CODE_PATTERN, CouponPolicy
from shared.money import MAX_MINOR_DIGITS, fits_currency, is_currency
from shared.partners import Enrollment, PartnerStatus
from shared.privacy import Consent

SCHEMA_VERSION: Final = 1


class Topic(StrEnum):
    """Kafka topics (names before the deployment's prefix)."""

    CLICKS = "clicks"  # tracker → attribution: every click, keyed by visitor id
    ORDERS = "orders"  # tracker → attribution, commission: storefront order events
    ATTRIBUTIONS = "attributions"  # attribution → commission: decisions, keyed store:order
    PAGE_VIEWS = "pageviews"  # tracker → commission: storefront page views, keyed by visitor
    CATALOG = "catalog"  # tracker → tracker, commission: product upserts, keyed store/product
    DIRECTORY = "directory"  # commission → tracker: stores and affiliates (compacted, by id)
    DEAD_LETTERS = "dead-letters"  # any consumer: messages that can never be processed
    PRIVACY = "privacy"  # commission → attribution: visitors erased, keyed by the visitor's hash


#: Topic configuration beyond partitions and replication (the topics job and the Helm chart's
#: KafkaTopic resources apply it). The directory and the catalog are tables the tracker reads
#: whole when it starts: compacted (the latest record of each key is kept for ever), never
#: expired by retention. The directory keeps every version for 90 days before compaction
#: (``alliance attribution rebuild`` reads the programs' window history from it).
TOPIC_CONFIGS: dict[Topic, dict[str, str]] = {
    Topic.DIRECTORY: {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": str(90 * 24 * 3600 * 1000),
    },
    Topic.CATALOG: {"cleanup.policy": "compact"},
}


def topic_config(topic: Topic, retention_hours: int) -> dict[str, str]:
    """The configuration of ``topic``: :data:`TOPIC_CONFIGS`'s, and for the topics that
    expire (all but the compacted ones) ``retention.ms`` from ALLIANCE_RETENTION_TOPIC_HOURS,
    which the idempotency records' retention must exceed (docs/retention.md)."""
    config = dict(TOPIC_CONFIGS.get(topic, {}))
    if config.get("cleanup.policy") != "compact":
        config["retention.ms"] = str(retention_hours * 3600 * 1000)
    return config


#: Event times the services can compute with: windows, holds, grace periods and report ranges
#: around them (days to a few years) stay inside what ``datetime`` represents. An order dated
#: 9999-12-31 that reached a consumer used to fail later, in arithmetic on a batch it was no
#: longer part of (a held order released), which stalled everyone's orders behind it.
EARLIEST_TIME: Final = datetime(1000, 1, 1, tzinfo=UTC)
LATEST_TIME: Final = datetime(9000, 1, 1, tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00, before the first representable UTC
        raise PydanticCustomError("datetime_out_of_range", "the time is out of range") from None
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise PydanticCustomError(
            "datetime_out_of_range", "the time is out of range (years 1000 to 8999)"
        )
    return value


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('amounts are decimal strings such as "12.30", never floats')
    return value


def _decimal_string(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite decimal")
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]

#: what a time in a query string must look like: an ISO 8601 date, ``T`` (or a space) and a
#: time (ASCII digits only: ``\d`` takes any script's); the offset is then required by
#: :data:`UtcDatetime`. Pydantic alone would take ``?to=0`` as 1970-01-01 (unix seconds).
ISO_DATETIME_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}"
ISO_DATE_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_ISO_DATETIME, _ISO_DATE = re.compile(ISO_DATETIME_PATTERN), re.compile(ISO_DATE_PATTERN)


def _iso_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not (isinstance(value, str) and _ISO_DATETIME.match(value)):
        raise PydanticCustomError(
            "datetime_not_iso",
            "a time is an ISO 8601 date-time with an offset, such as 2026-01-31T00:00:00Z, "
            "never a number",
        )
    return value


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not (isinstance(value, str) and _ISO_DATE.match(value)):
        raise PydanticCustomError(
            "date_not_iso", "a day is an ISO 8601 date, YYYY-MM-DD, never a number"
        )
    return value


#: A time in a query string (``?from=``, ``?to=``): ISO 8601 with an offset, years 1000 to
#: 8999, never a bare number (``datetime_not_iso``), as its OpenAPI schema states.
IsoDatetime = Annotated[
    UtcDatetime,
    BeforeValidator(_iso_datetime),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": ISO_DATETIME_PATTERN,
            "description": "ISO 8601 date-time with an offset (`Z` or `±hh:mm`), years 1000 "
            "to 8999 (else `datetime_out_of_range`); a bare number such as `0` is refused "
            "(`datetime_not_iso`)",
            "examples": ["2026-01-31T00:00:00Z"],
        }
    ),
]
#: A UTC day in a query string: exactly ``YYYY-MM-DD``, never a bare number (``date_not_iso``).
IsoDate = Annotated[
    date,
    BeforeValidator(_iso_date),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "pattern": ISO_DATE_PATTERN,
            "description": "ISO 8601 date `YYYY-MM-DD`; a bare number such as `0` is refused "
            "(`date_not_iso`)",
            "examples": ["2026-01-31"],
        }
    ),
]
#: Money and rates: accepted as strings or integers (never floats), sent as strings.
DecimalStr = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    AfterValidator(_decimal_string),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
    Field(strict=False),
]
#: an amount per item or refund line: at most a billion (the ledger keeps integer minor units,
#: and quantity × price must fit them)
NonNegativeMoney = Annotated[DecimalStr, Field(ge=0, le=1_000_000_000)]
#: Bounds of money (docs/security.md). A unit price, shipping fee, product price or
#: refund line is at most MAX_AMOUNT major units, a quantity at most MAX_QUANTITY, an order at
#: most MAX_ITEMS lines (a refund too), and an order's total (every line's unit price ×
#: quantity + shipping, so every line total too) at most MAX_ORDER_TOTAL: in the currencies
#: with the finest minor unit (4 digits) that is 10^16 minor units, far inside a signed 64-bit
#: count (9.2 × 10^18), with room for the sums of reports and balances.
MAX_AMOUNT: Final = 1_000_000_000
MAX_QUANTITY: Final = 1_000_000
MAX_ORDER_TOTAL: Final = 10**12
MAX_ITEMS: Final = 500
#: The identifier budget (docs/security.md): every identifier a storefront, affiliate
#: or admin chooses (store, affiliate, order, event, refund, product, category, visitor ids) is
#: at most IDENT_MAX characters, so that every key derived from two or three of them fits its
#: column and its event schema: ``<store>/<event>`` (processed events, 300),
#: ``<store>:<order>:<revision>`` (attribution event ids, a :data:`Key`), ``s2s:<store>:<event>``
#: (server clicks' ids, a :data:`Key`), ``reversal:<store>:<order>/<refund>`` (ledger, 300).
IDENT_MAX: Final = 64
#: Deduplication keys of different sources never share a namespace (docs/security.md:
#: idempotency namespaces): a client's ids may take the shape of any derived key.
#: the longest derived identifier (click ids, attribution event ids)
KEY_MAX: Final = 200
Ident = Annotated[str, Field(min_length=1, max_length=IDENT_MAX, pattern=r"^[A-Za-z0-9._:@\-]+$")]
#: Principal ids (stores, affiliates, finance users) have no ``:``, so that keys such as
#: ``s2s:<store>:<event>`` or ``commission:<store>:<order>`` can never be read two ways.
PrincipalId = Annotated[
    str, Field(min_length=1, max_length=IDENT_MAX, pattern=r"^[A-Za-z0-9._@\-]+$")
]
#: A derived identifier (made by Alliance from idents, never chosen by a client).
Key = Annotated[str, Field(min_length=1, max_length=KEY_MAX, pattern=r"^[A-Za-z0-9._:@/\-]+$")]
#: A coupon code as a buyer types it (:mod:`shared.coupons`): matched case-insensitively.
CouponCode = Annotated[
    str, Field(min_length=1, max_length=COUPON_CODE_MAX, pattern=COUPON_CODE_PATTERN)
]


def _currency(code: str) -> str:
    if not is_currency(code):
        raise PydanticCustomError(
            "currency_unknown", "must be an ISO 4217 currency code such as USD"
        )
    return code


#: an ISO 4217 code of a currency with a minor unit (the official table, :mod:`shared.money`)
Currency = Annotated[str, AfterValidator(_currency)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain a NUL character")
    return value


#: Free text: PostgreSQL cannot store a NUL character, so no event ever carries one.
Text = Annotated[str, AfterValidator(_no_nul)]


def _too_precise(amount: Decimal, currency: str | None) -> PydanticCustomError:
    unit = currency or f"any currency ({MAX_MINOR_DIGITS} decimals)"
    return PydanticCustomError(
        "amount_too_precise",
        "{amount} has more decimals than {unit} allows",
        {"amount": str(amount), "unit": unit},
    )


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    event_id: Ident
    occurred_at: UtcDatetime
    #: when the tracker received it (the tracker sets it, whatever a client sent): a
    #: completion's holding period runs from the later of the two, so that a backdated
    #: completion cannot skip the refund window
    received_at: UtcDatetime | None = None


class Click(Event):
    """A buyer followed an affiliate link. ``event_id`` is the click id."""

    type: Literal["click"] = "click"
    #: minted by the tracker, or ``s2s:<store>:<event>`` for a server-to-server click
    event_id: Key
    #: strict (ISO 8601 strings in JSON, never numbers): attribution hands validated clicks'
    #: JSON to PostgreSQL as read
    occurred_at: Annotated[UtcDatetime, Strict()]
    affiliate_id: Ident
    store_id: Ident
    product_id: Ident | None = None
    sub_id: str | None = Field(None, max_length=128)
    link_code: str
    visitor_id: Ident
    received_at: Annotated[UtcDatetime, Strict()]
    suspicious: Annotated[bool, Strict()] = False
    suspicious_reason: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    @property
    def click_id(self) -> str:
        return self.event_id


class OrderItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: Ident
    category_id: Ident | None = None
    title: Text = Field("", max_length=512)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    unit_price: NonNegativeMoney
    shipping_fee: NonNegativeMoney = Decimal(0)


class OrderPlaced(Event):
    type: Literal["order_placed"] = "order_placed"
    store_id: Ident
    order_id: Ident
    visitor_id: Ident
    currency: Currency
    items: list[OrderItem] = Field(min_length=1, max_length=MAX_ITEMS)
    #: the coupon code the buyer entered, if any (attributes the order under the program's
    #: coupon policy; matched case-insensitively)
    coupon_code: CouponCode | None = None
    #: the storefront marks the buyer's first order on the marketplace (the program's
    #: new-buyer bonus, docs/incentives.md); absent: false
    new_buyer: bool = Field(False, strict=True)

    @model_validator(mode="after")
    def _amounts_fit(self) -> OrderPlaced:
        for item in self.items:
            for amount in (item.unit_price, item.shipping_fee):
                if not fits_currency(amount, self.currency):
                    raise _too_precise(amount, self.currency)
        total = sum((i.unit_price * i.quantity + i.shipping_fee for i in self.items), Decimal(0))
        if total > MAX_ORDER_TOTAL:
            raise PydanticCustomError(
                "order_total_out_of_range",
                "the order's total is over {limit} (docs/security.md)",
                {"limit": MAX_ORDER_TOTAL},
            )
        return self


class OrderCompleted(Event):
    type: Literal["order_completed"] = "order_completed"
    store_id: Ident
    order_id: Ident


class OrderCancelled(Event):
    type: Literal["order_cancelled"] = "order_cancelled"
    store_id: Ident
    order_id: Ident


class RefundItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: Ident
    amount: NonNegativeMoney  # refunded product amount, shipping excluded


class OrderRefunded(Event):
    type: Literal["order_refunded"] = "order_refunded"
    store_id: Ident
    order_id: Ident
    refund_id: Ident
    items: list[RefundItem] = Field(min_length=1, max_length=MAX_ITEMS)
    #: the order's currency; when given, the amounts are checked against its minor unit at the
    #: edge (without it, against the finest minor unit of any currency)
    currency: Currency | None = None

    @model_validator(mode="after")
    def _amounts_fit(self) -> OrderRefunded:
        for item in self.items:
            if not fits_currency(item.amount, self.currency):
                raise _too_precise(item.amount, self.currency)
        return self


OrderEvent = Annotated[
    OrderPlaced | OrderCompleted | OrderCancelled | OrderRefunded, Field(discriminator="type")
]


class PageView(Event):
    type: Literal["page_view"] = "page_view"
    store_id: Ident
    visitor_id: Ident
    product_id: Ident | None = None


class ProductUpserted(Event):
    type: Literal["product_upserted"] = "product_upserted"
    store_id: Ident
    product_id: Ident
    category_id: Ident | None = None
    title: Text = Field(max_length=512)
    price: NonNegativeMoney
    currency: Currency

    @model_validator(mode="after")
    def _price_fits_currency(self) -> ProductUpserted:
        if not fits_currency(self.price, self.currency):
            raise _too_precise(self.price, self.currency)
        return self


#: Everything a storefront may post to ``POST /v1/events``.
StorefrontEvent = Annotated[
    OrderPlaced | OrderCompleted | OrderCancelled | OrderRefunded | PageView | ProductUpserted,
    Field(discriminator="type"),
]


class DirectoryEntryBase(BaseModel):
    """What every directory entry carries: its ``version``, per Kafka key, from a counter of the
    commission service that only grows (:mod:`shared.directory`). Readers ignore an entry older
    than the one they hold for its key, so a replayed or reordered entry never brings back an
    older state. 0: published before entries were versioned (never overrides a versioned one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(default=0, ge=0)


class StoreEntry(DirectoryEntryBase):
    """The directory's view of a store, as the tracker needs it (no secret travels here:
    webhook secrets are derived from the deployment's secret key and ``secret_versions``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["store"] = "store"
    event_id: str
    store_id: Ident
    name: str
    landing_url_template: str
    secret_versions: list[int]
    #: the previous version (``secret_versions[1]``) verifies while now < this (a rotation's
    #: grace); None with two versions: an entry from before the grace (tracker: updated_at + grace)
    previous_secret_until: UtcDatetime | None = None
    in_program: bool
    key_hash: str
    updated_at: UtcDatetime
    #: the program's own attribution window from ``updated_at`` on; None: the default
    attribution_window_days: int | None = None
    #: the program's coupon policy from ``updated_at`` on
    coupon_policy: CouponPolicy = CouponPolicy.OFF
    #: whether the tracker's visitor cookie needs the buyer's consent (:mod:`shared.privacy`)
    consent: Consent = Consent.NOT_REQUIRED
    #: who may promote the store from ``updated_at`` on (:mod:`shared.partners`)
    enrollment: Enrollment = Enrollment.OPEN


class CouponEntry(DirectoryEntryBase):
    """One coupon code of a store as registered from ``updated_at`` on (Kafka key
    ``coupon:<store>:<CODE>``, so compaction keeps the latest per code). ``affiliate_id`` None:
    the code was deleted at ``updated_at`` and is valid for no order placed from then on.
    Otherwise it attributes orders placed in ``[max(valid_from, updated_at), valid_to)``
    (open ends: unbounded) to ``affiliate_id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["coupon"] = "coupon"
    event_id: str
    store_id: Ident
    code: CouponCode  # as stored: upper case
    affiliate_id: Ident | None
    valid_from: UtcDatetime | None = None
    valid_to: UtcDatetime | None = None
    updated_at: UtcDatetime


class AffiliateEntry(DirectoryEntryBase):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["affiliate"] = "affiliate"
    event_id: str
    affiliate_id: Ident
    name: str
    key_hash: str
    updated_at: UtcDatetime


class PartnerEntry(DirectoryEntryBase):
    """An affiliate's standing with a store from ``updated_at`` on (Kafka key
    ``partner:<store>:<affiliate>``, so compaction keeps the latest per pair): the tracker
    issues links and counts clicks by it (:func:`shared.partners.may_promote`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["partner"] = "partner"
    event_id: str
    store_id: Ident
    affiliate_id: Ident
    status: PartnerStatus
    updated_at: UtcDatetime


DirectoryEntry = Annotated[
    StoreEntry | AffiliateEntry | CouponEntry | PartnerEntry, Field(discriminator="type")
]


class ConsideredClick(BaseModel):
    """A click attribution looked at for an order, and why it won or lost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    click_id: Key
    affiliate_id: Ident
    store_id: Ident
    occurred_at: UtcDatetime
    suspicious: bool
    verdict: Literal[
        "won",
        "earlier_than_winner",
        "outside_window",
        "after_order",
        "suspicious",
        "other_store",
        "coupon_won",
    ]


class Attribution(Event):
    """Attribution's decision for one order; ``revision`` > 0 is a correction
    (``attribution_changed``) that replaces every lower revision. ``occurred_at`` is the
    decision time; ``event_id`` is ``"<store_id>:<order_id>:<revision>"``."""

    type: Literal["attribution", "attribution_changed"] = "attribution"
    event_id: Key
    revision: int = Field(ge=0)
    order_id: Ident
    store_id: Ident
    visitor_id: Ident
    placed_at: UtcDatetime
    rule: Literal["last_click", "organic", "coupon"]
    affiliate_id: Ident | None = None
    #: the coupon code that attributed the order (rule ``coupon``), as registered
    coupon_code: CouponCode | None = None
    click_id: Key | None = None
    click_at: UtcDatetime | None = None
    link_code: str | None = None
    sub_id: str | None = None
    link_product_id: Ident | None = None
    window_start: UtcDatetime
    window_end: UtcDatetime
    #: the placement the decision was made from (the first ``order_placed`` attribution read
    #: of the order: visitor, currency, lines, time). *The* placement of the order for every
    #: consumer: commission computes from it, whatever other placement it read first.
    order: OrderPlaced
    #: the buyer's clicks around the order (any store), newest first, at most 100
    considered: list[ConsideredClick] = Field(default_factory=list, max_length=100)


class DeadLetter(BaseModel):
    """A message a consumer (or the outbox relay) could never process, kept with the reason.
    (consumer, source_topic, partition, offset) identifies one: letters are at least once. The
    outbox relay's letters have partition −1 and the outbox row's id as offset."""

    model_config = ConfigDict(frozen=True)

    v: Literal[1] = 1
    source_topic: str
    partition: int
    offset: int
    consumer: str
    reason: str  # "<error>: <message>", at most 2,000 characters
    key: str | None
    value: str  # the raw value, decoded as UTF-8 with replacement (cut when ``truncated``)
    failed_at: UtcDatetime
    #: what failed, for grouping and metrics: the exception's class (e.g. ValidationError)
    error: str | None = None
    #: ``value`` holds only the start of the message: the whole would not fit the topic
    truncated: bool = False
    #: the size of the original value in bytes
    value_bytes: int | None = None


class Erasure(BaseModel):
    """A visitor erased (docs/privacy.md): every consumer erases what it holds of the visitor
    and drops (or pseudonymises, where money needs the row) the visitor's later events.
    ``visitor_hash`` is the keyed hash a consumer keeps in its list of erased visitors
    (:func:`shared.privacy.visitor_hash`); ``sealed_visitor`` is the id sealed for the consumers
    (:class:`shared.privacy.ErasureSeal`), which leaves the topic with its retention."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    type: Literal["erasure"] = "erasure"
    event_id: Key
    occurred_at: UtcDatetime
    visitor_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    sealed_visitor: str = Field(min_length=1, max_length=400)


order_event_adapter: TypeAdapter[OrderEvent] = TypeAdapter(OrderEvent)
storefront_event_adapter: TypeAdapter[StorefrontEvent] = TypeAdapter(StorefrontEvent)
directory_adapter: TypeAdapter[DirectoryEntry] = TypeAdapter(DirectoryEntry)


def encode(event: BaseModel) -> bytes:
    """Canonical JSON bytes of an event (decimals as strings, times in ISO 8601 UTC)."""
    return event.__pydantic_serializer__.to_json(event, exclude_none=False)
