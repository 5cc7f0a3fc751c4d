"""month caps: the per-affiliate-month cap's room, taken by the completions' postings

``commission.month_rooms``: per (store, affiliate, month of completion, currency), what the
postings of the month's completions took of the program's ``per_affiliate_month`` cap (minor
units), locked in key order by the posting transaction. ``commission.orders.month_allowance``:
what that cap left the order when its completion was posted (minor units; NULL: no month cap).

Revision ID: 8b2d4f6a1c37
Revises: 5e1f0c2a7b94
Create Date: 2026-12-06 02:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8b2d4f6a1c37"
down_revision: str | None = "5e1f0c2a7b94"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE commission.month_rooms (
            store_id varchar(128) NOT NULL,
            affiliate_id varchar(128) NOT NULL,
            month char(7) NOT NULL,
            currency char(3) NOT NULL,
            used_minor bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (store_id, affiliate_id, month, currency)
        )
        """
    )
    op.execute("ALTER TABLE commission.orders ADD COLUMN month_allowance bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE commission.orders DROP COLUMN month_allowance")
    op.execute("DROP TABLE commission.month_rooms")
