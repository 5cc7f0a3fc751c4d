"""payout runs: affiliates' payout settings, platform minimums, FX rates, runs (issue #23)

``commission.payout_settings``: an affiliate's payout currency, minimum and bank details
(IBAN and BIC checked by the API). ``commission.payout_minimums``: finance's platform minimum
per currency (10.00 where none is set). ``commission.fx_rates``: the rates finance records
per UTC day and pair (``EUR/USD`` = how many USD one EUR buys). ``commission.payout_runs``:
one per Idempotency-Key; its payouts are rows of ``commission.payouts`` (``run_id``, unique
per affiliate) and its affiliates carried forward rows of ``commission.payout_run_carried``:
each affiliate's step of a run commits on its own, so a run that stops half-way resumes
where it stopped and pays nobody twice.

Revision ID: e4a7c2b9d61f
Revises: b5e9d3f71c28
Create Date: 2026-12-05 12:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e4a7c2b9d61f"
down_revision: str | None = "b5e9d3f71c28"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = (
    """
CREATE TABLE commission.payout_settings (
    affiliate_id varchar(128) NOT NULL,
    currency varchar(3) NOT NULL,
    minimum_minor bigint NOT NULL,
    method varchar(32) NOT NULL,
    iban varchar(34) NOT NULL,
    bic varchar(11) NOT NULL,
    account_holder varchar(70) NOT NULL,
    tax_id varchar(64),
    address varchar(280) NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT pk_payout_settings PRIMARY KEY (affiliate_id)
)
""",
    """
CREATE TABLE commission.payout_minimums (
    currency varchar(3) NOT NULL,
    minimum_minor bigint NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT pk_payout_minimums PRIMARY KEY (currency)
)
""",
    """
CREATE TABLE commission.fx_rates (
    day date NOT NULL,
    base varchar(3) NOT NULL,
    quote varchar(3) NOT NULL,
    rate numeric(24, 10) NOT NULL,
    recorded_at timestamptz NOT NULL,
    CONSTRAINT pk_fx_rates PRIMARY KEY (day, base, quote),
    CONSTRAINT ck_fx_rates_positive CHECK (rate > 0)
)
""",
    """
CREATE TABLE commission.payout_runs (
    id bigserial NOT NULL,
    idempotency_key varchar(200) NOT NULL,
    up_to timestamptz NOT NULL,
    currency varchar(3),
    created_at timestamptz NOT NULL,
    created_by varchar(200) NOT NULL,
    finished_at timestamptz,
    CONSTRAINT pk_payout_runs PRIMARY KEY (id),
    CONSTRAINT uq_payout_runs_idempotency_key UNIQUE (idempotency_key)
)
""",
    """
CREATE TABLE commission.payout_run_carried (
    run_id bigint NOT NULL REFERENCES commission.payout_runs (id),
    affiliate_id varchar(128) NOT NULL,
    why varchar(32) NOT NULL,
    currency varchar(3),
    balance varchar(64),
    detail jsonb NOT NULL,
    CONSTRAINT pk_payout_run_carried PRIMARY KEY (run_id, affiliate_id)
)
""",
    "ALTER TABLE commission.payouts "
    "ADD COLUMN run_id bigint REFERENCES commission.payout_runs (id)",
    "ALTER TABLE commission.payouts ADD COLUMN detail jsonb",
    "CREATE UNIQUE INDEX uq_payouts_run_affiliate ON commission.payouts (run_id, affiliate_id) "
    "WHERE run_id IS NOT NULL",
)

DOWNGRADE = (
    "DROP INDEX commission.uq_payouts_run_affiliate",
    "ALTER TABLE commission.payouts DROP COLUMN detail",
    "ALTER TABLE commission.payouts DROP COLUMN run_id",
    "DROP TABLE commission.payout_run_carried",
    "DROP TABLE commission.payout_runs",
    "DROP TABLE commission.fx_rates",
    "DROP TABLE commission.payout_minimums",
    "DROP TABLE commission.payout_settings",
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
