"""camp: the visitors' interests (the alliance camp's personal boost)

One row per (visitor, store, category, kind): the last time the visitor viewed a page of,
clicked an affiliate link to, or ordered from that store (and category: '' when the product
met had none, or was not in the catalog). The reports consumer keeps it (greatest last time:
idempotent on replay); rows older than the camp's 90 days of history are forgotten
periodically, so the table is bounded by 90 days of distinct interactions. Read by visitor
(the key's prefix) for one request of ``GET /v1/camp/products``.

Revision ID: 94b921e2ff0e
Revises: 8d2e6f1a9b47
Create Date: 2026-11-28 10:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "94b921e2ff0e"
down_revision: str | None = "8d2e6f1a9b47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE commission.visitor_interests (
    visitor_id varchar(128) NOT NULL,
    store_id varchar(128) NOT NULL,
    category_id varchar(128) NOT NULL DEFAULT '',
    kind varchar(8) NOT NULL,
    last_at timestamptz NOT NULL,
    CONSTRAINT pk_visitor_interests PRIMARY KEY (visitor_id, store_id, category_id, kind),
    CONSTRAINT ck_visitor_interests_kind CHECK (kind IN ('view', 'click', 'order'))
);
CREATE INDEX ix_visitor_interests_last_at ON commission.visitor_interests (last_at);
"""

DOWNGRADE = """
DROP TABLE commission.visitor_interests;
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE.split(";"):
        if statement.strip():
            op.execute(statement)
