"""directory versions: every directory entry carries a version per key that only grows, and
every reader ignores an entry older than the one it holds (issue #19, defect 7)

``commission.directory_versions``: the last version given to each directory key (``store:…``,
``affiliate:…``, ``coupon:…:…``), bumped under its row lock in the transaction that writes the
entry to the outbox. ``attribution.directory_versions``: the version attribution holds per key,
written in the batch that applied the entry. Entries published before carry version 0, which
never overrides a versioned one.

Revision ID: 4e8b2d7f1a05
Revises: c7a3e91f5d20
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "4e8b2d7f1a05"
down_revision: str | None = "8d2f4a6b1c93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = """
CREATE TABLE {schema}.directory_versions (
    key varchar(300) NOT NULL,
    version bigint NOT NULL,
    CONSTRAINT pk_directory_versions PRIMARY KEY (key)
)
"""

SCHEMAS = ("commission", "attribution")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(TABLE.format(schema=schema))


def downgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"DROP TABLE {schema}.directory_versions")
