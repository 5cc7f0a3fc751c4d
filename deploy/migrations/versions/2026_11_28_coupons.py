"""coupon codes: codes of each store, the coupon policy in the program's record, and
attribution's copies of both (issue #13, part 2)

Commission: ``coupons`` (each store's codes as registered now; their history is the operation
record) and four columns of ``program_ops`` (a coupon-policy change's ``policy``, a code's
``affiliate_id`` and validity). Attribution: ``store_coupon_policies`` and ``coupons`` (the
histories it learns from the directory topic) and the code that attributed an order
(``orders.coupon_code``). Nothing existing changes meaning: every store's policy is ``off``.

Revision ID: 892d890dd283
Revises: 8d2e6f1a9b47
Create Date: 2026-11-28 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "892d890dd283"
down_revision: str | None = "8d2e6f1a9b47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
-- commission -------------------------------------------------------------------------------
CREATE TABLE commission.coupons (
    store_id varchar(128) NOT NULL,
    code varchar(64) NOT NULL,
    affiliate_id varchar(128) NOT NULL,
    valid_from timestamptz,
    valid_to timestamptz,
    updated_at timestamptz NOT NULL,
    CONSTRAINT pk_coupons PRIMARY KEY (store_id, code)
);
CREATE INDEX ix_coupons_affiliate ON commission.coupons (affiliate_id);
ALTER TABLE commission.program_ops ADD COLUMN policy varchar(16);
ALTER TABLE commission.program_ops ADD COLUMN affiliate_id varchar(128);
ALTER TABLE commission.program_ops ADD COLUMN valid_from timestamptz;
ALTER TABLE commission.program_ops ADD COLUMN valid_to timestamptz;

-- attribution ------------------------------------------------------------------------------
CREATE TABLE attribution.store_coupon_policies (
    store_id varchar(128) NOT NULL,
    effective_at timestamptz NOT NULL,
    policy varchar(16) NOT NULL,
    CONSTRAINT pk_store_coupon_policies PRIMARY KEY (store_id, effective_at)
);
CREATE TABLE attribution.coupons (
    store_id varchar(128) NOT NULL,
    code varchar(64) NOT NULL,
    effective_at timestamptz NOT NULL,
    affiliate_id varchar(128),
    valid_from timestamptz,
    valid_to timestamptz,
    CONSTRAINT pk_coupons PRIMARY KEY (store_id, code, effective_at)
);
ALTER TABLE attribution.orders ADD COLUMN coupon_code varchar(64);
"""

DOWNGRADE = """
ALTER TABLE attribution.orders DROP COLUMN coupon_code;
DROP TABLE attribution.coupons;
DROP TABLE attribution.store_coupon_policies;
ALTER TABLE commission.program_ops DROP COLUMN valid_to;
ALTER TABLE commission.program_ops DROP COLUMN valid_from;
ALTER TABLE commission.program_ops DROP COLUMN affiliate_id;
ALTER TABLE commission.program_ops DROP COLUMN policy;
DROP TABLE commission.coupons;
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE.split(";"):
        if statement.strip():
            op.execute(statement)
