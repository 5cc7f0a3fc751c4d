"""settlement and statement rollups: per-day deltas, appended in the writing transaction

Settlements summed the orders of the range and statements the postings of the month: their
time grew with the store's order count (p99 197 ms for one store of 100,000 orders). Two
append-only delta tables now hold, per UTC day, what they sum:

- ``settlement_days``: per subject (``store`` or ``affiliate``, and its id), currency, day
  and bucket (``done``: chargeable orders completed that day; else chargeable orders placed
  that day and still open), the change in order count, sales, commission and reversed;
- ``statement_days``: per store account, currency, transaction kind and day (of
  ``occurred_at``), the change in posting count and amount.

Statement-level triggers with transition tables write them, in the transaction (and the
statement) that changes ``orders`` or inserts ``ledger_postings``: one ``INSERT … SELECT …
GROUP BY`` per statement, whatever writes the rows (the consumer, the reconciliation, a COPY).
A row is only ever inserted: no row is updated by every event of a store, an affiliate or a
currency, so concurrent writers never wait on one another here (``alliance ledger compact``
folds a key's rows into one, concurrently safe). The backfill sums the existing orders and
postings. Readers sum a key's rows of the days they need.

Revision ID: a20d1c5e7f31
Revises: 8d2f4a6b1c93
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a20d1c5e7f31"
down_revision: str | None = "4e8b2d7f1a05"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: what one set of order rows (a transition table, or the table itself) contributes, signed
_CONTRIBUTION = """
    SELECT {sign} AS sign, r.store_id, r.affiliate_id, r.currency,
        r.status = 'completed' AS done,
        (CASE WHEN r.status = 'completed' THEN r.status_at ELSE r.placed_at END
            AT TIME ZONE 'UTC')::date AS day,
        coalesce(r.sales_minor, 0) AS sales, coalesce(r.commission_minor, 0) AS commission,
        coalesce(r.reversed_minor, 0) AS reversed
    FROM {rows} AS r
    WHERE r.chargeable
      AND ((r.status = 'completed' AND r.status_at IS NOT NULL)
           OR (r.status = 'placed' AND r.placed_at IS NOT NULL))
"""

#: the signed contributions, per subject (the store, and the affiliate if any), summed
_SETTLEMENT_INSERT = """
INSERT INTO commission.settlement_days (subject, subject_id, currency, day, done, orders,
    sales_minor, commission_minor, reversed_minor)
SELECT s.subject, s.subject_id, c.currency, c.day, c.done, sum(c.sign),
    sum(c.sign * c.sales), sum(c.sign * c.commission), sum(c.sign * c.reversed)
FROM ({contributions}) AS c
CROSS JOIN LATERAL (VALUES ('store', c.store_id), ('affiliate', c.affiliate_id))
    AS s(subject, subject_id)
WHERE s.subject_id IS NOT NULL
GROUP BY s.subject, s.subject_id, c.currency, c.day, c.done
HAVING sum(c.sign) <> 0 OR sum(c.sign * c.sales) <> 0 OR sum(c.sign * c.commission) <> 0
    OR sum(c.sign * c.reversed) <> 0
"""

#: the store accounts' postings (with their transaction's kind and day), summed
_STATEMENT_INSERT = """
INSERT INTO commission.statement_days (account, currency, kind, day, postings, amount_minor)
SELECT p.account, p.currency, t.kind, (t.occurred_at AT TIME ZONE 'UTC')::date, count(*),
    sum(p.amount_minor)
FROM {rows} AS p
JOIN commission.ledger_transactions AS t ON t.id = p.txn_id
WHERE p.account LIKE 'store:%'
GROUP BY p.account, p.currency, t.kind, (t.occurred_at AT TIME ZONE 'UTC')::date
"""


def _settlement_insert(*parts: tuple[str, str]) -> str:
    contributions = " UNION ALL ".join(
        _CONTRIBUTION.format(sign=sign, rows=rows) for sign, rows in parts
    )
    return _SETTLEMENT_INSERT.format(contributions=contributions)


def _function(name: str, body: str) -> str:
    return f"""
CREATE FUNCTION commission.{name}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
{body};
RETURN NULL;
END
$fn$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE commission.settlement_days (
            subject varchar(16) NOT NULL,
            subject_id varchar(128) NOT NULL,
            currency varchar(3),
            day date NOT NULL,
            done boolean NOT NULL,
            orders bigint NOT NULL,
            sales_minor numeric(38, 0) NOT NULL,
            commission_minor numeric(38, 0) NOT NULL,
            reversed_minor numeric(38, 0) NOT NULL,
            CONSTRAINT ck_settlement_days_subject CHECK (subject IN ('store', 'affiliate'))
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_settlement_days_subject_day ON commission.settlement_days "
        "(subject, subject_id, day) "
        "INCLUDE (currency, done, orders, sales_minor, commission_minor, reversed_minor)"
    )
    op.execute(
        """
        CREATE TABLE commission.statement_days (
            account varchar(300) NOT NULL,
            currency varchar(3) NOT NULL,
            kind varchar(32) NOT NULL,
            day date NOT NULL,
            postings bigint NOT NULL,
            amount_minor numeric(38, 0) NOT NULL
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_statement_days_account_day ON commission.statement_days "
        "(account, day) INCLUDE (currency, kind, postings, amount_minor)"
    )
    functions = {
        "settlement_days_inserted": _settlement_insert(("1", "new_rows")),
        "settlement_days_updated": _settlement_insert(("1", "new_rows"), ("-1", "old_rows")),
        "settlement_days_deleted": _settlement_insert(("-1", "old_rows")),
        "statement_days_inserted": _STATEMENT_INSERT.format(rows="new_rows"),
    }
    for name, body in functions.items():
        op.execute(_function(name, body))
    for event, tables, function in (
        ("INSERT", "NEW TABLE AS new_rows", "settlement_days_inserted"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", "settlement_days_updated"),
        ("DELETE", "OLD TABLE AS old_rows", "settlement_days_deleted"),
    ):
        op.execute(
            f"CREATE TRIGGER orders_settlement_days_{event.lower()} AFTER {event} "
            f"ON commission.orders REFERENCING {tables} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION commission.{function}()"
        )
    op.execute(
        "CREATE TRIGGER ledger_postings_statement_days AFTER INSERT "
        "ON commission.ledger_postings REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION commission.statement_days_inserted()"
    )
    # the backfill: what the existing rows contribute (the triggers see only later changes)
    op.execute(_settlement_insert(("1", "commission.orders")))
    op.execute(_STATEMENT_INSERT.format(rows="commission.ledger_postings"))


def downgrade() -> None:
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER orders_settlement_days_{event} ON commission.orders")
    op.execute("DROP TRIGGER ledger_postings_statement_days ON commission.ledger_postings")
    for name in (
        "settlement_days_inserted",
        "settlement_days_updated",
        "settlement_days_deleted",
        "statement_days_inserted",
    ):
        op.execute(f"DROP FUNCTION commission.{name}()")
    op.execute("DROP TABLE commission.statement_days")
    op.execute("DROP TABLE commission.settlement_days")
