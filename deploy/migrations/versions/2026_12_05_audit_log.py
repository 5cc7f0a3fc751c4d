"""the audit log: every change made through the APIs, appended, never updated (issue #19)

``commission.audit_log``: one row per change (actor, time, client address, user agent,
request id, kind, subject, tenant, before/after with secrets redacted), written in the
transaction of the change. A trigger refuses every ``UPDATE`` and ``DELETE`` (and
``TRUNCATE``): the log is append-only for every role the services use.

Revision ID: c7a3e91f5d20
Revises: 94b921e2ff0e
Create Date: 2026-12-05 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c7a3e91f5d20"
down_revision: str | None = "5b0e7c3d9a21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = (
    """
CREATE TABLE commission.audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY,
    at timestamptz NOT NULL,
    actor_role varchar(16) NOT NULL,
    actor_id varchar(128) NOT NULL,
    client_address varchar(64),
    user_agent varchar(512),
    request_id varchar(64),
    kind varchar(64) NOT NULL,
    subject varchar(300) NOT NULL,
    tenant varchar(140),
    before jsonb,
    after jsonb,
    changed jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT pk_audit_log PRIMARY KEY (id)
)
""",
    "CREATE INDEX ix_audit_log_tenant ON commission.audit_log (tenant, id)",
    "CREATE INDEX ix_audit_log_actor_role ON commission.audit_log (actor_role, id)",
    "CREATE INDEX ix_audit_log_at ON commission.audit_log (at)",
    """
CREATE FUNCTION commission.audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'commission.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
""",
    """
CREATE TRIGGER audit_log_append_only
BEFORE UPDATE OR DELETE ON commission.audit_log
FOR EACH ROW EXECUTE FUNCTION commission.audit_log_append_only()
""",
    """
CREATE TRIGGER audit_log_no_truncate
BEFORE TRUNCATE ON commission.audit_log
FOR EACH STATEMENT EXECUTE FUNCTION commission.audit_log_append_only()
""",
)

DOWNGRADE = (
    "DROP TABLE commission.audit_log",
    "DROP FUNCTION commission.audit_log_append_only()",
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
