"""Tables of the attribution service (schema ``attribution``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.clickcap_store import click_caps_table
from shared.db import make_metadata
from shared.directory_store import directory_versions_table
from shared.offsets import offsets_table
from shared.outbox import outbox_table
from shared.privacy_store import erased_visitors_table

metadata = make_metadata("attribution")

#: Clicks kept for the join: the window plus a grace, then expired. Range-partitioned by day
#: of ``occurred_at`` (migration 7a1e5c3d9b20; the retention job drops whole days): the key
#: holds the partition key, a click's time being fixed with its id.
clicks = Table(
    "clicks",
    metadata,
    Column("click_id", String(200), primary_key=True),
    Column("store_id", String(128), nullable=False),
    Column("visitor_id", String(128), nullable=False),
    Column("affiliate_id", String(128), nullable=False),
    Column("occurred_at", DateTime(timezone=True), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("suspicious", Boolean, nullable=False, default=False),
    Column("link_code", String(512), nullable=False),
    Column("product_id", String(128)),
    Column("sub_id", String(128)),
    # a decision's two bounded reads (repository ``decision_clicks``), each an index walked
    # backwards and stopped: the latest eligible click of a visitor on a store (suspicious
    # clicks, a flood's, are not even in it), and a visitor's latest clicks (the explanation)
    Index(
        "ix_clicks_decision",
        "visitor_id",
        "store_id",
        "occurred_at",
        "click_id",
        postgresql_where=text("NOT suspicious"),
    ),
    Index("ix_clicks_visitor_time_id", "visitor_id", "occurred_at", "click_id"),
    # expiry; clicks arrive roughly in time order, so a block-range index is small and cheap
    Index("ix_clicks_occurred_at", "occurred_at", postgresql_using="brin"),
)

#: Every order seen and its current decision. An order is its store's: two stores may use the
#: same order number.
orders = Table(
    "orders",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("order_id", String(128), primary_key=True),
    Column("visitor_id", String(128), nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("order_event", JSONB, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("click_id", String(200)),
    Column("affiliate_id", String(128)),
    #: the coupon code that attributed the order (rule ``coupon``), as registered
    Column("coupon_code", String(64)),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    #: late clicks may change the decision until then (first decision + grace), or completion
    Column("open_until", DateTime(timezone=True)),
    #: an undecided order waits until its visitor's clicks partition is read up to this offset
    #: (what it held when the order was read), or for at most the hold time
    Column("hold_partition", Integer),
    Column("hold_offset", BigInteger),
    Column("held_since", DateTime(timezone=True)),
    Index("ix_orders_store_visitor_placed", "store_id", "visitor_id", "placed_at"),
    Index(
        "ix_orders_held",
        "hold_partition",
        "hold_offset",
        postgresql_where=text("revision = -1"),
    ),
    Index("ix_orders_held_since", "held_since", postgresql_where=text("revision = -1")),
)

#: The first terminal status of an order (completed or cancelled) freezes its decision. Kept
#: apart from ``orders`` because it may arrive first: it is keyed by order, not by visitor.
order_status = Table(
    "order_status",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("order_id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)

#: Each store's attribution window over time, as its program set it (from the directory topic).
#: A row only when the window changes; no row: the deployment's default window.
store_windows = Table(
    "store_windows",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("effective_at", DateTime(timezone=True), primary_key=True),
    Column("days", SmallInteger),  # None: back to the default
)

#: Each store's coupon policy over time (from the directory topic). A row only when the policy
#: changes; no row: ``off``.
store_coupon_policies = Table(
    "store_coupon_policies",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("effective_at", DateTime(timezone=True), primary_key=True),
    Column("policy", String(16), nullable=False),
)

#: Every registration of a store's coupon code over time (from the directory topic): owner and
#: validity from ``effective_at`` on; ``affiliate_id`` null: deleted then.
coupons = Table(
    "coupons",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("code", String(64), primary_key=True),  # upper case (shared.coupons.coupon_key)
    Column("effective_at", DateTime(timezone=True), primary_key=True),
    Column("affiliate_id", String(128)),
    Column("valid_from", DateTime(timezone=True)),
    Column("valid_to", DateTime(timezone=True)),
)

#: The version of each directory key's entries attribution applied last (shared.directory): an
#: older one (a replay, two relays' reordering) is ignored.
directory_versions = directory_versions_table(metadata)

#: Per UTC day, link and visitor (or client address): clicks stored, and clicks past the cap
#: (``ALLIANCE_CLICK_CAP_PER_DAY``) counted instead of stored (shared.clickcap).
click_caps = click_caps_table(metadata)

#: Transactional outbox: decisions to publish, written with the state that produced them.
outbox = outbox_table(metadata)

#: Visitors erased (docs/privacy.md), as keyed hashes: their later clicks are dropped.
erased_visitors = erased_visitors_table(metadata)

consumer_offsets = offsets_table(metadata)
