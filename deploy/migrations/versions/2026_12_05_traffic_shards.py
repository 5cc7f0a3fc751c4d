"""traffic counts and visitor sketches per (store, day, shard): no row every worker updates

``traffic_days`` (clicks, page views per store and UTC day) and ``visitor_sketches`` (the
day's HyperLogLog sketches) had one row per (store, day), upserted by every batch of the
reports consumer that held an event of the store that day: two workers' batches of one store
waited on each other's row lock until the first committed (``Lock:transactionid`` in
``pg_stat_activity``), so a second worker added little (bench-scale). Each row is now also
keyed by ``shard``: the Kafka partition of the events it counts (clicks and page views are
keyed by visitor, so a visitor's events share one partition number). A partition is read by
one worker of the group at a time, so a row is written by one worker only; a store's day has
at most as many rows as the topics have partitions. Readers already sum the counts and union
the sketches of a range's rows; the rows held so far become shard 0. A closed day's rows are
folded into its shard 0 hourly by the commission service (a partial index finds the unfolded).

Revision ID: 7c4d2e9b1f36
Revises: e4a7c2b9d61f
Create Date: 2026-12-05 12:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7c4d2e9b1f36"
down_revision: str | None = "e4a7c2b9d61f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("traffic_days", "visitor_sketches")


def upgrade() -> None:
    for table in _TABLES:
        op.execute(
            f"ALTER TABLE commission.{table} ADD COLUMN shard smallint NOT NULL DEFAULT 0, "
            f"DROP CONSTRAINT pk_{table}, "
            f"ADD CONSTRAINT pk_{table} PRIMARY KEY (store_id, day, shard)"
        )
        # what the hourly fold looks for: the few rows not yet folded, by day (no scan)
        op.execute(f"CREATE INDEX ix_{table}_unfolded ON commission.{table} (day) WHERE shard <> 0")


#: each key's rows folded into its shard 0 (the downgrade's one row per store and day)
_FOLD = {
    "traffic_days": """
        WITH gone AS (DELETE FROM commission.traffic_days WHERE shard <> 0 RETURNING *)
        INSERT INTO commission.traffic_days AS t (store_id, day, shard, clicks,
            suspicious_clicks, page_views, affiliate_page_views)
        SELECT store_id, day, 0, sum(clicks), sum(suspicious_clicks), sum(page_views),
            sum(affiliate_page_views)
        FROM gone GROUP BY store_id, day
        ON CONFLICT (store_id, day, shard) DO UPDATE SET clicks = t.clicks + excluded.clicks,
            suspicious_clicks = t.suspicious_clicks + excluded.suspicious_clicks,
            page_views = t.page_views + excluded.page_views,
            affiliate_page_views = t.affiliate_page_views + excluded.affiliate_page_views
    """,
    "visitor_sketches": """
        WITH gone AS (DELETE FROM commission.visitor_sketches WHERE shard <> 0 RETURNING *)
        INSERT INTO commission.visitor_sketches AS k (store_id, day, shard, affiliate_visitors,
            store_visitors)
        SELECT store_id, day, 0, hll_union_agg(affiliate_visitors), hll_union_agg(store_visitors)
        FROM gone GROUP BY store_id, day
        ON CONFLICT (store_id, day, shard) DO UPDATE SET
            affiliate_visitors = hll_union(k.affiliate_visitors, excluded.affiliate_visitors),
            store_visitors = hll_union(k.store_visitors, excluded.store_visitors)
    """,
}


def downgrade() -> None:
    for table in _TABLES:
        op.execute(_FOLD[table])
        op.execute(
            f"ALTER TABLE commission.{table} DROP CONSTRAINT pk_{table}, DROP COLUMN shard, "
            f"ADD CONSTRAINT pk_{table} PRIMARY KEY (store_id, day)"
        )
