"""All SQL of the commission service. Methods flush; the transaction owner commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m
from services.commission.core import (
    LedgerTxn,
    LineItem,
    OpKind,
    OrderFacts,
    OrderKey,
    OrderStatus,
    ProgramHistory,
    ProgramOp,
    Refund,
    RefundItem,
)
from shared.db import lock_keys, pairs_in
from shared.money import from_minor, to_minor


def items_json(items: Iterable[LineItem]) -> list[dict[str, Any]]:
    return [
        {
            "product_id": i.product_id,
            "category_id": i.category_id,
            "title": i.title,
            "quantity": i.quantity,
            "unit_price": str(i.unit_price),
            "shipping_fee": str(i.shipping_fee),
        }
        for i in items
    ]


#: what the settlement rollup keeps of an order: (key, chargeable, sales, commission, reversed)
Summary = tuple[OrderKey, bool, int, int, int]


def _line_items(raw: list[dict[str, Any]]) -> tuple[LineItem, ...]:
    return tuple(
        LineItem(
            product_id=i["product_id"],
            category_id=i.get("category_id"),
            quantity=int(i["quantity"]),
            unit_price=Decimal(i["unit_price"]),
            shipping_fee=Decimal(i["shipping_fee"]),
            title=i.get("title", ""),
        )
        for i in raw
    )


def _of_orders(t: Table, keys: Iterable[OrderKey]) -> ColumnElement[bool]:
    """``(store_id, order_id) IN keys`` on a table keyed by order (an order number alone names
    nothing: two stores may use the same one)."""
    return pairs_in(t.c.store_id, t.c.order_id, keys)


class CommissionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- idempotency -------------------------------------------------------------------------

    async def claim_events(self, events: list[tuple[str, str]]) -> set[str]:
        """Record (event id, topic) pairs; returns the ids seen for the first time."""
        if not events:
            return set()
        stmt = insert(m.processed_events).values(
            [{"event_id": e, "topic": t} for e, t in dict(events).items()]
        )
        rows = await self.session.execute(
            stmt.on_conflict_do_nothing(index_elements=["event_id"]).returning(
                m.processed_events.c.event_id
            )
        )
        return set(rows.scalars())

    # -- order facts -------------------------------------------------------------------------

    async def ensure_orders(self, keys: Iterable[OrderKey]) -> None:
        """A row for every (store, order), so that facts arriving before placement have one."""
        rows = [{"store_id": s, "order_id": o} for s, o in sorted(set(keys))]
        if rows:
            stmt = insert(m.orders).on_conflict_do_nothing(index_elements=["store_id", "order_id"])
            await self.session.execute(stmt, rows)

    async def lock_orders(self, keys: Iterable[OrderKey]) -> None:
        """Row locks on the orders (rows must exist: see ensure_orders), in key order."""
        keys = set(keys)
        if keys:
            o = m.orders
            await self.session.execute(
                select(o.c.order_id)
                .where(_of_orders(o, keys))
                .order_by(o.c.store_id, o.c.order_id)
                .with_for_update()
            )

    async def upsert_placed_many(self, rows: list[dict[str, Any]]) -> None:
        """Placement facts (order_id, store_id, currency, placed_at, items); the first wins."""
        unique = list({(r["store_id"], r["order_id"]): r for r in rows}.values())
        if not unique:
            return
        stmt = insert(m.orders)
        stmt = stmt.on_conflict_do_update(
            index_elements=["store_id", "order_id"],
            set_={
                "currency": stmt.excluded.currency,
                "placed_at": stmt.excluded.placed_at,
                "items": stmt.excluded["items"],
            },
            where=m.orders.c.placed_at.is_(None),
        )
        await self.session.execute(stmt, unique)

    async def set_terminal_many(self, rows: list[tuple[OrderKey, OrderStatus, datetime]]) -> None:
        """First terminal status of each order wins (rows must exist: see ensure_orders)."""
        if not rows:
            return
        o = m.orders
        stmt = (
            update(o)
            .where(
                o.c.store_id == bindparam("b_store"),
                o.c.order_id == bindparam("b_oid"),
                o.c.status == OrderStatus.PLACED.value,
            )
            .values(status=bindparam("b_status"), status_at=bindparam("b_at"))
        )
        await self.session.execute(
            stmt,
            [
                {"b_store": store, "b_oid": oid, "b_status": st.value, "b_at": at}
                for (store, oid), st, at in rows
            ],
            execution_options={"synchronize_session": False},
        )

    async def set_attribution_many(self, rows: list[dict[str, Any]]) -> None:
        """Apply decisions newer than the one held, while nothing is posted for the order.
        Rows: b_store, b_oid, b_rev, b_aff, b_click, b_click_at, b_sub, b_expl."""
        if not rows:
            return
        o, t = m.orders, m.ledger_transactions
        posted = (
            select(t.c.id)
            .where(t.c.store_id == o.c.store_id, t.c.order_id == o.c.order_id)
            .exists()
        )
        stmt = (
            update(o)
            .where(
                o.c.store_id == bindparam("b_store"),
                o.c.order_id == bindparam("b_oid"),
                o.c.attribution_revision < bindparam("b_rev"),
                ~posted,
            )
            .values(
                attribution_revision=bindparam("b_rev"),
                affiliate_id=bindparam("b_aff"),
                click_id=bindparam("b_click"),
                click_at=bindparam("b_click_at"),
                sub_id=bindparam("b_sub"),
                attribution=bindparam("b_expl", type_=JSONB),
            )
        )
        await self.session.execute(stmt, rows, execution_options={"synchronize_session": False})

    async def revisions(self, keys: Iterable[OrderKey]) -> dict[OrderKey, int]:
        keys = set(keys)
        if not keys:
            return {}
        o = m.orders
        rows = await self.session.execute(
            select(o.c.store_id, o.c.order_id, o.c.attribution_revision).where(_of_orders(o, keys))
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def add_refunds_many(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            stmt = insert(m.refunds).on_conflict_do_nothing()
            await self.session.execute(stmt, rows)

    async def order_facts(self, keys: Iterable[OrderKey]) -> dict[OrderKey, OrderFacts]:
        """Facts of the orders whose placement is known (others cannot be computed yet)."""
        keys = set(keys)
        if not keys:
            return {}
        refunds: dict[OrderKey, list[Refund]] = {}
        for r in await self.session.execute(select(m.refunds).where(_of_orders(m.refunds, keys))):
            refunds.setdefault((r.store_id, r.order_id), []).append(
                Refund(
                    r.refund_id,
                    r.occurred_at,
                    tuple(RefundItem(i["product_id"], Decimal(i["amount"])) for i in r.items),
                )
            )
        out: dict[OrderKey, OrderFacts] = {}
        rows = await self.session.execute(
            select(m.orders).where(_of_orders(m.orders, keys), m.orders.c.placed_at.is_not(None))
        )
        for o in rows:
            out[(o.store_id, o.order_id)] = OrderFacts(
                order_id=o.order_id,
                store_id=o.store_id,
                currency=o.currency,
                placed_at=o.placed_at,
                items=_line_items(o.items),
                status=OrderStatus(o.status),
                status_at=o.status_at,
                affiliate_id=o.affiliate_id,
                click_id=o.click_id,
                click_at=o.click_at,
                refunds=tuple(refunds.get((o.store_id, o.order_id), ())),
            )
        return out

    async def set_summaries(self, rows: list[Summary]) -> None:
        """Store orders' computed commission: ((store, order), chargeable, sales, commission,
        reversed), amounts in minor units. One statement."""
        if not rows:
            return
        await self.session.execute(
            text(
                """
                UPDATE commission.orders o
                SET chargeable = s.chargeable, sales_minor = s.sales,
                    commission_minor = s.commission, reversed_minor = s.reversed
                FROM unnest(CAST(:stores AS text[]), CAST(:ids AS text[]),
                    CAST(:chargeable AS boolean[]), CAST(:sales AS bigint[]),
                    CAST(:commission AS bigint[]), CAST(:reversed AS bigint[]))
                    AS s(store, id, chargeable, sales, commission, reversed)
                WHERE o.store_id = s.store AND o.order_id = s.id
                """
            ),
            {
                "stores": [r[0][0] for r in rows],
                "ids": [r[0][1] for r in rows],
                "chargeable": [r[1] for r in rows],
                "sales": [r[2] for r in rows],
                "commission": [r[3] for r in rows],
                "reversed": [r[4] for r in rows],
            },
        )

    async def set_lines(self, rows: list[dict[str, Any]]) -> None:
        """Upsert order lines (in key order: two workers never deadlock); a line that did not
        change is not rewritten."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: (r["store_id"], r["order_id"], r["line_no"]))
        t = m.order_lines
        stmt = insert(t)
        changing = ("affiliate_id", "chargeable", "status", "commission_minor", "reversed_minor")
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["store_id", "order_id", "line_no"],
                set_={c: stmt.excluded[c] for c in changing},
                where=func.row(*(t.c[c] for c in changing)).is_distinct_from(
                    func.row(*(stmt.excluded[c] for c in changing))
                ),
            ),
            rows,
        )

    async def summaries(self, keys: Iterable[OrderKey]) -> dict[OrderKey, Summary]:
        """The stored summaries of the orders (as :meth:`set_summaries` takes them)."""
        o = m.orders
        rows = await self.session.execute(
            select(
                o.c.store_id,
                o.c.order_id,
                o.c.chargeable,
                o.c.sales_minor,
                o.c.commission_minor,
                o.c.reversed_minor,
            ).where(_of_orders(o, keys), o.c.chargeable.is_not(None))
        )
        return {
            (r.store_id, r.order_id): (
                (r.store_id, r.order_id),
                r.chargeable,
                r.sales_minor,
                r.commission_minor,
                r.reversed_minor,
            )
            for r in rows
        }

    async def unsummarised(self, limit: int) -> list[OrderKey]:
        """Placed orders whose commission or order lines have not been computed yet (stored
        before the settlement rollup or the reports' order lines existed)."""
        o, lines = m.orders, m.order_lines
        no_lines = (
            ~select(lines.c.order_id)
            .where(lines.c.store_id == o.c.store_id, lines.c.order_id == o.c.order_id)
            .exists()
        )
        rows = await self.session.execute(
            select(o.c.store_id, o.c.order_id)
            .where(o.c.placed_at.is_not(None), o.c.chargeable.is_(None) | no_lines)
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]

    async def settlement_totals(
        self,
        *,
        store_id: str | None,
        affiliate_id: str | None,
        start: datetime,
        end: datetime,
    ) -> list[Any]:
        """Per currency, from the orders' summaries: the chargeable orders completed in
        [start, end) (sales, count, commission, reversed) and those placed in it and still
        open (count, estimated). Two index range scans, one aggregate."""
        who, value = (
            ("store_id", store_id) if store_id is not None else ("affiliate_id", affiliate_id)
        )
        return list(
            await self.session.execute(
                text(
                    f"""
                    SELECT currency,
                        coalesce(sum(sales_minor) FILTER (WHERE done), 0) AS sales,
                        count(*) FILTER (WHERE done) AS completed,
                        coalesce(sum(commission_minor) FILTER (WHERE done), 0) AS commission,
                        coalesce(sum(reversed_minor) FILTER (WHERE done), 0) AS reversed,
                        count(*) FILTER (WHERE NOT done) AS open,
                        coalesce(sum(commission_minor - reversed_minor)
                                 FILTER (WHERE NOT done), 0) AS estimated
                    FROM (
                        SELECT currency, sales_minor, commission_minor, reversed_minor,
                               true AS done
                        FROM commission.orders
                        WHERE {who} = :who AND status = 'completed'
                          AND status_at >= :start AND status_at < :end AND chargeable
                        UNION ALL
                        SELECT currency, sales_minor, commission_minor, reversed_minor,
                               false AS done
                        FROM commission.orders
                        WHERE {who} = :who AND status = 'placed'
                          AND placed_at >= :start AND placed_at < :end AND chargeable
                    ) AS settling
                    GROUP BY currency
                    ORDER BY currency
                    """
                ),
                {"who": value, "start": start, "end": end},
            )
        )

    async def order_row(self, store_id: str, order_id: str) -> Any:
        o = m.orders
        return (
            await self.session.execute(
                select(o).where(o.c.store_id == store_id, o.c.order_id == order_id)
            )
        ).first()

    # -- program -----------------------------------------------------------------------------

    async def lock(self, key: str) -> None:
        """Serialise program changes of one store (or payouts of one affiliate) until commit."""
        await lock_keys(self.session, "program", [key])

    async def programs(self, store_ids: Iterable[str]) -> dict[str, ProgramHistory]:
        ids = list(set(store_ids))
        if not ids:
            return {}
        rows = await self.session.execute(
            select(m.program_ops)
            .where(m.program_ops.c.store_id.in_(ids))
            .order_by(m.program_ops.c.store_id, m.program_ops.c.at, m.program_ops.c.id)
        )
        ops: dict[str, list[ProgramOp]] = {s: [] for s in ids}
        for r in rows:
            rate = r.rate.normalize() if r.rate is not None else None  # Numeric pads zeros
            ops[r.store_id].append(ProgramOp(OpKind(r.kind), r.at, r.key, rate, r.days))
        return {s: ProgramHistory(tuple(v)) for s, v in ops.items()}

    async def add_program_op(
        self,
        store_id: str,
        op: ProgramOp,
        actor: str,
        before: dict[str, Any],
        after: dict[str, Any],
    ) -> int:
        result = await self.session.execute(
            insert(m.program_ops)
            .values(
                store_id=store_id,
                kind=op.kind.value,
                at=op.at,
                key=op.key,
                rate=op.rate,
                days=op.days,
                actor=actor,
                before=before,
                after=after,
            )
            .returning(m.program_ops.c.id)
        )
        return int(result.scalar_one())

    async def operations(
        self, store_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[Any]:
        """The store's operation record, oldest first, optionally in [start, end)."""
        ops = m.program_ops
        query = select(ops).where(ops.c.store_id == store_id)
        if start is not None:
            query = query.where(ops.c.at >= start)
        if end is not None:
            query = query.where(ops.c.at < end)
        return list(await self.session.execute(query.order_by(ops.c.at, ops.c.id)))

    # -- ledger ------------------------------------------------------------------------------

    async def posted(self, keys: Iterable[OrderKey]) -> dict[OrderKey, dict[str, Decimal]]:
        """Per order: idempotency key → amount credited to the affiliate."""
        keys = set(keys)
        out: dict[OrderKey, dict[str, Decimal]] = {k: {} for k in keys}
        if not keys:
            return out
        t, p = m.ledger_transactions, m.ledger_postings
        rows = await self.session.execute(
            select(
                t.c.store_id,
                t.c.order_id,
                t.c.key,
                t.c.currency,
                func.sum(p.c.amount_minor).label("minor"),
            )
            .join(p, p.c.txn_id == t.c.id)
            .where(_of_orders(t, keys), p.c.account.like("affiliate:%"))
            .group_by(t.c.store_id, t.c.order_id, t.c.key, t.c.currency)
        )
        for r in rows:
            out[(r.store_id, r.order_id)][r.key] = from_minor(int(r.minor), r.currency)
        return out

    async def post(
        self, txns: list[LedgerTxn], store_id: str | None, affiliate_id: str | None, at: datetime
    ) -> int:
        """Insert transactions whose key is new; returns how many were posted."""
        return await self.post_many([(t, store_id, affiliate_id) for t in txns], at)

    async def post_many(
        self, entries: Sequence[tuple[LedgerTxn, str | None, str | None]], at: datetime
    ) -> int:
        """Insert (transaction, store, affiliate) entries whose key is new, two statements for
        the lot; returns how many were posted. A key already posted changes nothing."""
        if not entries:
            return 0
        t = m.ledger_transactions
        stmt = insert(t).on_conflict_do_nothing(index_elements=["key"]).returning(t.c.key, t.c.id)
        rows = await self.session.execute(
            stmt,
            [
                {
                    "key": txn.key,
                    "kind": txn.kind.value,
                    "order_id": txn.order_id,
                    "store_id": store_id,
                    "affiliate_id": affiliate_id,
                    "currency": txn.currency,
                    "occurred_at": at,
                }
                for txn, store_id, affiliate_id in entries
            ],
        )
        ids = {r.key: r.id for r in rows}
        postings = [
            {
                "txn_id": ids[txn.key],
                "account": p.account,
                "currency": txn.currency,
                "amount_minor": to_minor(p.amount, txn.currency),
            }
            for txn, _, _ in entries
            if txn.key in ids
            for p in txn.postings
        ]
        if postings:
            await self.session.execute(insert(m.ledger_postings), postings)
        return len(ids)

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

    async def order_ids(
        self,
        *,
        store_id: str | None = None,
        affiliate_id: str | None = None,
        placed_from: datetime | None = None,
        placed_to: datetime | None = None,
    ) -> list[OrderKey]:
        """Keys of placed orders, optionally of one store or affiliate, placed in [from, to)."""
        o = m.orders
        query = select(o.c.store_id, o.c.order_id).where(o.c.placed_at.is_not(None))
        if store_id is not None:
            query = query.where(o.c.store_id == store_id)
        if affiliate_id is not None:
            query = query.where(o.c.affiliate_id == affiliate_id)
        if placed_from is not None:
            query = query.where(o.c.placed_at >= placed_from)
        if placed_to is not None:
            query = query.where(o.c.placed_at < placed_to)
        return [(r[0], r[1]) for r in await self.session.execute(query)]

    async def payable_minor(
        self, affiliate_id: str, up_to: datetime, completed_before: datetime
    ) -> dict[str, int]:
        """Per currency: the affiliate's commission and reversals posted up to ``up_to`` on
        orders completed before ``completed_before``, less every payout so far (minor units)."""
        t, p, o = m.ledger_transactions, m.ledger_postings, m.orders
        account = f"affiliate:{affiliate_id}:earned"
        earned = await self.session.execute(
            select(p.c.currency, func.sum(p.c.amount_minor))
            .join(t, t.c.id == p.c.txn_id)
            .join(o, (o.c.store_id == t.c.store_id) & (o.c.order_id == t.c.order_id))
            .where(
                p.c.account == account,
                t.c.kind.in_(["commission", "reversal"]),
                t.c.occurred_at <= up_to,
                o.c.status_at <= completed_before,
            )
            .group_by(p.c.currency)
        )
        out = {r[0]: int(r[1]) for r in earned}
        paid = await self.session.execute(
            select(p.c.currency, func.sum(p.c.amount_minor))
            .join(t, t.c.id == p.c.txn_id)
            .where(p.c.account == account, t.c.kind == "payout")
            .group_by(p.c.currency)
        )
        for currency, minor in paid:
            out[currency] = out.get(currency, 0) + int(minor)  # payouts are negative here
        return out

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

    async def affiliate_order_ids(
        self,
        affiliate_id: str,
        *,
        start: datetime,
        end: datetime,
        status: str | None,
        after: OrderKey | None,
        limit: int,
    ) -> list[OrderKey]:
        """The affiliate's orders placed in [start, end), by (store, order) after ``after``."""
        o = m.orders
        query = select(o.c.store_id, o.c.order_id).where(
            o.c.affiliate_id == affiliate_id,
            o.c.placed_at >= start,
            o.c.placed_at < end,
        )
        if after is not None:
            query = query.where(tuple_(o.c.store_id, o.c.order_id) > tuple_(*after))
        if status is not None:
            query = query.where(o.c.status == status)
        rows = await self.session.execute(query.order_by(o.c.store_id, o.c.order_id).limit(limit))
        return [(r[0], r[1]) for r in rows]

    async def store_postings_by_kind(
        self, store_id: str, start: datetime, end: datetime
    ) -> list[tuple[str, str, int, int]]:
        """(currency, kind, count, minor sum) of the store account's postings in [start, end)."""
        t, p = m.ledger_transactions, m.ledger_postings
        rows = await self.session.execute(
            select(p.c.currency, t.c.kind, func.count(), func.sum(p.c.amount_minor))
            .join(t, t.c.id == p.c.txn_id)
            .where(
                p.c.account == f"store:{store_id}:commission",
                t.c.occurred_at >= start,
                t.c.occurred_at < end,
            )
            .group_by(p.c.currency, t.c.kind)
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
                p.c.account.like("affiliate:%"),
                t.c.kind.in_(["commission", "reversal"]),
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

    async def account_balances(self) -> dict[tuple[str, str], int]:
        """Per (account, currency): the sum of its postings, in minor units."""
        p = m.ledger_postings
        rows = await self.session.execute(
            select(p.c.account, p.c.currency, func.sum(p.c.amount_minor)).group_by(
                p.c.account, p.c.currency
            )
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def unbalanced_transactions(self) -> list[Any]:
        p = m.ledger_postings
        rows = await self.session.execute(
            select(p.c.txn_id, func.sum(p.c.amount_minor))
            .group_by(p.c.txn_id)
            .having(func.sum(p.c.amount_minor) != 0)
        )
        return list(rows)


class PrincipalRepository:
    """All SQL of principals (stores, affiliates, finance users)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        kind: str,
        principal_id: str,
        name: str,
        key_hash: str,
        landing_url_template: str | None = None,
        secret_version: int | None = None,
    ) -> bool:
        """Insert; False when a principal of that kind and id already exists."""
        result = await self.session.execute(
            insert(m.principals)
            .values(
                kind=kind,
                principal_id=principal_id,
                name=name,
                key_hash=key_hash,
                landing_url_template=landing_url_template,
                secret_version=secret_version,
            )
            .on_conflict_do_nothing(index_elements=["kind", "principal_id"])
            .returning(m.principals.c.principal_id)
        )
        return result.first() is not None

    async def by_key_hash(self, key_hash: str) -> Any:
        rows = await self.session.execute(
            select(m.principals).where(m.principals.c.key_hash == key_hash)
        )
        return rows.first()

    async def get(self, kind: str, principal_id: str) -> Any:
        rows = await self.session.execute(
            select(m.principals).where(
                m.principals.c.kind == kind, m.principals.c.principal_id == principal_id
            )
        )
        return rows.first()

    async def set_key_hash(self, kind: str, principal_id: str, key_hash: str) -> Any:
        """Replace the principal's key hash (rotation); the updated row, or None if unknown."""
        result = await self.session.execute(
            m.principals.update()
            .where(m.principals.c.kind == kind, m.principals.c.principal_id == principal_id)
            .values(key_hash=key_hash)
            .returning(*m.principals.c)
        )
        return result.first()

    async def bump_secret_version(self, store_id: str) -> int | None:
        result = await self.session.execute(
            m.principals.update()
            .where(m.principals.c.kind == "store", m.principals.c.principal_id == store_id)
            .values(secret_version=m.principals.c.secret_version + 1)
            .returning(m.principals.c.secret_version)
        )
        version = result.scalar_one_or_none()
        return int(version) if version is not None else None
