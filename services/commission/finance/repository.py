"""All SQL of finance: settlements (from the orders' rollups), payouts, statements, the
reconciliation's reads and the ledger's pages. Methods flush; the transaction owner commits."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, text
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
from services.commission.core.statements import spans
from shared.db import lock_keys

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
        whole UTC days of the range from the per-day rollup (``settlement_days``: days ×
        currencies rows, whatever the order count), the partial days at its edges from the
        orders, each at most half a day (a longer one is its whole day from the rollup less
        the rest of the day from the orders: ``core.statements.spans``)."""
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
                t.c.currency,
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

    async def payable_minor(
        self, affiliate_id: str, up_to: datetime, completed_before: datetime
    ) -> dict[str, int]:
        """Per currency: the affiliate's commission and reversals posted up to ``up_to`` on
        orders completed before ``completed_before``, less every payout so far (minor units)."""
        t, p, o = m.ledger_transactions, m.ledger_postings, m.orders
        account = affiliate_account(affiliate_id)
        earned = await self.session.execute(
            select(p.c.currency, func.sum(p.c.amount_minor))
            .join(t, t.c.id == p.c.txn_id)
            .join(o, (o.c.store_id == t.c.store_id) & (o.c.order_id == t.c.order_id))
            .where(
                p.c.account == account,
                t.c.kind.in_(EARNING_KINDS),
                t.c.occurred_at <= up_to,
                o.c.status_at <= completed_before,
            )
            .group_by(p.c.currency)
        )
        out = {r[0]: int(r[1]) for r in earned}
        paid = await self.session.execute(
            select(p.c.currency, func.sum(p.c.amount_minor))
            .join(t, t.c.id == p.c.txn_id)
            .where(p.c.account == account, t.c.kind == TxnKind.PAYOUT.value)
            .group_by(p.c.currency)
        )
        for currency, minor in paid:
            out[currency] = out.get(currency, 0) + int(minor)  # payouts are negative here
        return out

    async def earned_by_order(
        self, affiliate_id: str, up_to: datetime, completed_before: datetime
    ) -> list[Any]:
        """Per order and currency (store_id, order_id, placed_at, status_at, currency, minor):
        what :meth:`payable_minor` sums before payouts, order by order (for the lock's rule)."""
        t, p, o = m.ledger_transactions, m.ledger_postings, m.orders
        rows = await self.session.execute(
            select(
                o.c.store_id,
                o.c.order_id,
                o.c.placed_at,
                o.c.status_at,
                p.c.currency,
                func.sum(p.c.amount_minor).label("minor"),
            )
            .join(t, t.c.id == p.c.txn_id)
            .join(o, (o.c.store_id == t.c.store_id) & (o.c.order_id == t.c.order_id))
            .where(
                p.c.account == affiliate_account(affiliate_id),
                t.c.kind.in_(EARNING_KINDS),
                t.c.occurred_at <= up_to,
                o.c.status_at <= completed_before,
            )
            .group_by(o.c.store_id, o.c.order_id, o.c.placed_at, o.c.status_at, p.c.currency)
        )
        return list(rows)

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
        self, key: str, affiliate_id: str, up_to: datetime, amounts: dict[str, str], at: datetime
    ) -> int:
        result = await self.session.execute(
            insert(m.payouts)
            .values(
                idempotency_key=key,
                affiliate_id=affiliate_id,
                up_to=up_to,
                amounts=amounts,
                created_at=at,
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
