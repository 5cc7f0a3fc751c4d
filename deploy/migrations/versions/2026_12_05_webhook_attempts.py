"""webhook attempts: every attempt of a delivery kept (append-only); deliveries leased

``commission.webhook_attempts`` holds one row per attempt of a delivery (its time, the
answer's status code, the latency, the error, the first 1 KiB of the answer's body), never
updated: a receiver that failed three times then succeeded shows four attempts.

``webhook_deliveries.lease_until``: the delivery worker claims a delivery by leasing it until
then (committed at once, before it sends); a worker that dies leaves its leases to expire, and
the deliveries are due again then. Two partial indexes serve the claim: the due deliveries of
one endpoint in order, and its deliveries under lease (its attempts in flight).

Revision ID: 5b0e7c3d9a21
Revises: 94b921e2ff0e
Create Date: 2026-12-05 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5b0e7c3d9a21"
down_revision: str | None = "3f6c9a1d2b74"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TABLE commission.webhook_deliveries ADD COLUMN lease_until timestamptz;
CREATE INDEX ix_webhook_deliveries_endpoint_due
    ON commission.webhook_deliveries (endpoint_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX ix_webhook_deliveries_leased
    ON commission.webhook_deliveries (endpoint_id, lease_until)
    WHERE status = 'pending' AND lease_until IS NOT NULL;
CREATE TABLE commission.webhook_attempts (
    id bigserial NOT NULL,
    delivery_id bigint NOT NULL,
    endpoint_id varchar(40) NOT NULL,
    attempt integer NOT NULL,
    at timestamptz NOT NULL,
    status_code integer,
    latency_ms integer NOT NULL,
    error varchar(500),
    response_body varchar(1024),
    CONSTRAINT pk_webhook_attempts PRIMARY KEY (id),
    CONSTRAINT fk_webhook_attempts_delivery_id_webhook_deliveries
        FOREIGN KEY (delivery_id) REFERENCES commission.webhook_deliveries (id)
);
CREATE INDEX ix_webhook_attempts_delivery
    ON commission.webhook_attempts (delivery_id, id)
"""

DOWNGRADE = """
DROP TABLE commission.webhook_attempts;
DROP INDEX commission.ix_webhook_deliveries_leased;
DROP INDEX commission.ix_webhook_deliveries_endpoint_due;
ALTER TABLE commission.webhook_deliveries DROP COLUMN lease_until
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE.split(";"):
        if statement.strip():
            op.execute(statement)
