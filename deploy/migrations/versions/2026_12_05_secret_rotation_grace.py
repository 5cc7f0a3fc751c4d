"""principals: ``previous_secret_until``, the end of a store secret rotation's grace

A store's previous webhook secret was accepted until the *next* rotation. From now on it is
accepted while ``now < previous_secret_until``: the rotation's time plus
``ALLIANCE_SECRET_ROTATION_GRACE_S``, or the rotation's time itself with
``rotate-secret?revoke_previous=true``. Existing rows get NULL: a previous version rotated
before this revision is no longer listed in the store's next directory entry (the tracker
bounds one already published by the entry's ``updated_at`` plus the grace).

Revision ID: 8d2f4a6b1c93
Revises: c7a3e91f5d20
Create Date: 2026-12-05 06:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8d2f4a6b1c93"
down_revision: str | None = "c7a3e91f5d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE commission.principals ADD COLUMN previous_secret_until timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE commission.principals DROP COLUMN previous_secret_until")
