"""incentives: the new-buyer bonus, performance tiers and caps as program operations

``commission.program_ops.incentive``: an incentive's new setting (kinds ``new_buyer``,
``tiers``, ``caps``), as ``core.incentives.setting_json`` stores it; NULL for every other
kind of operation. ``commission.orders.new_buyer``: the storefront marked the order as the
buyer's first on the marketplace (``order_placed.new_buyer``; false for orders stored before).

Revision ID: 5e1c7a9b3d20
Revises: dc51ab691c54
Create Date: 2026-12-06 01:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5e1c7a9b3d20"
down_revision: str | None = "7f3a9c2e41d0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE commission.program_ops ADD COLUMN incentive jsonb")
    op.execute("ALTER TABLE commission.orders ADD COLUMN new_buyer boolean NOT NULL DEFAULT false")


def downgrade() -> None:
    op.execute("ALTER TABLE commission.orders DROP COLUMN new_buyer")
    op.execute("ALTER TABLE commission.program_ops DROP COLUMN incentive")
