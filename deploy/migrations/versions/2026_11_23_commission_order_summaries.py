"""commission: each order's computed commission kept on the order (settlement rollup)

Revision ID: 9f3c2a7d5e14
Revises: 5e8a1c3d7b20
Create Date: 2026-11-23 13:30:00

Existing orders get their summary from ``alliance ledger summarise`` (or when they next
change); settlements count only summarised orders.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9f3c2a7d5e14"
down_revision: str | None = "5e8a1c3d7b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("chargeable", "sales_minor", "commission_minor", "reversed_minor")


def upgrade() -> None:
    op.add_column("orders", sa.Column("chargeable", sa.Boolean()), schema="commission")
    for name in COLUMNS[1:]:
        op.add_column("orders", sa.Column(name, sa.BigInteger()), schema="commission")
    for who in ("store", "affiliate"):
        op.create_index(
            f"ix_orders_{who}_status_at",
            "orders",
            [f"{who}_id", "status", "status_at"],
            schema="commission",
        )


def downgrade() -> None:
    for who in ("store", "affiliate"):
        op.drop_index(f"ix_orders_{who}_status_at", table_name="orders", schema="commission")
    for name in COLUMNS:
        op.drop_column("orders", name, schema="commission")
