"""day partitions: clicks, report clicks and visitor-days range-partitioned by day

``attribution.clicks``, ``commission.report_clicks`` and ``commission.visitor_days`` become
tables range-partitioned by day (docs/retention.md), so that the retention job expires a day
by dropping its partition instead of deleting its rows.

On a live database, without copying a row: each table is renamed ``<name>_legacy`` and
attached whole as the partition of everything before tomorrow (its last day, if later);
its indexes become the partitioned indexes' (matched by definition, not rebuilt). The one
index that is built is the clicks tables' new primary key, ``(click_id, occurred_at)``: a
partitioned table's unique keys must hold its partition key. Built beforehand without a lock
(``CREATE UNIQUE INDEX CONCURRENTLY <table>_pk_ready ON <schema>.<table> (click_id,
occurred_at)``), it is adopted instead. Then come a default partition
(the rows of days without a partition: an old backdated click once its days were dropped)
and a partition per day up to a week ahead; the retention job keeps creating them. The
legacy partition goes whole when its last day is past the retention.

``processed_events`` and ``seen_page_views`` stay plain tables: their key is the event id
alone, the idempotency a day partition's key could not keep across days. They get a BRIN
index on their time instead, for the job's chunked deletes of records past
ALLIANCE_RETENTION_IDEMPOTENCY_DAYS.

Down again: plain tables, their rows copied back.

Revision ID: 7a1e5c3d9b20
Revises: dc51ab691c54
Create Date: 2026-12-06 01:45:00
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from alembic import op
from sqlalchemy import text

revision: str = "7a1e5c3d9b20"
down_revision: str | None = "dc51ab691c54"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: day partitions created ahead here; the retention job keeps its own setting afterwards
AHEAD_DAYS = 7


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    column: str
    date_key: bool  # a date column (else timestamptz, days in UTC)
    old_key: str  # the primary key's columns before
    new_key: str  # and after (the partition key among them)
    include: str  # the key's INCLUDE clause, if any
    #: (name, definition after ON <table>) of its other indexes
    indexes: tuple[tuple[str, str], ...]


TABLES = (
    Table(
        "attribution",
        "clicks",
        "occurred_at",
        False,
        "click_id",
        "click_id, occurred_at",
        "",
        (
            (
                "ix_clicks_decision",
                "USING btree (visitor_id, store_id, occurred_at, click_id) WHERE NOT suspicious",
            ),
            ("ix_clicks_occurred_at", "USING brin (occurred_at)"),
            ("ix_clicks_visitor_time_id", "USING btree (visitor_id, occurred_at, click_id)"),
        ),
    ),
    Table(
        "commission",
        "report_clicks",
        "occurred_at",
        False,
        "click_id",
        "click_id, occurred_at",
        "",
        (("ix_report_clicks_visitor", "USING btree (store_id, visitor_id, occurred_at)"),),
    ),
    Table(
        "commission",
        "visitor_days",
        "day",
        True,
        "store_id, day, visitor_id",
        "store_id, day, visitor_id",
        " INCLUDE (clicked)",
        (),
    ),
)

#: plain tables the job deletes from by time
IDEMPOTENCY = (
    ("commission", "processed_events", "processed_at"),
    ("commission", "seen_page_views", "seen_at"),
)


def _literal(t: Table, day: date) -> str:
    return f"'{day.isoformat()}'" if t.date_key else f"'{day.isoformat()} 00:00:00+00'"


def _partition(t: Table) -> None:
    q, legacy = f"{t.schema}.{t.name}", f"{t.name}_legacy"
    bind = op.get_bind()
    last = bind.execute(
        text(
            f"SELECT max({t.column})::date FROM {q}"
            if t.date_key
            else f"SELECT (max({t.column}) AT TIME ZONE 'UTC')::date FROM {q}"
        )
    ).scalar()
    today = bind.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()
    upper = max(today, last or today) + timedelta(days=1)
    op.execute(f"ALTER TABLE {q} RENAME TO {legacy}")
    lq = f"{t.schema}.{legacy}"
    for name, _ in t.indexes:  # their names go to the partitioned table's indexes
        op.execute(f"ALTER INDEX {t.schema}.{name} RENAME TO {name}_legacy")
    ready = f"{t.name}_pk_ready"
    if t.old_key == t.new_key:
        op.execute(f"ALTER TABLE {lq} RENAME CONSTRAINT pk_{t.name} TO {legacy}_pkey")
    elif bind.execute(text(f"SELECT to_regclass('{t.schema}.{ready}')")).scalar() is not None:
        # built beforehand, CONCURRENTLY, by the operator (docs/retention.md): adopted as is
        op.execute(
            f"ALTER TABLE {lq} DROP CONSTRAINT pk_{t.name}, "
            f"ADD CONSTRAINT {legacy}_pkey PRIMARY KEY USING INDEX {ready}"
        )
    else:
        op.execute(
            f"ALTER TABLE {lq} DROP CONSTRAINT pk_{t.name}, "
            f"ADD CONSTRAINT {legacy}_pkey PRIMARY KEY ({t.new_key}){t.include}"
        )
    op.execute(f"CREATE TABLE {q} (LIKE {lq} INCLUDING DEFAULTS) PARTITION BY RANGE ({t.column})")
    op.execute(f"ALTER TABLE {q} ADD CONSTRAINT pk_{t.name} PRIMARY KEY ({t.new_key}){t.include}")
    for name, definition in t.indexes:
        op.execute(f"CREATE INDEX {name} ON {q} {definition}")
    # a constraint that proves the bound: ATTACH then does not scan the table again
    bound = _literal(t, upper)
    op.execute(f"ALTER TABLE {lq} ADD CONSTRAINT {legacy}_bound CHECK ({t.column} < {bound})")
    op.execute(f"ALTER TABLE {q} ATTACH PARTITION {lq} FOR VALUES FROM (MINVALUE) TO ({bound})")
    op.execute(f"ALTER TABLE {lq} DROP CONSTRAINT {legacy}_bound")
    op.execute(f"CREATE TABLE {q}_default PARTITION OF {q} DEFAULT")
    day = upper
    while day <= today + timedelta(days=AHEAD_DAYS):
        op.execute(
            f"CREATE TABLE {q}_p{day:%Y%m%d} PARTITION OF {q} "
            f"FOR VALUES FROM ({_literal(t, day)}) TO ({_literal(t, day + timedelta(days=1))})"
        )
        day += timedelta(days=1)


def _unpartition(t: Table) -> None:
    q, old = f"{t.schema}.{t.name}", f"{t.name}_partitioned"
    op.execute(f"ALTER TABLE {q} RENAME TO {old}")
    oq = f"{t.schema}.{old}"
    op.execute(f"ALTER TABLE {oq} RENAME CONSTRAINT pk_{t.name} TO {old}_pkey")
    for name, _ in t.indexes:
        op.execute(f"ALTER INDEX {t.schema}.{name} RENAME TO {name}_partitioned")
    op.execute(f"CREATE TABLE {q} (LIKE {oq} INCLUDING DEFAULTS)")
    op.execute(f"INSERT INTO {q} SELECT * FROM {oq}")
    op.execute(f"ALTER TABLE {q} ADD CONSTRAINT pk_{t.name} PRIMARY KEY ({t.old_key}){t.include}")
    for name, definition in t.indexes:
        op.execute(f"CREATE INDEX {name} ON {q} {definition}")
    op.execute(f"DROP TABLE {oq}")  # and its partitions


def upgrade() -> None:
    for t in TABLES:
        _partition(t)
    for schema, name, column in IDEMPOTENCY:
        op.execute(f"CREATE INDEX ix_{name}_{column} ON {schema}.{name} USING brin ({column})")


def downgrade() -> None:
    for schema, name, column in IDEMPOTENCY:
        op.execute(f"DROP INDEX {schema}.ix_{name}_{column}")
    for t in reversed(TABLES):
        _unpartition(t)
