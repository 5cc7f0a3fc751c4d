"""Tables of the commission service (schema ``commission``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import UserDefinedType

from services.commission.core.applied import SOURCES
from services.commission.core.reports import AFFILIATE_ORDER_STATUSES
from shared.clickcap_store import click_caps_table
from shared.db import MinorSum, make_metadata
from shared.directory_store import directory_versions_table
from shared.offsets import offsets_table
from shared.outbox import outbox_table
from shared.privacy_store import erased_visitors_table

metadata = make_metadata("commission")

#: Idempotency: every event applied, written in the transaction that applied it, in the
#: namespace of its source (services/commission/core/applied.py): a storefront's event ids can
#: never reach a decision's.
processed_events = Table(
    "processed_events",
    metadata,
    Column("source", String(16), primary_key=True),  # storefront | decision
    #: storefront: <store>/<event id>; decision: <store>/<order>/<revision>
    Column("event_id", String(300), primary_key=True),
    Column("topic", String(250), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(f"source IN ({', '.join(repr(s) for s in SOURCES)})", name="source"),
)

#: The facts of each order, whichever event brought them first. An order is its store's:
#: two stores may use the same order number.
orders = Table(
    "orders",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("order_id", String(128), primary_key=True),
    Column("currency", String(3)),
    Column("placed_at", DateTime(timezone=True)),
    Column("items", JSONB),
    #: the storefront marked the buyer's first order (the new-buyer bonus, issue 23)
    Column("new_buyer", Boolean, nullable=False, server_default=text("false")),
    Column("status", String(16), nullable=False, server_default="placed"),
    Column("status_at", DateTime(timezone=True)),
    Column("attribution_revision", Integer, nullable=False, server_default="-1"),
    Column("affiliate_id", String(128)),
    Column("click_id", String(200)),
    Column("click_at", DateTime(timezone=True)),
    Column("sub_id", String(128)),
    #: the applied decision as attribution explained it (winner, window, every click considered)
    Column("attribution", JSONB),
    #: the order's commission as the pure core computes it from the facts above, kept current
    #: by the consumer in the transaction that changes the facts (minor units of ``currency``;
    #: NULL until computed): what settlements sum, without folding orders on each request
    Column("chargeable", Boolean),
    Column("sales_minor", BigInteger),
    Column("commission_minor", BigInteger),
    Column("reversed_minor", BigInteger),
    #: what the per-affiliate-month cap left the order when its completion was posted (minor
    #: units; NULL: no month cap applied; docs/incentives.md)
    Column("month_allowance", BigInteger),
    Index("ix_orders_store_placed", "store_id", "placed_at"),
    Index("ix_orders_affiliate_placed", "affiliate_id", "placed_at"),
    Index("ix_orders_store_status_at", "store_id", "status", "status_at"),
    Index("ix_orders_affiliate_status_at", "affiliate_id", "status", "status_at"),
)

#: Per (store, affiliate, month of completion, currency): what the completions' postings took
#: of the program's per-affiliate-month cap (minor units); locked in key order by the posting
#: transaction, so that concurrent workers take the room one after the other.
month_rooms = Table(
    "month_rooms",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("affiliate_id", String(128), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("used_minor", BigInteger, nullable=False, server_default="0"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("order_id", String(128), primary_key=True),
    Column("refund_id", String(128), primary_key=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("items", JSONB, nullable=False),
    #: when it was reported (the later of event time and arrival; NULL: its event time): a
    #: refund reported at or after the order's locking date reverses nothing
    Column("reported_at", DateTime(timezone=True)),
    Index("ix_refunds_occurred", "occurred_at"),
)

#: Reason-coded adjustments of orders' commission (docs/program-controls.md), numbered per
#: order from 1, each accepted once per (store, Idempotency-Key); append-only.
adjustments = Table(
    "adjustments",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("order_id", String(128), primary_key=True),
    Column("seq", SmallInteger, primary_key=True),
    Column("idempotency_key", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(16), nullable=False),  # amend | decline | reset
    Column("reason", String(32), nullable=False),
    Column("note", String(1000)),
    Column("lines", JSONB, nullable=False),  # [{product_id, amount}]
    Column("actor", String(200), nullable=False),
    UniqueConstraint("store_id", "idempotency_key"),
)

#: Affiliates held by finance while fraud is reviewed (docs/program-controls.md): their
#: commissions on ``store_id`` (NULL: every store) are posted but not payable while ``active``.
holds = Table(
    "holds",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("affiliate_id", String(128), nullable=False),
    Column("store_id", String(128)),
    Column("reason", String(32), nullable=False),
    Column("note", String(1000)),
    Column("status", String(16), nullable=False),  # active | released | voided
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("ended_by", String(200)),
    Index("ix_holds_affiliate", "affiliate_id", "status"),
)

#: The orders whose ``commission.locked`` event was written (by the periodic lock announcer,
#: in the transaction that wrote the event): each order's lock is announced once.
lock_notices = Table(
    "lock_notices",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("order_id", String(128), primary_key=True),
    Column("locks_at", DateTime(timezone=True), nullable=False),
    Column("announced_at", DateTime(timezone=True), nullable=False),
)

#: The operation record of every store's program: append-only, in time order.
program_ops = Table(
    "program_ops",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("store_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("key", String(128)),
    Column("rate", Numeric(6, 5)),
    Column("days", SmallInteger),  # attribution window
    Column("policy", String(16)),  # coupon policy
    #: a coupon code's registration (kind ``coupon``; ``key`` is the code)
    Column("affiliate_id", String(128)),
    Column("valid_from", DateTime(timezone=True)),
    Column("valid_to", DateTime(timezone=True)),
    #: an incentive's new setting (kinds ``new_buyer``, ``tiers``, ``caps``; issue 23)
    Column("incentive", JSONB),
    Column("actor", String(200), nullable=False),
    Column("before", JSONB, nullable=False),
    Column("after", JSONB, nullable=False),
    Index("ix_program_ops_store_at", "store_id", "at", "id"),
)

#: Each store's coupon codes as registered now (their history is the operation record). A code
#: is stored upper case: codes are matched case-insensitively.
coupons = Table(
    "coupons",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("code", String(64), primary_key=True),
    Column("affiliate_id", String(128), nullable=False),
    Column("valid_from", DateTime(timezone=True)),
    Column("valid_to", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_coupons_affiliate", "affiliate_id"),
)

#: Ledger transactions: immutable, one per idempotency key.
ledger_transactions = Table(
    "ledger_transactions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("order_id", String(128)),
    Column("store_id", String(128)),
    Column("affiliate_id", String(128)),
    Column("currency", String(3), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("reason", String(32)),  # an adjustment's reason code
    Index("ix_ledger_transactions_order", "store_id", "order_id"),
)

#: Signed postings in integer minor units; the postings of a transaction sum to zero.
ledger_postings = Table(
    "ledger_postings",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("txn_id", BigInteger, ForeignKey(ledger_transactions.c.id), nullable=False),
    Column("account", String(300), nullable=False),
    Column("currency", String(3), nullable=False),
    #: a sum type: a payout posts an affiliate's whole balance (see ``shared.db.MinorSum``)
    Column("amount_minor", MinorSum, nullable=False),
    Index("ix_ledger_postings_account", "account", "id"),
    Index("ix_ledger_postings_txn", "txn_id"),
)

#: What settlements sum, per UTC day: append-only signed deltas, one row per key changed by a
#: statement on ``orders`` (a trigger writes them in that statement: migration a20d1c5e7f31).
#: ``done``: chargeable orders completed that day (``status_at``); else chargeable orders placed
#: that day (``placed_at``) and still open. A key's value is the sum of its rows
#: (the commission service's scheduled compaction, or ``alliance ledger compact``, folds them
#: into one: ``folded``; a trigger's rows are fresh until then).
#: the rollup rows a compaction has not folded yet (a partial index of each rollup)
_FRESH = text("NOT folded")

settlement_days = Table(
    "settlement_days",
    metadata,
    Column("subject", String(16), nullable=False),  # store | affiliate
    Column("subject_id", String(128), nullable=False),
    Column("currency", String(3)),
    Column("day", Date, nullable=False),
    Column("done", Boolean, nullable=False),
    Column("orders", BigInteger, nullable=False),
    Column("sales_minor", MinorSum, nullable=False),
    Column("commission_minor", MinorSum, nullable=False),
    Column("reversed_minor", MinorSum, nullable=False),
    Column("folded", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint("subject IN ('store', 'affiliate')", name="subject"),
    Index("ix_settlement_days_fresh", "subject", "subject_id", "day", postgresql_where=_FRESH),
    Index(
        "ix_settlement_days_subject_day",
        "subject",
        "subject_id",
        "day",
        postgresql_include=[
            "currency",
            "done",
            "orders",
            "sales_minor",
            "commission_minor",
            "reversed_minor",
        ],
    ),
)

#: The same deltas as ``settlement_days`` per UTC hour (``hour``: its first instant): what a
#: settlement reads for the whole hours of a partial day at its range's edges (migration
#: e3b8c6d1f047; the same trigger statement writes both).
settlement_hours = Table(
    "settlement_hours",
    metadata,
    Column("subject", String(16), nullable=False),  # store | affiliate
    Column("subject_id", String(128), nullable=False),
    Column("currency", String(3)),
    Column("hour", DateTime(timezone=True), nullable=False),
    Column("done", Boolean, nullable=False),
    Column("orders", BigInteger, nullable=False),
    Column("sales_minor", MinorSum, nullable=False),
    Column("commission_minor", MinorSum, nullable=False),
    Column("reversed_minor", MinorSum, nullable=False),
    Column("folded", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint("subject IN ('store', 'affiliate')", name="subject"),
    Index("ix_settlement_hours_fresh", "subject", "subject_id", "hour", postgresql_where=_FRESH),
    Index(
        "ix_settlement_hours_subject_hour",
        "subject",
        "subject_id",
        "hour",
        postgresql_include=[
            "currency",
            "done",
            "orders",
            "sales_minor",
            "commission_minor",
            "reversed_minor",
        ],
    ),
)

#: What statements sum, per UTC day of the transactions' ``occurred_at``: the store accounts'
#: postings per currency and transaction kind, as append-only deltas (a trigger on
#: ``ledger_postings`` writes them in the inserting statement).
statement_days = Table(
    "statement_days",
    metadata,
    Column("account", String(300), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("day", Date, nullable=False),
    Column("postings", BigInteger, nullable=False),
    Column("amount_minor", MinorSum, nullable=False),
    Column("folded", Boolean, nullable=False, server_default=text("false")),
    Index("ix_statement_days_fresh", "account", "day", postgresql_where=_FRESH),
    Index(
        "ix_statement_days_account_day",
        "account",
        "day",
        postgresql_include=["currency", "kind", "postings", "amount_minor"],
    ),
)

#: Stores, affiliates and finance users. Keys are stored hashed only.
principals = Table(
    "principals",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("principal_id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("landing_url_template", String(1024)),
    Column("secret_version", Integer),
    #: a store's previous webhook secret is accepted while now < this (a rotation's grace)
    Column("previous_secret_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: The last version given to each directory key's entries (shared.directory): it only grows,
#: so readers can tell a replayed or reordered entry from a newer one.
directory_versions = directory_versions_table(metadata)

#: Payouts to affiliates, once per idempotency key.
payouts = Table(
    "payouts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("affiliate_id", String(128), nullable=False),
    Column("up_to", DateTime(timezone=True), nullable=False),
    Column("amounts", JSONB, nullable=False),  # currency → decimal string
    Column("created_at", DateTime(timezone=True), nullable=False),
    #: the payout run that made it (NULL: a single payout); one payout per run and affiliate
    Column("run_id", BigInteger, ForeignKey("commission.payout_runs.id")),
    #: a run's payout: currency, amount, source amounts, conversions, rounding, the payee's
    #: bank details as they were when paid (what the payment file and the invoice show)
    Column("detail", JSONB),
    Index(
        "uq_payouts_run_affiliate",
        "run_id",
        "affiliate_id",
        unique=True,
        postgresql_where=text("run_id IS NOT NULL"),
    ),
)

#: An affiliate's payout currency, minimum and bank details.
payout_settings = Table(
    "payout_settings",
    metadata,
    Column("affiliate_id", String(128), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("minimum_minor", BigInteger, nullable=False),
    Column("method", String(32), nullable=False),
    Column("iban", String(34), nullable=False),
    Column("bic", String(11), nullable=False),
    Column("account_holder", String(70), nullable=False),
    Column("tax_id", String(64)),
    Column("address", String(280), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Finance's platform minimum payout per currency (the default where none is set).
payout_minimums = Table(
    "payout_minimums",
    metadata,
    Column("currency", String(3), primary_key=True),
    Column("minimum_minor", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Exchange rates finance records per UTC day: one ``base`` buys ``rate`` ``quote``.
fx_rates = Table(
    "fx_rates",
    metadata,
    Column("day", Date, primary_key=True),
    Column("base", String(3), primary_key=True),
    Column("quote", String(3), primary_key=True),
    Column("rate", Numeric(24, 10), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("rate > 0", name="positive"),
)

#: Payout runs, one per Idempotency-Key; ``finished_at`` once every affiliate's step is done.
payout_runs = Table(
    "payout_runs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("up_to", DateTime(timezone=True), nullable=False),
    Column("currency", String(3)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

#: The affiliates a run did not pay, and why (written in that affiliate's step).
payout_run_carried = Table(
    "payout_run_carried",
    metadata,
    Column("run_id", BigInteger, ForeignKey(payout_runs.c.id), primary_key=True),
    Column("affiliate_id", String(128), primary_key=True),
    Column("why", String(32), nullable=False),
    Column("currency", String(3)),
    Column("balance", String(64)),
    Column("detail", JSONB, nullable=False),
)

#: Closed monthly statements of stores: the settlement frozen at closing time.
statements = Table(
    "statements",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("period", String(7), primary_key=True),  # YYYY-MM
    Column("closed_at", DateTime(timezone=True), nullable=False),
    Column("closed_by", String(200), nullable=False),
    Column("totals", JSONB, nullable=False),
)

# -- reports' read models ------------------------------------------------------------------

#: Each line of each order with its commission as the core computes it, kept by the consumer
#: in the transaction that changes the order (minor units): transaction details, hot products.
order_lines = Table(
    "order_lines",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("order_id", String(128), primary_key=True),
    Column("line_no", SmallInteger, primary_key=True),
    Column("product_id", String(128), nullable=False),
    Column("category_id", String(128)),
    Column("title", String(512), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("affiliate_id", String(128)),
    Column("chargeable", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("sales_minor", BigInteger, nullable=False),
    Column("commission_minor", BigInteger, nullable=False),
    Column("reversed_minor", BigInteger, nullable=False),
    Index("ix_order_lines_store_placed", "store_id", "placed_at"),
    Index("ix_order_lines_store_product", "store_id", "product_id", "placed_at"),
    # and a trigram index on lower(title) (migration): keyword search without a table scan
)

#: Affiliate clicks as the reports consumer stored them (deduplicated by click id): what
#: decides whether a page view came from an affiliate visitor. Range-partitioned by day of
#: ``occurred_at`` (migration 7a1e5c3d9b20), which the key therefore holds.
report_clicks = Table(
    "report_clicks",
    metadata,
    Column("click_id", String(200), primary_key=True),
    Column("store_id", String(128), nullable=False),
    Column("visitor_id", String(128), nullable=False),
    Column("affiliate_id", String(128), nullable=False),
    Column("occurred_at", DateTime(timezone=True), primary_key=True),
    Column("suspicious", Boolean, nullable=False),
    Index("ix_report_clicks_visitor", "store_id", "visitor_id", "occurred_at"),
)

#: Per UTC day, link and visitor (or client address): report clicks stored, and those past the
#: cap (``ALLIANCE_CLICK_CAP_PER_DAY``) not stored but still counted in ``traffic_days``.
click_caps = click_caps_table(metadata)


class Hll(UserDefinedType[bytes]):
    """postgresql-hll's ``hll`` type; read and written in SQL only (hll_* functions)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "hll"


