"""postbacks and webhooks: endpoints and their deliveries (the delivery worker's outbox)

Affiliates, stores and finance users register endpoints; each event (``order.attributed``,
``commission.payable``, ``commission.reversed``, ``payout.created``) is written as one
delivery row per receiving endpoint in the transaction of the change that caused it, unique
per (endpoint, event id). No secret is stored: an endpoint's signing secret is derived from
the deployment's secret key, its id and ``secret_version``.

Revision ID: a12fe2e037fc
Revises: 892d890dd283
Create Date: 2026-11-28 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a12fe2e037fc"
down_revision: str | None = "892d890dd283"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE commission.webhook_endpoints (
    id varchar(40) NOT NULL,
    owner_kind varchar(16) NOT NULL,
    owner_id varchar(128) NOT NULL,
    url varchar(2048) NOT NULL,
    method varchar(4) NOT NULL,
    events jsonb NOT NULL,
    secret_version integer NOT NULL DEFAULT 1,
    previous_secret_until timestamptz,
    status varchar(16) NOT NULL DEFAULT 'active',
    disabled_reason varchar(500),
    disabled_at timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    retry_at timestamptz,
    created_at timestamptz NOT NULL,
    deleted_at timestamptz,
    CONSTRAINT pk_webhook_endpoints PRIMARY KEY (id)
);
CREATE INDEX ix_webhook_endpoints_owner
    ON commission.webhook_endpoints (owner_kind, owner_id, id);

CREATE TABLE commission.webhook_deliveries (
    id bigserial NOT NULL,
    endpoint_id varchar(40) NOT NULL,
    event_id varchar(40) NOT NULL,
    event_type varchar(32) NOT NULL,
    order_key varchar(300),
    payload jsonb NOT NULL,
    status varchar(16) NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    due_since timestamptz NOT NULL,
    next_attempt_at timestamptz,
    last_attempt_at timestamptz,
    last_status_code integer,
    last_latency_ms integer,
    last_error varchar(500),
    delivered_at timestamptz,
    created_at timestamptz NOT NULL,
    CONSTRAINT pk_webhook_deliveries PRIMARY KEY (id),
    CONSTRAINT uq_webhook_deliveries_endpoint_id_event_id UNIQUE (endpoint_id, event_id),
    CONSTRAINT fk_webhook_deliveries_endpoint_id_webhook_endpoints
        FOREIGN KEY (endpoint_id) REFERENCES commission.webhook_endpoints (id)
);
CREATE INDEX ix_webhook_deliveries_endpoint
    ON commission.webhook_deliveries (endpoint_id, id);
CREATE INDEX ix_webhook_deliveries_due
    ON commission.webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX ix_webhook_deliveries_order
    ON commission.webhook_deliveries (endpoint_id, order_key, id) WHERE status = 'pending'
"""

DOWNGRADE = """
DROP TABLE commission.webhook_deliveries;
DROP TABLE commission.webhook_endpoints
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE.split(";"):
        if statement.strip():
            op.execute(statement)
