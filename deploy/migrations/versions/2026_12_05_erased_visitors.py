"""the lists of erased visitors, as keyed hashes (issue #21, Privacy)

``attribution.erased_visitors`` and ``commission.erased_visitors``: one row per visitor erased
(``DELETE /v1/admin/visitors/{id}``), the HMAC-SHA256 of the id under a key derived from the
deployment's secret key, never the id: each consumer drops (or pseudonymises, where money needs
it) that visitor's events that arrive after the erasure.

Revision ID: b4c0d0199eb0
Revises: e3b8c6d1f047
Create Date: 2026-12-05 12:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b4c0d0199eb0"
down_revision: str | None = "e3b8c6d1f047"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("attribution", "commission")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(
            f"""
CREATE TABLE {schema}.erased_visitors (
    visitor_hash varchar(64) NOT NULL,
    erased_at timestamptz NOT NULL,
    CONSTRAINT pk_erased_visitors PRIMARY KEY (visitor_hash)
)
"""
        )


def downgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"DROP TABLE {schema}.erased_visitors")
