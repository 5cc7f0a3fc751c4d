"""camp: the visitors' interests (the alliance camp's personal boost), ranking indexes

One row per (visitor, store, category, kind): the last time the visitor viewed a page of,
clicked an affiliate link to, or ordered from that store (and category: '' when the product
met had none, or was not in the catalog). The reports consumer keeps it (greatest last time:
idempotent on replay); rows older than the camp's 90 days of history are forgotten
periodically, so the table is bounded by 90 days of distinct interactions. Read by visitor
(the key's prefix) for one request of ``GET /v1/camp/products``.

Three partial indexes of the products in the program, in ranking order per category, per
store and overall, each holding every column the camp shows: the camp walks the first two
for the best products of each of a visitor's categories and stores, and the third for the
rest, index-only (a keyword is matched on the title in the index); a category query (camp or
channel) reads its first page without a sort.

Revision ID: 94b921e2ff0e
Revises: a12fe2e037fc
Create Date: 2026-11-28 10:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "94b921e2ff0e"
down_revision: str | None = "a12fe2e037fc"
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
-- the camp's walks in ranking order per category and per store (the personal boost's
-- candidates, and a category query of the camp or the channel), in the program only
-- (each holding every column the camp shows: a walk that matches a keyword or a category
-- is index-only, it never reads the table)
CREATE INDEX ix_products_category_rank ON commission.products
    (category_id, score DESC, rate DESC, store_id, product_id)
    INCLUDE (title, price_minor, currency, hot) WHERE in_program;
CREATE INDEX ix_products_store_rank ON commission.products
    (store_id, score DESC, rate DESC, product_id)
    INCLUDE (category_id, title, price_minor, currency, hot) WHERE in_program;
-- and the whole program's, for the camp's plain walk (a keyword matched in the index)
CREATE INDEX ix_products_camp_rank ON commission.products
    (score DESC, rate DESC, store_id, product_id)
    INCLUDE (title, category_id, price_minor, currency, hot) WHERE in_program;
"""

DOWNGRADE = """
DROP INDEX commission.ix_products_camp_rank;
DROP INDEX commission.ix_products_store_rank;
DROP INDEX commission.ix_products_category_rank;
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
