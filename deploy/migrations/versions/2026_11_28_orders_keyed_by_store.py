"""orders keyed by (store, order): two stores may use the same order number

Every order fact, decision, ledger key and read model is keyed by ``(store_id, order_id)``,
never by the order number alone, so that a store's events can only ever reach its own
orders. Existing rows keep their store (status rows of attribution and refunds take it from
their order). Derived identifiers get room for the identifier budget: click ids (``s2s:<store>:
<event>``) up to 200 characters, processed event keys (``<store>/<event>``) up to 300. Ledger
idempotency keys name the store: ``commission:<store>:<order>`` and
``reversal:<store>:<order>/<refund>``.

Revision ID: 8d2e6f1a9b47
Revises: 3c71b9e0d2f6
Create Date: 2026-11-28 01:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8d2e6f1a9b47"
down_revision: str | None = "3c71b9e0d2f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
-- attribution ------------------------------------------------------------------------------
ALTER TABLE attribution.clicks ALTER COLUMN click_id TYPE varchar(200);
ALTER TABLE attribution.orders ALTER COLUMN click_id TYPE varchar(200);
ALTER TABLE attribution.orders DROP CONSTRAINT pk_orders;
ALTER TABLE attribution.orders ADD CONSTRAINT pk_orders PRIMARY KEY (store_id, order_id);

ALTER TABLE attribution.order_status ADD COLUMN store_id varchar(128);
UPDATE attribution.order_status s SET store_id = o.store_id
    FROM attribution.orders o WHERE o.order_id = s.order_id;
-- a status whose order was never placed here: its store from the commission service's facts
UPDATE attribution.order_status s SET store_id = o.store_id
    FROM commission.orders o WHERE s.store_id IS NULL AND o.order_id = s.order_id;
UPDATE attribution.order_status SET store_id = '' WHERE store_id IS NULL;
ALTER TABLE attribution.order_status ALTER COLUMN store_id SET NOT NULL;
ALTER TABLE attribution.order_status DROP CONSTRAINT pk_order_status;
ALTER TABLE attribution.order_status
    ADD CONSTRAINT pk_order_status PRIMARY KEY (store_id, order_id);

-- commission -------------------------------------------------------------------------------
ALTER TABLE commission.processed_events ALTER COLUMN event_id TYPE varchar(300);
ALTER TABLE commission.orders ALTER COLUMN click_id TYPE varchar(200);
ALTER TABLE commission.orders DROP CONSTRAINT pk_orders;
ALTER TABLE commission.orders ADD CONSTRAINT pk_orders PRIMARY KEY (store_id, order_id);

ALTER TABLE commission.refunds ADD COLUMN store_id varchar(128);
UPDATE commission.refunds r SET store_id = o.store_id
    FROM commission.orders o WHERE o.order_id = r.order_id;
UPDATE commission.refunds SET store_id = '' WHERE store_id IS NULL;
ALTER TABLE commission.refunds ALTER COLUMN store_id SET NOT NULL;
ALTER TABLE commission.refunds DROP CONSTRAINT pk_refunds;
ALTER TABLE commission.refunds
    ADD CONSTRAINT pk_refunds PRIMARY KEY (store_id, order_id, refund_id);

ALTER TABLE commission.order_lines DROP CONSTRAINT pk_order_lines;
ALTER TABLE commission.order_lines
    ADD CONSTRAINT pk_order_lines PRIMARY KEY (store_id, order_id, line_no);

UPDATE commission.ledger_transactions
    SET key = 'reversal:' || store_id || ':' || order_id || '/'
        || substr(key, length('reversal:' || order_id || ':') + 1)
    WHERE kind = 'reversal' AND order_id IS NOT NULL AND store_id IS NOT NULL
      AND key LIKE 'reversal:%' AND key NOT LIKE 'reversal:' || store_id || ':%/%';
UPDATE commission.ledger_transactions
    SET key = 'commission:' || store_id || ':' || order_id
    WHERE kind = 'commission' AND order_id IS NOT NULL AND store_id IS NOT NULL
      AND key = 'commission:' || order_id;
DROP INDEX commission.ix_ledger_transactions_order;
CREATE INDEX ix_ledger_transactions_order ON commission.ledger_transactions (store_id, order_id);
"""

DOWNGRADE = """
DROP INDEX commission.ix_ledger_transactions_order;
CREATE INDEX ix_ledger_transactions_order ON commission.ledger_transactions (order_id);
UPDATE commission.ledger_transactions SET key = 'commission:' || order_id
    WHERE kind = 'commission' AND order_id IS NOT NULL;
UPDATE commission.ledger_transactions
    SET key = 'reversal:' || order_id || ':'
        || substr(key, length('reversal:' || store_id || ':' || order_id || '/') + 1)
    WHERE kind = 'reversal' AND order_id IS NOT NULL AND store_id IS NOT NULL;
ALTER TABLE commission.order_lines DROP CONSTRAINT pk_order_lines;
ALTER TABLE commission.order_lines ADD CONSTRAINT pk_order_lines PRIMARY KEY (order_id, line_no);
ALTER TABLE commission.refunds DROP CONSTRAINT pk_refunds;
ALTER TABLE commission.refunds ADD CONSTRAINT pk_refunds PRIMARY KEY (order_id, refund_id);
ALTER TABLE commission.refunds DROP COLUMN store_id;
ALTER TABLE commission.orders DROP CONSTRAINT pk_orders;
ALTER TABLE commission.orders ADD CONSTRAINT pk_orders PRIMARY KEY (order_id);
ALTER TABLE attribution.order_status DROP CONSTRAINT pk_order_status;
ALTER TABLE attribution.order_status ADD CONSTRAINT pk_order_status PRIMARY KEY (order_id);
ALTER TABLE attribution.order_status DROP COLUMN store_id;
ALTER TABLE attribution.orders DROP CONSTRAINT pk_orders;
ALTER TABLE attribution.orders ADD CONSTRAINT pk_orders PRIMARY KEY (order_id);
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE.split(";"):
        if statement.strip():
            op.execute(statement)
