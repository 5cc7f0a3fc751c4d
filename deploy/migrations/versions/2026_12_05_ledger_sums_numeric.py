"""ledger: postings' amounts as NUMERIC(38, 0), so no sum of orders overflows them

A payout posts an affiliate's whole balance in one posting, and the edge bounds orders one by
one (at most 10^12 major units, 10^16 minor units), not their sums: 1,100 maximal orders of
one affiliate made the payout's posting overflow ``bigint`` (9.2 × 10^18), a ``500`` every
time, so that affiliate could never be paid. ``numeric(38, 0)`` holds 10^22 maximal orders;
the SQL ``sum()`` over it is ``numeric`` too (and a ``sum()`` over a ``bigint`` column already
is). Existing values convert exactly (a rewrite of the table under an exclusive lock).

Revision ID: 7c1e5b0d9a42
Revises: 94b921e2ff0e
Create Date: 2026-12-05 03:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7c1e5b0d9a42"
down_revision: str | None = "94b921e2ff0e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE commission.ledger_postings ALTER COLUMN amount_minor TYPE numeric(38, 0)"
    )


def downgrade() -> None:
    # fails (out of range) if a posting no longer fits: such a ledger cannot go back
    op.execute(
        "ALTER TABLE commission.ledger_postings ALTER COLUMN amount_minor TYPE bigint "
        "USING amount_minor::bigint"
    )
