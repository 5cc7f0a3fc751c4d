"""visitor sketches: distinct visitors over a range from per-day HyperLogLog sketches

``commission.visitor_sketches``: per store and UTC day, an ``hll`` sketch (postgresql-hll,
log2m 12, regwidth 5: a relative standard error of 1.625%) of its affiliate visitors and of its
store visitors, filled here from ``visitor_days`` and kept by the reports consumer. A range's
distinct visitors are the cardinality of the union of its days' sketches; a single day's stay
exact (``visitor_days``).

The extension is not a trusted one: a superuser creates it (the stack does it in template1 and
the application database, CloudNativePG in its bootstrap, the compose image's owner is one);
``IF NOT EXISTS`` makes this a no-op then, and creates it where the migrating role may.

Revision ID: b5e9d3f71c28
Revises: 4e8b2d7f1a05
Create Date: 2026-12-05 07:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b5e9d3f71c28"
down_revision: str | None = "a20d1c5e7f31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS hll")
    op.execute(
        """
        CREATE TABLE commission.visitor_sketches (
            store_id varchar(128) NOT NULL,
            day date NOT NULL,
            affiliate_visitors hll NOT NULL,
            store_visitors hll NOT NULL,
            CONSTRAINT pk_visitor_sketches PRIMARY KEY (store_id, day)
        )
        """
    )
    op.execute(
        """
        INSERT INTO commission.visitor_sketches
        SELECT store_id, day,
            coalesce(hll_add_agg(hll_hash_text(visitor_id), 12, 5) FILTER (WHERE clicked),
                hll_empty(12, 5)),
            hll_add_agg(hll_hash_text(visitor_id), 12, 5)
        FROM commission.visitor_days
        GROUP BY store_id, day
        """
    )


def downgrade() -> None:
    # the extension stays: a superuser's, and other databases of the cluster may use it
    op.execute("DROP TABLE commission.visitor_sketches")
