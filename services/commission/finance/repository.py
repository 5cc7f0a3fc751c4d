"""All SQL of finance: settlements (from the orders' rollups), payouts, statements, the
reconciliation's reads and the ledger's pages. Methods flush; the transaction owner commits."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m
from services.commission.core.commission import OrderKey
from services.commission.core.ledger import (
    AFFILIATE_ACCOUNTS,
    EARNING_KINDS,
    TxnKind,
    affiliate_account,
    store_account,
)
from services.commission.core.payouts import Earning
from services.commission.core.statements import spans
from shared.db import lock_keys
from shared.money import from_minor

#: (status, the time column that puts an order in a range, whether it counts as done) of the
#: orders a settlement sums
_SETTLING = (("completed", "status_at", "true"), ("placed", "placed_at", "false"))


class FinanceRepository:
    """Settlements, payouts, statements and the reconciliation's reads (of the orders' rollups
    and the ledger)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_payouts(self, affiliate_id: str) -> None:
        """One payout at a time per affiliate, until commit."""
        await lock_keys(self.session, "program", [f"payout:{affiliate_id}"])

    async def settlement_totals(
        self,
        *,
        store_id: str | None,
        affiliate_id: str | None,
        start: datetime,
        end: datetime,
    ) -> list[Any]:
        """Per currency: the chargeable orders completed in [start, end) (sales, count,
        commission, reversed) and those placed in it and still open (count, estimated). The
        whole UTC days of the range from the per-day rollup (``settlement_days``), the whole
        hours of the partial days at its edges from the per-hour rollup
        (``settlement_hours``), and only what is left of an hour from the orders, each piece
        at most half an hour (a longer one is its whole hour less the rest of the hour read
        from the orders: ``core.statements.spans``). Rows read: days and hours × currencies
        of the rollups, at most two hours of the subject's orders, whatever its order
        count."""
        subject = "store" if store_id is not None else "affiliate"
        value = store_id if store_id is not None else affiliate_id
        who = f"{subject}_id"
        plan = spans(start, end)
        params: dict[str, Any] = {
            "subject": subject,
            "who": value,
            "first": plan.first,
            "last": plan.last,
        }
        parts = [
            """
            SELECT currency, done, orders AS n, sales_minor AS sales,
                commission_minor AS commission, reversed_minor AS reversed
            FROM commission.settlement_days
            WHERE subject = :subject AND subject_id = :who
              AND day >= :first AND day < :last
            """
        ]
        for n, (a, b) in enumerate(plan.hours):
            params[f"ha{n}"], params[f"hb{n}"] = a, b
            parts.append(
                f"""
                SELECT currency, done, orders, sales_minor, commission_minor, reversed_minor
                FROM commission.settlement_hours
                WHERE subject = :subject AND subject_id = :who
                  AND hour >= :ha{n} AND hour < :hb{n}
                """
            )
        for n, (a, b, sign) in enumerate(plan.scans):
            params[f"a{n}"], params[f"b{n}"] = a, b
            for status, at, done in _SETTLING:
                parts.append(
                    f"""
                    SELECT currency, {done}, {sign}, {sign} * sales_minor,
                        {sign} * commission_minor, {sign} * reversed_minor
                    FROM commission.orders
                    WHERE {who} = :who AND status = '{status}'
                      AND {at} >= :a{n} AND {at} < :b{n} AND chargeable
                    """
                )
        settling = " UNION ALL ".join(parts)
        return list(
            await self.session.execute(
                text(
                    f"""
                    SELECT currency,
                        coalesce(sum(sales) FILTER (WHERE done), 0) AS sales,
                        CAST(coalesce(sum(n) FILTER (WHERE done), 0) AS bigint) AS completed,
                        coalesce(sum(commission) FILTER (WHERE done), 0) AS commission,
                        coalesce(sum(reversed) FILTER (WHERE done), 0) AS reversed,
                        CAST(coalesce(sum(n) FILTER (WHERE NOT done), 0) AS bigint) AS open,
                        coalesce(sum(commission - reversed) FILTER (WHERE NOT done), 0)
                            AS estimated
                    FROM ({settling}) AS settling
                    GROUP BY currency
                    HAVING sum(n) <> 0
                    ORDER BY currency
                    """
                ),
                params,
            )
        )

    async def ledger(
        self,
        *,
        account: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[Any]:
        """Postings in id order after posting id ``after`` (keyset pagination: stable under
        concurrent inserts), optionally of one account and posted in [start, end)."""
        t, p = m.ledger_transactions, m.ledger_postings
        query = (
            select(
                p.c.id.label("posting_id"),
                t.c.id,
                t.c.key,
                t.c.kind,
                t.c.store_id,
                t.c.order_id,
                p.c.currency,  # a posting's own (a payout's conversion legs have two)
                t.c.occurred_at,
                t.c.reason,
                p.c.account,
                p.c.amount_minor,
            )
            .join(p, p.c.txn_id == t.c.id)
            .where(p.c.id > after)
        )
        if account is not None:
            query = query.where(p.c.account == account)
        if start is not None:
            query = query.where(t.c.occurred_at >= start)
        if end is not None:
            query = query.where(t.c.occurred_at < end)
        return list(await self.session.execute(query.order_by(p.c.id).limit(limit)))

    async def earnings(self, affiliate_id: str, up_to: datetime) -> list[Earning]:
        """Per order and currency: what the affiliate's account was credited (commission less
        reversals) by transactions posted up to ``up_to``, with the order's completion time
        (what :func:`~services.commission.core.payouts.held_why` decides by)."""
        t, p, o = m.ledger_transactions, m.ledger_postings, m.orders
        rows = await self.session.execute(
            select(
                p.c.currency, func.sum(p.c.amount_minor), o.c.status_at, o.c.store_id, o.c.placed_at
            )
            .join(t, t.c.id == p.c.txn_id)
            .join(o, (o.c.store_id == t.c.store_id) & (o.c.order_id == t.c.order_id))
            .where(
                p.c.account == affiliate_account(affiliate_id),
                t.c.kind.in_(EARNING_KINDS),
                t.c.occurred_at <= up_to,
            )
            .group_by(o.c.store_id, t.c.order_id, p.c.currency, o.c.status_at, o.c.placed_at)
        )
        return [Earning(r[0], from_minor(int(r[1]), r[0]), r[2], r[3], r[4]) for r in rows]

    async def paid(self, affiliate_id: str) -> dict[str, Decimal]:
        """Per currency: what every payout so far took from the affiliate's account (negative,
        as posted)."""
        t, p = m.ledger_transactions, m.ledger_postings
        rows = await self.session.execute(
            select(p.c.currency, func.sum(p.c.amount_minor))
            .join(t, t.c.id == p.c.txn_id)
            .where(
                p.c.account == affiliate_account(affiliate_id),
                t.c.kind == TxnKind.PAYOUT.value,
            )
            .group_by(p.c.currency)
        )
        return {r[0]: from_minor(int(r[1]), r[0]) for r in rows}

    async def earning_affiliates(self, up_to: datetime) -> list[str]:
        """Every affiliate credited by a transaction posted up to ``up_to``, in id order."""
        t = m.ledger_transactions
        rows = await self.session.execute(
            select(t.c.affiliate_id)
            .where(
                t.c.kind.in_(EARNING_KINDS),
                t.c.occurred_at <= up_to,
                t.c.affiliate_id.is_not(None),
            )
            .distinct()
            .order_by(t.c.affiliate_id)
        )
        return [r[0] for r in rows]

    async def earnings_by_store(
        self, affiliate_id: str, after: datetime | None, up_to: datetime
    ) -> list[Any]:
        """(store, currency, kind, transactions, sum) of the affiliate's earning transactions
        posted in (after, up_to]: what an invoice summarises."""
        t, p = m.ledger_transactions, m.ledger_postings
        query = (
            select(
                t.c.store_id,
                p.c.currency,
                t.c.kind,
                func.count().label("n"),
                func.sum(p.c.amount_minor).label("minor"),
            )
            .join(t, t.c.id == p.c.txn_id)
            .where(
                p.c.account == affiliate_account(affiliate_id),
                t.c.kind.in_(EARNING_KINDS),
                t.c.occurred_at <= up_to,
            )
            .group_by(t.c.store_id, p.c.currency, t.c.kind)
            .order_by(t.c.store_id, p.c.currency, t.c.kind)
        )
        if after is not None:
            query = query.where(t.c.occurred_at > after)
        return list(await self.session.execute(query))

    # -- payout settings, minimums, rates ----------------------------------------------------

    async def payout_settings(self, affiliate_ids: list[str]) -> dict[str, Any]:
        s = m.payout_settings
        rows = await self.session.execute(select(s).where(s.c.affiliate_id.in_(affiliate_ids)))
        return {r.affiliate_id: r for r in rows}

    async def put_payout_settings(self, values: dict[str, Any]) -> None:
        s = m.payout_settings
        stmt = insert(s).values(**values)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[s.c.affiliate_id],
                set_={k: stmt.excluded[k] for k in values if k != "affiliate_id"},
            )
        )

    async def minimums(self) -> dict[str, int]:
        """Finance's platform minimums: currency → minor units."""
        rows = await self.session.execute(
            select(m.payout_minimums.c.currency, m.payout_minimums.c.minimum_minor)
        )
        return {r[0]: int(r[1]) for r in rows}

    async def put_minimum(self, currency: str, minor: int, at: datetime) -> None:
        t = m.payout_minimums
        stmt = insert(t).values(currency=currency, minimum_minor=minor, updated_at=at)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.currency],
                set_={"minimum_minor": stmt.excluded.minimum_minor, "updated_at": at},
            )
        )

    async def rates(self, day: date) -> dict[tuple[str, str], Decimal]:
        f = m.fx_rates
        rows = await self.session.execute(
            select(f.c.base, f.c.quote, f.c.rate).where(f.c.day == day)
        )
        return {(r[0], r[1]): Decimal(r[2]).normalize() for r in rows}

    async def put_rates(
        self, day: date, rates: dict[tuple[str, str], Decimal], at: datetime
    ) -> None:
        """Record (or replace) the day's rate of each pair given; other pairs stay."""
        if not rates:
            return
        f = m.fx_rates
        stmt = insert(f).values(
            [
                {"day": day, "base": b, "quote": q, "rate": r, "recorded_at": at}
                for (b, q), r in rates.items()
            ]
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[f.c.day, f.c.base, f.c.quote],
                set_={"rate": stmt.excluded.rate, "recorded_at": at},
            )
        )

    # -- payout runs -----------------------------------------------------------------------

    async def run_by_key(self, key: str) -> Any:
        r = m.payout_runs
        return (await self.session.execute(select(r).where(r.c.idempotency_key == key))).first()

    async def run(self, run_id: int) -> Any:
        r = m.payout_runs
        return (await self.session.execute(select(r).where(r.c.id == run_id))).first()

    async def add_run(
        self, key: str, up_to: datetime, currency: str | None, at: datetime, by: str
    ) -> int | None:
        """The new run's id; None when the key is taken (a concurrent first request)."""
        r = m.payout_runs
        result = await self.session.execute(
            insert(r)
            .values(
                idempotency_key=key, up_to=up_to, currency=currency, created_at=at, created_by=by
            )
            .on_conflict_do_nothing(index_elements=[r.c.idempotency_key])
            .returning(r.c.id)
        )
        row = result.first()
        return None if row is None else int(row[0])

    async def finish_run(self, run_id: int, at: datetime) -> None:
        r = m.payout_runs
        await self.session.execute(
            update(r).where(r.c.id == run_id, r.c.finished_at.is_(None)).values(finished_at=at)
        )

    async def run_has(self, run_id: int, affiliate_id: str) -> bool:
        """Whether the run's step of this affiliate is done (paid or carried)."""
        p, c = m.payouts, m.payout_run_carried
        paid = select(p.c.id).where(p.c.run_id == run_id, p.c.affiliate_id == affiliate_id)
        carried = select(c.c.run_id).where(c.c.run_id == run_id, c.c.affiliate_id == affiliate_id)
        row = (await self.session.execute(select(paid.exists() | carried.exists()))).scalar_one()
        return bool(row)

    async def add_carried(
        self,
        run_id: int,
        affiliate_id: str,
        why: str,
        currency: str | None,
        balance: str | None,
        detail: dict[str, Any],
    ) -> None:
        await self.session.execute(
            insert(m.payout_run_carried).values(
                run_id=run_id,
                affiliate_id=affiliate_id,
                why=why,
                currency=currency,
                balance=balance,
                detail=detail,
            )
        )

    async def run_payouts(self, run_id: int) -> list[Any]:
        p = m.payouts
        rows = await self.session.execute(
            select(p).where(p.c.run_id == run_id).order_by(p.c.affiliate_id)
        )
        return list(rows)

    async def run_carried(self, run_id: int) -> list[Any]:
        c = m.payout_run_carried
        rows = await self.session.execute(
            select(c).where(c.c.run_id == run_id).order_by(c.c.affiliate_id)
        )
        return list(rows)

    async def previous_payout(self, affiliate_id: str, before_id: int) -> Any:
        """The affiliate's payout made before payout ``before_id`` (the start of its period)."""
        p = m.payouts
        rows = await self.session.execute(
            select(p)
            .where(p.c.affiliate_id == affiliate_id, p.c.id < before_id)
            .order_by(p.c.id.desc())
            .limit(1)
        )
        return rows.first()

    async def paid_minor(self, affiliate_id: str) -> dict[str, int]:
        """Per currency: every payout to the affiliate so far (negative, minor units)."""
        t, p = m.ledger_transactions, m.ledger_postings
        paid = await self.session.execute(
            select(p.c.currency, func.sum(p.c.amount_minor))
            .join(t, t.c.id == p.c.txn_id)
            .where(p.c.account == affiliate_account(affiliate_id), t.c.kind == TxnKind.PAYOUT.value)
            .group_by(p.c.currency)
        )
        return {r[0]: int(r[1]) for r in paid}

    async def add_hold(
        self,
        affiliate_id: str,
        store_id: str | None,
        reason: str,
        note: str | None,
        at: datetime,
        actor: str,
    ) -> Any:
        h = m.holds
        result = await self.session.execute(
            insert(h)
            .values(
                affiliate_id=affiliate_id,
                store_id=store_id,
                reason=reason,
                note=note,
                status="active",
                created_at=at,
                created_by=actor,
            )
            .returning(h)
        )
        return result.one()

    async def hold(self, hold_id: int, *, for_update: bool = False) -> Any:
        h = m.holds
        query = select(h).where(h.c.id == hold_id)
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).first()

    async def end_hold(self, hold_id: int, status: str, at: datetime, actor: str) -> Any:
        h = m.holds
        result = await self.session.execute(
            h.update()
            .where(h.c.id == hold_id)
            .values(status=status, ended_at=at, ended_by=actor)
            .returning(h)
        )
        return result.one()

    async def list_holds(self, affiliate_id: str | None, status: str | None) -> list[Any]:
        h = m.holds
        query = select(h)
        if affiliate_id is not None:
            query = query.where(h.c.affiliate_id == affiliate_id)
        if status is not None:
            query = query.where(h.c.status == status)
        return list(await self.session.execute(query.order_by(h.c.id.desc()).limit(1000)))

    async def held_orders(self, affiliate_id: str, store_id: str | None) -> list[OrderKey]:
        """The affiliate's orders on the store (None: every store), placed or completed."""
        o = m.orders
        query = select(o.c.store_id, o.c.order_id).where(
            o.c.affiliate_id == affiliate_id, o.c.status.in_(["placed", "completed"])
        )
        if store_id is not None:
            query = query.where(o.c.store_id == store_id)
        rows = await self.session.execute(query.order_by(o.c.store_id, o.c.order_id))
        return [(r[0], r[1]) for r in rows]

    async def payout_by_key(self, key: str) -> Any:
        return (
            await self.session.execute(select(m.payouts).where(m.payouts.c.idempotency_key == key))
        ).first()

    async def payout(self, payout_id: int) -> Any:
        return (
            await self.session.execute(select(m.payouts).where(m.payouts.c.id == payout_id))
        ).first()

    async def add_payout(
        self,
        key: str,
        affiliate_id: str,
        up_to: datetime,
        amounts: dict[str, str],
        at: datetime,
        *,
        run_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        result = await self.session.execute(
            insert(m.payouts)
            .values(
                idempotency_key=key,
                affiliate_id=affiliate_id,
                up_to=up_to,
                amounts=amounts,
                created_at=at,
                run_id=run_id,
                detail=detail,
            )
            .returning(m.payouts.c.id)
        )
        return int(result.scalar_one())

    async def store_postings_by_kind(
        self, store_id: str, first: date, last: date
    ) -> list[tuple[str, str, int, int]]:
        """(currency, kind, count, minor sum) of the store account's postings on the UTC days
        [first, last), from the per-day rollup (``statement_days``: days × currencies × kinds
        rows, whatever the order count)."""
        d = m.statement_days
        rows = await self.session.execute(
            select(d.c.currency, d.c.kind, func.sum(d.c.postings), func.sum(d.c.amount_minor))
            .where(d.c.account == store_account(store_id), d.c.day >= first, d.c.day < last)
            .group_by(d.c.currency, d.c.kind)
            .having(func.sum(d.c.postings) != 0)
        )
        return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    async def orders_touching(self, start: datetime, end: datetime) -> list[OrderKey]:
        """Attributed orders placed, completed or cancelled in [start, end)."""
        o = m.orders
        rows = await self.session.execute(
            select(o.c.store_id, o.c.order_id).where(
                o.c.placed_at.is_not(None),
                o.c.affiliate_id.is_not(None),
                ((o.c.placed_at >= start) & (o.c.placed_at < end))
                | ((o.c.status_at >= start) & (o.c.status_at < end)),
            )
        )
        return [(r[0], r[1]) for r in rows]

    async def affiliate_postings_by_day(
        self, start: datetime, end: datetime
    ) -> list[tuple[str, str, str, int]]:
        """(UTC day, currency, kind, minor sum) of what affiliates were credited in [start, end)."""
        t, p = m.ledger_transactions, m.ledger_postings
        day = func.to_char(func.timezone("UTC", t.c.occurred_at), "YYYY-MM-DD")
        rows = await self.session.execute(
            select(day, p.c.currency, t.c.kind, func.sum(p.c.amount_minor))
            .join(t, t.c.id == p.c.txn_id)
            .where(
                p.c.account.like(AFFILIATE_ACCOUNTS),
                t.c.kind.in_(EARNING_KINDS),
                t.c.occurred_at >= start,
                t.c.occurred_at < end,
            )
            .group_by(day, p.c.currency, t.c.kind)
        )
        return [(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def statement(self, store_id: str, period: str) -> Any:
        s = m.statements
        rows = await self.session.execute(
            select(s).where(s.c.store_id == store_id, s.c.period == period)
        )
        return rows.first()

    async def close_statement(
        self, store_id: str, period: str, at: datetime, by: str, totals: list[dict[str, Any]]
    ) -> bool:
        """Freeze a statement; False when it was closed already (the first close stands)."""
        result = await self.session.execute(
            insert(m.statements)
            .values(store_id=store_id, period=period, closed_at=at, closed_by=by, totals=totals)
            .on_conflict_do_nothing(index_elements=["store_id", "period"])
            .returning(m.statements.c.period)
        )
        return result.first() is not None
