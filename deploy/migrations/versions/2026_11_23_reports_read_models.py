"""reports: order lines, traffic rollups, visitors per day, catalog (read models)

Revision ID: 3c71b9e0d2f6
Revises: 9f3c2a7d5e14
Create Date: 2026-11-23 16:00:00

Order lines of orders stored before this revision are filled when the orders next change, or
by ``alliance ledger summarise``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3c71b9e0d2f6"
down_revision: str | None = "9f3c2a7d5e14"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DDL = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE commission.order_lines (
    order_id varchar(128) NOT NULL, line_no smallint NOT NULL,
    store_id varchar(128) NOT NULL, product_id varchar(128) NOT NULL,
    category_id varchar(128), title varchar(512) NOT NULL, quantity integer NOT NULL,
    currency varchar(3) NOT NULL, placed_at timestamptz NOT NULL, affiliate_id varchar(128),
    chargeable boolean NOT NULL, status varchar(16) NOT NULL, sales_minor bigint NOT NULL,
    commission_minor bigint NOT NULL, reversed_minor bigint NOT NULL,
    CONSTRAINT pk_order_lines PRIMARY KEY (order_id, line_no));
CREATE INDEX ix_order_lines_store_placed ON commission.order_lines (store_id, placed_at);
CREATE INDEX ix_order_lines_store_product
    ON commission.order_lines (store_id, product_id, placed_at);
CREATE INDEX ix_order_lines_title_trgm
    ON commission.order_lines USING gin (lower(title) gin_trgm_ops);
CREATE TABLE commission.report_clicks (
    click_id varchar(200) NOT NULL, store_id varchar(128) NOT NULL,
    visitor_id varchar(128) NOT NULL, affiliate_id varchar(128) NOT NULL,
    occurred_at timestamptz NOT NULL, suspicious boolean NOT NULL,
    CONSTRAINT pk_report_clicks PRIMARY KEY (click_id));
CREATE INDEX ix_report_clicks_visitor
    ON commission.report_clicks (store_id, visitor_id, occurred_at);
CREATE TABLE commission.traffic_days (
    store_id varchar(128) NOT NULL, day date NOT NULL,
    clicks bigint NOT NULL DEFAULT 0, suspicious_clicks bigint NOT NULL DEFAULT 0,
    page_views bigint NOT NULL DEFAULT 0, affiliate_page_views bigint NOT NULL DEFAULT 0,
    CONSTRAINT pk_traffic_days PRIMARY KEY (store_id, day));
CREATE TABLE commission.visitor_days (
    store_id varchar(128) NOT NULL, day date NOT NULL, visitor_id varchar(128) NOT NULL,
    clicked boolean NOT NULL, viewed boolean NOT NULL,
    CONSTRAINT pk_visitor_days PRIMARY KEY (store_id, day, visitor_id) INCLUDE (clicked));
CREATE TABLE commission.seen_page_views (
    event_id varchar(300) NOT NULL, seen_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_seen_page_views PRIMARY KEY (event_id));
CREATE TABLE commission.products (
    store_id varchar(128) NOT NULL, product_id varchar(128) NOT NULL,
    category_id varchar(128), title varchar(512) NOT NULL, price_minor bigint NOT NULL,
    currency varchar(3) NOT NULL, updated_at timestamptz NOT NULL,
    in_program boolean NOT NULL DEFAULT false, rate numeric(6, 5),
    main boolean NOT NULL DEFAULT false, hot boolean NOT NULL DEFAULT false,
    orders_90d integer NOT NULL DEFAULT 0, score numeric(12, 4) NOT NULL DEFAULT 0,
    CONSTRAINT pk_products PRIMARY KEY (store_id, product_id));
CREATE INDEX ix_products_rank
    ON commission.products (in_program, score DESC, rate DESC, store_id, product_id);
CREATE INDEX ix_products_category ON commission.products (category_id, in_program);
CREATE INDEX ix_refunds_occurred ON commission.refunds (occurred_at);
CREATE INDEX ix_products_title_trgm ON commission.products USING gin (lower(title) gin_trgm_ops);
"""

TABLES = (
    "order_lines",
    "report_clicks",
    "traffic_days",
    "visitor_days",
    "seen_page_views",
    "products",
)


def upgrade() -> None:
    for statement in DDL.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX commission.ix_refunds_occurred")
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE commission.{table}")
