"""clicks: drop the (store, visitor, time) index, which no query uses

Revision ID: 2b9d4e61c0a7
Revises: 7c0b5e2f4a91
Create Date: 2026-11-23 12:45:00

The join reads a visitor's clicks on every store (``ix_clicks_visitor_time``), expiry reads by
time (BRIN); one index fewer to maintain on every click.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2b9d4e61c0a7"
down_revision: str | None = "7c0b5e2f4a91"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_clicks_store_visitor_time", table_name="clicks", schema="attribution")


def downgrade() -> None:
    op.create_index(
        "ix_clicks_store_visitor_time",
        "clicks",
        ["store_id", "visitor_id", "occurred_at"],
        schema="attribution",
    )
