"""attribution: orders wait for their visitor's clicks partition to be read (held orders)

Revision ID: 5e8a1c3d7b20
Revises: 2b9d4e61c0a7
Create Date: 2026-11-23 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e8a1c3d7b20"
down_revision: str | None = "2b9d4e61c0a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in (
        sa.Column("hold_partition", sa.Integer(), nullable=True),
        sa.Column("hold_offset", sa.BigInteger(), nullable=True),
        sa.Column("held_since", sa.DateTime(timezone=True), nullable=True),
    ):
        op.add_column("orders", column, schema="attribution")
    op.create_index(
        "ix_orders_held",
        "orders",
        ["hold_partition", "hold_offset"],
        schema="attribution",
        postgresql_where=sa.text("revision = -1"),
    )
    op.create_index(
        "ix_orders_held_since",
        "orders",
        ["held_since"],
        schema="attribution",
        postgresql_where=sa.text("revision = -1"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_held_since", table_name="orders", schema="attribution")
    op.drop_index("ix_orders_held", table_name="orders", schema="attribution")
    for name in ("held_since", "hold_offset", "hold_partition"):
        op.drop_column("orders", name, schema="attribution")