#: Per store, UTC day and shard: clicks, suspicious clicks, page views, affiliate page views.
#: A row's ``shard`` is the Kafka partition of the events it counts: a partition is read by
#: one worker at a time, so no row is updated by two workers' batches (migration 7c4d2e9b1f36);
#: a day's figures are the sum of its rows.
traffic_days = Table(
    "traffic_days",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("shard", SmallInteger, primary_key=True, server_default="0"),
    Column("clicks", BigInteger, nullable=False, server_default="0"),
    Column("suspicious_clicks", BigInteger, nullable=False, server_default="0"),
    Column("page_views", BigInteger, nullable=False, server_default="0"),
    Column("affiliate_page_views", BigInteger, nullable=False, server_default="0"),
    # the rows the hourly fold looks for (ReportRepository.fold_shards)
    Index("ix_traffic_days_unfolded", "day", postgresql_where=text("shard <> 0")),
)

#: Who visited a store on a UTC day, and how: distinct visitors over any range of days.
#: Range-partitioned by ``day`` (migration 7a1e5c3d9b20), kept ALLIANCE_RETENTION_REPORTS_DAYS.
visitor_days = Table(
    "visitor_days",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("visitor_id", String(128), primary_key=True),
    Column("clicked", Boolean, nullable=False),  # an affiliate click (not suspicious)
    Column("viewed", Boolean, nullable=False),  # a page view
    # the key INCLUDEs clicked (migration): affiliate visitors by an index-only scan
)

