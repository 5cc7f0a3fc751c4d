"""click flood: a decision reads clicks by index and stops; a cap on what one visitor or one
address stores per link per day

Two indexes for a decision's two bounded reads (attribution's ``decision_clicks``), each
walked backwards and stopped after what it needs: ``ix_clicks_decision`` (visitor, store,
time, id) over eligible clicks only (a flood's suspicious clicks are not in it) finds an
order's latest eligible click in one probe; ``ix_clicks_visitor_time_id`` (visitor, time, id)
reads the explanation's latest clicks in rank order without a sort, replacing
``ix_clicks_visitor_time``.

``click_caps`` in attribution and commission: per UTC day, link and subject (visitor or client
address), the clicks stored and those counted instead of stored past
``ALLIANCE_CLICK_CAP_PER_DAY`` (shared.clickcap).

Revision ID: 3f6c9a1d2b74
Revises: 94b921e2ff0e
Create Date: 2026-12-05 02:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3f6c9a1d2b74"
down_revision: str | None = "6b1f0c9e2d47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CAPS = """
CREATE TABLE {schema}.click_caps (
    day date NOT NULL,
    link_code varchar(512) NOT NULL,
    subject varchar(200) NOT NULL,
    stored bigint NOT NULL DEFAULT 0,
    overflow bigint NOT NULL DEFAULT 0,
    CONSTRAINT pk_click_caps PRIMARY KEY (day, link_code, subject)
)
"""


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_clicks_decision ON attribution.clicks "
        "(visitor_id, store_id, occurred_at, click_id) WHERE NOT suspicious"
    )
    op.execute(
        "CREATE INDEX ix_clicks_visitor_time_id ON attribution.clicks "
        "(visitor_id, occurred_at, click_id)"
    )
    op.drop_index("ix_clicks_visitor_time", table_name="clicks", schema="attribution")
    for schema in ("attribution", "commission"):
        op.execute(CAPS.format(schema=schema))


def downgrade() -> None:
    for schema in ("attribution", "commission"):
        op.execute(f"DROP TABLE {schema}.click_caps")
    op.create_index(
        "ix_clicks_visitor_time", "clicks", ["visitor_id", "occurred_at"], schema="attribution"
    )
    op.drop_index("ix_clicks_visitor_time_id", table_name="clicks", schema="attribution")
    op.drop_index("ix_clicks_decision", table_name="clicks", schema="attribution")
