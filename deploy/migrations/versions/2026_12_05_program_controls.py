"""program controls: refunds' reported time (the locking date), reason-coded adjustments

``commission.refunds.reported_at``: when a refund was reported (the later of its event time
and its arrival at the tracker; NULL for refunds stored before: their event time), which the
locking date is compared with. ``commission.ledger_transactions.reason``: an adjustment's
reason code. ``commission.adjustments``: every accepted adjustment of an order, numbered per
order, once per (store, Idempotency-Key). ``commission.lock_notices``: the orders whose
``commission.locked`` event was written (the periodic announcer's marks).
``commission.holds``: affiliates held by finance (a store or every store) while fraud is
reviewed. The lock period
itself is a program operation (``program_ops`` kind ``lock_period``, ``days``).

Revision ID: dc51ab691c54
Revises: b4c0d0199eb0
Create Date: 2026-12-05 12:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "dc51ab691c54"
down_revision: str | None = "b4c0d0199eb0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE commission.refunds ADD COLUMN reported_at timestamptz")
    op.execute("ALTER TABLE commission.ledger_transactions ADD COLUMN reason varchar(32)")
    op.execute(
        """
        CREATE TABLE commission.adjustments (
            store_id varchar(128) NOT NULL,
            order_id varchar(128) NOT NULL,
            seq smallint NOT NULL,
            idempotency_key varchar(200) NOT NULL,
            at timestamptz NOT NULL,
            action varchar(16) NOT NULL,
            reason varchar(32) NOT NULL,
            note varchar(1000),
            lines jsonb NOT NULL,
            actor varchar(200) NOT NULL,
            CONSTRAINT pk_adjustments PRIMARY KEY (store_id, order_id, seq),
            CONSTRAINT uq_adjustments_store_id_idempotency_key UNIQUE (store_id, idempotency_key)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE commission.lock_notices (
            store_id varchar(128) NOT NULL,
            order_id varchar(128) NOT NULL,
            locks_at timestamptz NOT NULL,
            announced_at timestamptz NOT NULL,
            CONSTRAINT pk_lock_notices PRIMARY KEY (store_id, order_id)
        )
        """
    )

    op.execute(
        """
        CREATE TABLE commission.holds (
            id bigserial NOT NULL,
            affiliate_id varchar(128) NOT NULL,
            store_id varchar(128),
            reason varchar(32) NOT NULL,
            note varchar(1000),
            status varchar(16) NOT NULL,
            created_at timestamptz NOT NULL,
            created_by varchar(200) NOT NULL,
            ended_at timestamptz,
            ended_by varchar(200),
            CONSTRAINT pk_holds PRIMARY KEY (id)
        )
        """
    )
    op.execute("CREATE INDEX ix_holds_affiliate ON commission.holds (affiliate_id, status)")


def downgrade() -> None:
    op.execute("DROP TABLE commission.holds")
    op.execute("DROP TABLE commission.lock_notices")
    op.execute("DROP TABLE commission.adjustments")
    op.execute("ALTER TABLE commission.ledger_transactions DROP COLUMN reason")
    op.execute("ALTER TABLE commission.refunds DROP COLUMN reported_at")