#: Per store and UTC day: HyperLogLog sketches (``hll``, postgresql-hll) of its affiliate
#: visitors and of its store visitors; distinct visitors over more than one day are the
#: cardinality of their union (docs/reports.md). One upsert per (store, day, shard) per batch
#: of the reports consumer; ``shard`` as in ``traffic_days`` (a day's sketch is the union of
#: its rows').
visitor_sketches = Table(
    "visitor_sketches",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("shard", SmallInteger, primary_key=True, server_default="0"),
    Column("affiliate_visitors", Hll(), nullable=False),
    Column("store_visitors", Hll(), nullable=False),
    Index("ix_visitor_sketches_unfolded", "day", postgresql_where=text("shard <> 0")),
)

#: What each visitor met in the last 90 days, for the alliance camp's personal boost: the last
#: time they viewed, clicked (an affiliate link, not suspicious) or ordered from a store, per
#: category ('' when unknown). Kept by the reports consumer; forgotten after 90 days.
visitor_interests = Table(
    "visitor_interests",
    metadata,
    Column("visitor_id", String(128), primary_key=True),
    Column("store_id", String(128), primary_key=True),
    Column("category_id", String(128), primary_key=True, server_default=""),
    Column("kind", String(8), primary_key=True),  # view | click | order
    Column("last_at", DateTime(timezone=True), nullable=False),
    Index("ix_visitor_interests_last_at", "last_at"),
)

