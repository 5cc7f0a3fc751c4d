"""partner approval: each affiliate's standing with a store and its append-only history

``commission.partners``: one row per (store, affiliate) that applied or was decided on, with
its status (pending, approved, rejected, banned), the application's message and the last
decision's reason and note. ``commission.partner_events``: every change of a partner's status
(who, when, the action, before and after, reason, note), appended, never updated: a trigger
refuses ``UPDATE`` and ``DELETE``. The store's enrollment mode and the bans themselves are
program operations (``program_ops`` kinds ``enrollment``, ``partner_ban``,
``partner_unban``), so the commission of an order follows the ban in force at placement.

Revision ID: 5e1f0c2a7b94
Revises: 5e1c7a9b3d20
Create Date: 2026-12-06 02:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5e1f0c2a7b94"
down_revision: str | None = "5e1c7a9b3d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'pending', 'approved', 'rejected', 'banned'"

UPGRADE = (
    f"""
CREATE TABLE commission.partners (
    store_id varchar(128) NOT NULL,
    affiliate_id varchar(128) NOT NULL,
    status varchar(16) NOT NULL,
    message varchar(1000),
    reason varchar(32),
    note varchar(1000),
    applied_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT pk_partners PRIMARY KEY (store_id, affiliate_id),
    CONSTRAINT ck_partners_status CHECK (status IN ({STATUSES}))
)
""",
    "CREATE INDEX ix_partners_store_status ON commission.partners (store_id, status, affiliate_id)",
    "CREATE INDEX ix_partners_affiliate ON commission.partners (affiliate_id, store_id)",
    f"""
CREATE TABLE commission.partner_events (
    id bigint GENERATED ALWAYS AS IDENTITY,
    store_id varchar(128) NOT NULL,
    affiliate_id varchar(128) NOT NULL,
    action varchar(16) NOT NULL,
    status_before varchar(16),
    status_after varchar(16) NOT NULL,
    reason varchar(32),
    note varchar(1000),
    message varchar(1000),
    actor varchar(200) NOT NULL,
    at timestamptz NOT NULL,
    CONSTRAINT pk_partner_events PRIMARY KEY (id),
    CONSTRAINT ck_partner_events_status_after CHECK (status_after IN ({STATUSES}))
)
""",
    "CREATE INDEX ix_partner_events_pair ON commission.partner_events (store_id, affiliate_id, id)",
    """
CREATE FUNCTION commission.partner_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'commission.partner_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
""",
    """
CREATE TRIGGER partner_events_append_only
BEFORE UPDATE OR DELETE ON commission.partner_events
FOR EACH ROW EXECUTE FUNCTION commission.partner_events_append_only()
""",
)

DOWNGRADE = (
    "DROP TABLE commission.partner_events",
    "DROP FUNCTION commission.partner_events_append_only()",
    "DROP TABLE commission.partners",
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
