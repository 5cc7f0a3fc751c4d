"""per-program attribution windows, click expiry index

Revision ID: 7c0b5e2f4a91
Revises: d4423f79ec2d
Create Date: 2026-11-23 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c0b5e2f4a91"
down_revision: str | None = "d4423f79ec2d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "program_ops", sa.Column("days", sa.SmallInteger(), nullable=True), schema="commission"
    )
    op.create_table(
        "store_windows",
        sa.Column("store_id", sa.String(length=128), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("days", sa.SmallInteger(), nullable=True),
        sa.PrimaryKeyConstraint("store_id", "effective_at", name=op.f("pk_store_windows")),
        schema="attribution",
    )
    op.create_index(
        op.f("ix_clicks_occurred_at"),
        "clicks",
        ["occurred_at"],
        schema="attribution",
        postgresql_using="brin",
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_clicks_occurred_at"), table_name="clicks", schema="attribution")
    op.drop_table("store_windows", schema="attribution")
    op.drop_column("program_ops", "days", schema="commission")