#: Page views counted (idempotency; storefronts may post one twice).
seen_page_views = Table(
    "seen_page_views",
    metadata,
    Column("event_id", String(300), primary_key=True),  # store id / event id
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: The stores' catalog (product upserts; the newest update wins) with what the affiliate
#: product channel ranks by, refreshed from the order lines and the programs.
products = Table(
    "products",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("product_id", String(128), primary_key=True),
    Column("category_id", String(128)),
    Column("title", String(512), nullable=False),
    Column("price_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("in_program", Boolean, nullable=False, server_default="false"),
    Column("rate", Numeric(6, 5)),
    Column("main", Boolean, nullable=False, server_default="false"),
    Column("hot", Boolean, nullable=False, server_default="false"),
    Column("orders_90d", Integer, nullable=False, server_default="0"),
    Column("score", Numeric(12, 4), nullable=False, server_default="0"),
    Index(
        "ix_products_rank",
        "in_program",
        text("score DESC"),
        text("rate DESC"),
        "store_id",
        "product_id",
    ),
    Index("ix_products_category", "category_id", "in_program"),
    # the camp's walks in ranking order per category and per store (in the program only)
    Index(
        "ix_products_category_rank",
        "category_id",
        text("score DESC"),
        text("rate DESC"),
        "store_id",
        "product_id",
        postgresql_include=["title", "price_minor", "currency", "hot"],
        postgresql_where=text("in_program"),
    ),
    Index(
        "ix_products_store_rank",
        "store_id",
        text("score DESC"),
        text("rate DESC"),
        "product_id",
        postgresql_include=["category_id", "title", "price_minor", "currency", "hot"],
        postgresql_where=text("in_program"),
    ),
    Index(
        "ix_products_camp_rank",
        text("score DESC"),
        text("rate DESC"),
        "store_id",
        "product_id",
        postgresql_include=["title", "category_id", "price_minor", "currency", "hot"],
        postgresql_where=text("in_program"),
    ),
)


def affiliate_order_sql(alias: str = "") -> str:
    """:func:`~services.commission.core.reports.is_affiliate_order` as SQL, over a row with
    the columns ``chargeable`` and ``status`` (``orders``, ``order_lines``), of ``alias`` if
    given: the one spelling of the predicate that the repositories put in their queries."""
    prefix = f"{alias}." if alias else ""
    statuses = ", ".join(f"'{s.value}'" for s in AFFILIATE_ORDER_STATUSES)
    return f"({prefix}chargeable AND {prefix}status IN ({statuses}))"


# -- postbacks and webhooks ------------------------------------------------------------------

#: Endpoints that affiliates, stores and finance users registered. No secret is stored: an
#: endpoint's signing secret is derived from the deployment's secret key, its id and
#: ``secret_version`` (services/commission/core/webhooks.py: endpoint_secret).
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_kind", String(16), nullable=False),  # affiliate | store | finance
    Column("owner_id", String(128), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("method", String(4), nullable=False),  # POST | GET (a template)
    Column("events", JSONB, nullable=False),  # the event types subscribed to
    Column("secret_version", Integer, nullable=False, server_default="1"),
    #: after a rotation, the previous secret still signs until then
    Column("previous_secret_until", DateTime(timezone=True)),
    Column("status", String(16), nullable=False, server_default="active"),  # | disabled
    Column("disabled_reason", String(500)),
    Column("disabled_at", DateTime(timezone=True)),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    #: while failing: no delivery to it before then (the endpoint's own backoff)
    Column("retry_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
    Index("ix_webhook_endpoints_owner", "owner_kind", "owner_id", "id"),
)

#: One row per (endpoint, event), written in the transaction of the ledger change (or the
#: decision) that caused the event: the outbox of the delivery worker, and the delivery log.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(40), ForeignKey(webhook_endpoints.c.id), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("event_type", String(32), nullable=False),
    #: "<store>/<order>" of an order's event: one order's events go out in id order
    Column("order_key", String(300)),
    Column("payload", JSONB, nullable=False),  # the event as a POST endpoint receives it
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    #: since when it is being tried (creation, or a manual redelivery): retries stop 72 h on
    Column("due_since", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_latency_ms", Integer),
    Column("last_error", String(500)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    #: claimed by a delivery worker until then (its attempt in flight); an expired lease (a
    #: worker that died) is due again
    Column("lease_until", DateTime(timezone=True)),
    UniqueConstraint("endpoint_id", "event_id"),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "ix_webhook_deliveries_order",
        "endpoint_id",
        "order_key",
        "id",
        postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "ix_webhook_deliveries_endpoint_due",
        "endpoint_id",
        "next_attempt_at",
        "id",
        postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "ix_webhook_deliveries_leased",
        "endpoint_id",
        "lease_until",
        postgresql_where=text("status = 'pending' AND lease_until IS NOT NULL"),
    ),
)

#: Every attempt of every delivery, append-only (never updated): the delivery log's history.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, ForeignKey(webhook_deliveries.c.id), nullable=False),
    Column("endpoint_id", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),  # the delivery's attempts count, this one included
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("error", String(500)),
    #: the first 1 KiB of the answer's body (decoded as UTF-8, bad bytes replaced)
    Column("response_body", String(1024)),
    Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
)

#: The audit log: every change made through the APIs, appended in the transaction of the change
#: (:mod:`services.commission.core.audit`); a trigger refuses UPDATE, DELETE and TRUNCATE.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor_role", String(16), nullable=False),
    Column("actor_id", String(128), nullable=False),
    Column("client_address", String(64)),
    Column("user_agent", String(512)),
    Column("request_id", String(64)),
    Column("kind", String(64), nullable=False),
    Column("subject", String(300), nullable=False),
    #: whose data changed (``store:<id>``, ``affiliate:<id>``, ``finance:<id>``), if anyone's
    Column("tenant", String(140)),
    Column("before", JSONB),
    Column("after", JSONB),
    Column("changed", JSONB, nullable=False, server_default=text("'[]'")),
    Index("ix_audit_log_tenant", "tenant", "id"),
    Index("ix_audit_log_actor_role", "actor_role", "id"),
    Index("ix_audit_log_at", "at"),
)

#: Partner approval: each affiliate's standing with a store (docs/partners.md). A row exists
#: once the affiliate applied or the store decided on it.
partners = Table(
    "partners",
    metadata,
    Column("store_id", String(128), primary_key=True),
    Column("affiliate_id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("message", String(1000)),  # the application's message
    Column("reason", String(32)),  # the last decision's reason code
    Column("note", String(1000)),  # ...and note
    Column("applied_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("status IN ('pending', 'approved', 'rejected', 'banned')", name="status"),
    Index("ix_partners_store_status", "store_id", "status", "affiliate_id"),
    Index("ix_partners_affiliate", "affiliate_id", "store_id"),
)

#: Every change of a partner's status, appended, never updated (a trigger refuses it).
partner_events = Table(
    "partner_events",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("store_id", String(128), nullable=False),
    Column("affiliate_id", String(128), nullable=False),
    Column("action", String(16), nullable=False),
    Column("status_before", String(16)),
    Column("status_after", String(16), nullable=False),
    Column("reason", String(32)),
    Column("note", String(1000)),
    Column("message", String(1000)),
    Column("actor", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "status_after IN ('pending', 'approved', 'rejected', 'banned')", name="status_after"
    ),
    Index("ix_partner_events_pair", "store_id", "affiliate_id", "id"),
)

consumer_offsets = offsets_table(metadata)
outbox = outbox_table(metadata)

#: Visitors erased (docs/privacy.md), as keyed hashes: their later events are dropped, or
#: pseudonymised where money needs them.
erased_visitors = erased_visitors_table(metadata)
