"""idempotency namespaces: the commission service's applied events keyed by (source, key)

``commission.processed_events`` held storefront events and attribution decisions in one
column as ``"<store>/<event id>"``; a store event whose ``event_id`` was ``"<store>:<order>:0"``
took the decision's slot (issue 19, defect 1). Every row now names its ``source``
(``storefront`` | ``decision``, a check constraint) and the primary key is
``(source, event_id)``: services/commission/core/applied.py builds the key of each source.

Existing rows are classified by the topic they were read from (recorded in ``topic`` since the
table exists), never by the key's shape, which is ambiguous (a decision-shaped key may be a
storefront event's): rows read from ``…attributions`` are decisions, every other row a
storefront event. A decision's key becomes ``<store>/<order>/<revision>`` (from
``<store>/<store>:<order>:<revision>``); a decision row whose key does not have that shape is
kept as it was (it can match no new key: a decision is applied again at most once). A
decision dropped before this migration because a store event had taken its slot is not
restored here: ``alliance attribution rebuild`` lists such orders (``missing`` when no
decision was applied), and replaying the ``attributions`` topic applies them.

Revision ID: 6b1f0c9e2d47
Revises: 94b921e2ff0e
Create Date: 2026-12-05 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "6b1f0c9e2d47"
down_revision: str | None = "7c1e5b0d9a42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
ALTER TABLE commission.processed_events ADD COLUMN source varchar(16);
UPDATE commission.processed_events
    SET source = CASE WHEN topic LIKE '%attributions' THEN 'decision' ELSE 'storefront' END;
UPDATE commission.processed_events
    SET event_id = regexp_replace(event_id, '^([^/:]+)/\1:(.+):([0-9]+)$', '\1/\2/\3')
    WHERE source = 'decision';
ALTER TABLE commission.processed_events ALTER COLUMN source SET NOT NULL;
ALTER TABLE commission.processed_events DROP CONSTRAINT pk_processed_events;
ALTER TABLE commission.processed_events
    ADD CONSTRAINT pk_processed_events PRIMARY KEY (source, event_id);
ALTER TABLE commission.processed_events ADD CONSTRAINT ck_processed_events_source
    CHECK (source IN ('storefront', 'decision'))
"""

# Back to one namespace: a storefront row whose key equals a decision's old key is dropped
# (the one column cannot hold both; it is the collision this migration removed).
DOWNGRADE = r"""
ALTER TABLE commission.processed_events DROP CONSTRAINT ck_processed_events_source;
ALTER TABLE commission.processed_events DROP CONSTRAINT pk_processed_events;
UPDATE commission.processed_events
    SET event_id = regexp_replace(event_id, '^([^/]+)/(.+)/([0-9]+)$', '\1/\1:\2:\3')
    WHERE source = 'decision';
DELETE FROM commission.processed_events s
    WHERE s.source = 'storefront' AND EXISTS (
        SELECT 1 FROM commission.processed_events d
        WHERE d.source = 'decision' AND d.event_id = s.event_id
    );
ALTER TABLE commission.processed_events DROP COLUMN source;
ALTER TABLE commission.processed_events ADD CONSTRAINT pk_processed_events PRIMARY KEY (event_id)
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE.split(";"):
        if statement.strip():
            op.execute(statement)
