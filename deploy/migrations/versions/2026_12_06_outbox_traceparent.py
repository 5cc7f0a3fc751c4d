"""outbox rows keep the trace context of the transaction that wrote them

``attribution.outbox.traceparent`` and ``commission.outbox.traceparent``: the W3C
``traceparent`` of the span that wrote the row (NULL while traces are off), which the relay
sends on in the record's headers, so that one order's trace goes on across the outbox
(shared/tracing.py).

Revision ID: 7f3a9c2e41d0
Revises: 7a1e5c3d9b20
Create Date: 2026-12-06 02:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7f3a9c2e41d0"
down_revision: str | None = "7a1e5c3d9b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for schema in ("attribution", "commission"):
        op.execute(f"ALTER TABLE {schema}.outbox ADD COLUMN traceparent varchar(64)")


def downgrade() -> None:
    for schema in ("attribution", "commission"):
        op.execute(f"ALTER TABLE {schema}.outbox DROP COLUMN traceparent")
