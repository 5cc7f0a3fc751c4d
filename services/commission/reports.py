"""Seller reports from the read models: what each report sums, in SQL over the rollups, and
the little that is computed per row by the pure core (a refund's reversed commission).

Definitions (documented in the README):
- an *affiliate order* is a chargeable order (attributed, store in the program at placement);
  orders count by their placement day, cancelled ones apart;
- *commission payable* is the net commission of completed affiliate orders, *estimated* the
  net of those still open; both equal what the ledger holds or will hold for those orders;
- traffic counts affiliate clicks by their day, suspicious ones apart; *affiliate visitors*
  are the distinct visitors with an affiliate click, *store visitors* those with a click or a
  page view; an *affiliate page view* is a view by a visitor with an affiliate click on the
  store inside the store's attribution window before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core import ZERO, ExitPolicy
from services.commission.reports_core import (
    DayRange,
    Granularity,
    bucket_of,
    refund_reversals,
)
from services.commission.repository import CommissionRepository
from shared.db import decode_cursor, encode_cursor, like_pattern
from shared.money import from_minor


@dataclass(frozen=True, slots=True)
class TrafficRow:
    clicks: int = 0
    suspicious_clicks: int = 0
    page_views: int = 0
    affiliate_page_views: int = 0
    affiliate_visitors: int = 0
    store_visitors: int = 0


@dataclass(frozen=True, slots=True)
class OrderTotals:
    currency: str
    orders: int
    cancelled_orders: int
    affiliate_sales: Decimal
    commission_estimated: Decimal
    commission_payable: Decimal


@dataclass(frozen=True, slots=True)
class RefundTotals:
    currency: str
    refunded_orders: int
    refund_amount: Decimal
    commission_reversed: Decimal


@dataclass(frozen=True, slots=True)
class Transaction:
    type: str  # order | refund
    at: datetime
    store_id: str
    order_id: str
    seq: str
    refund_id: str | None
    product_id: str
    title: str
    quantity: int | None
    currency: str
    amount: Decimal
    commission: Decimal
    status: str
    affiliate_id: str | None


@dataclass(frozen=True, slots=True)
class TransactionFilter:
    product_id: str | None = None
    keyword: str | None = None
    order_id: str | None = None
    type: str | None = None  # order | refund | None: both


def _bucket_sql(day: str, granularity: Granularity) -> str:
    """SQL of the bucket (its first day) of ``day``, an SQL date expression; the granularity is
    an enum, never user text."""
    if granularity is Granularity.DAY:
        return day
    return f"CAST(date_trunc('{granularity.value}', {day}) AS date)"


def _utc_day(timestamp: str) -> str:
    return f"CAST(({timestamp}) AT TIME ZONE 'UTC' AS date)"


def transaction_cursor(t: Transaction) -> str:
    return encode_cursor([t.at.isoformat(), t.type, t.order_id, t.seq])


def transaction_after(cursor: str) -> tuple[datetime, str, str, str]:
    """The position after which the next page starts; ValueError if it is not one of ours."""
    at, kind, order_id, seq = decode_cursor(cursor, 4)
    return datetime.fromisoformat(at), kind, order_id, seq


class ReportRepository:
    """All SQL of the reports. Read only."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def traffic_total(
        self, store_id: str, r: DayRange, *, store_visitors: bool = True
    ) -> TrafficRow:
        """Totals over the range; ``store_visitors=False`` leaves the store's visitors out
        (0), which halves the work of the distinct count (the dashboard shows only affiliate
        visitors)."""
        counts = (
            await self.session.execute(
                text(
                    """
                    SELECT coalesce(sum(clicks), 0) AS clicks,
                        coalesce(sum(suspicious_clicks), 0) AS suspicious_clicks,
                        coalesce(sum(page_views), 0) AS page_views,
                        coalesce(sum(affiliate_page_views), 0) AS affiliate_page_views
                    FROM commission.traffic_days
                    WHERE store_id = :store AND day BETWEEN :first AND :last
                    """
                ),
                {"store": store_id, "first": r.first, "last": r.last},
            )
        ).one()
        # a hash aggregate per visitor, then counts: much cheaper than count(DISTINCT), which
        # sorts (a store's 90 days can hold hundreds of thousands of visitor-days)
        visitors = (
            await self.session.execute(
                text(
                    f"""
                    SELECT count(*) FILTER (WHERE clicked) AS affiliate, count(*) AS store
                    FROM (
                        SELECT visitor_id, bool_or(clicked) AS clicked
                        FROM commission.visitor_days
                        WHERE store_id = :store AND day BETWEEN :first AND :last
                            {"" if store_visitors else "AND clicked"}
                        GROUP BY visitor_id
                    ) AS v
                    """
                ),
                {"store": store_id, "first": r.first, "last": r.last},
            )
        ).one()
        return TrafficRow(
            int(counts.clicks),
            int(counts.suspicious_clicks),
            int(counts.page_views),
            int(counts.affiliate_page_views),
            int(visitors.affiliate),
            int(visitors.store) if store_visitors else 0,
        )

    async def traffic_series(
        self, store_id: str, r: DayRange, granularity: Granularity
    ) -> dict[date, TrafficRow]:
        bucket = _bucket_sql("day", granularity)
        params = {"store": store_id, "first": r.first, "last": r.last}
        counts = await self.session.execute(
            text(
                f"""
                SELECT {bucket} AS bucket, sum(clicks) AS clicks,
                    sum(suspicious_clicks) AS suspicious_clicks, sum(page_views) AS page_views,
                    sum(affiliate_page_views) AS affiliate_page_views
                FROM commission.traffic_days
                WHERE store_id = :store AND day BETWEEN :first AND :last
                GROUP BY 1
                """
            ),
            params,
        )
        visitors = {
            row.bucket: row
            for row in await self.session.execute(
                text(
                    f"""
                    SELECT bucket, count(*) FILTER (WHERE clicked) AS affiliate,
                        count(*) AS store
                    FROM (
                        SELECT {bucket} AS bucket, visitor_id, bool_or(clicked) AS clicked
                        FROM commission.visitor_days
                        WHERE store_id = :store AND day BETWEEN :first AND :last
                        GROUP BY 1, 2
                    ) AS v
                    GROUP BY bucket
                    """
                ),
                params,
            )
        }
        out: dict[date, TrafficRow] = {}
        for c in counts:
            v = visitors.get(c.bucket)
            out[c.bucket] = TrafficRow(
                int(c.clicks),
                int(c.suspicious_clicks),
                int(c.page_views),
                int(c.affiliate_page_views),
                int(v.affiliate) if v else 0,
                int(v.store) if v else 0,
            )
        for b, v in visitors.items():
            if b not in out:
                out[b] = TrafficRow(
                    affiliate_visitors=int(v.affiliate), store_visitors=int(v.store)
                )
        return out

    async def order_totals(
        self, store_id: str, r: DayRange, granularity: Granularity | None = None
    ) -> list[tuple[date | None, OrderTotals]]:
        """Per currency (and bucket, if ``granularity``): affiliate orders placed in range."""
        bucket = _bucket_sql(_utc_day("placed_at"), granularity) if granularity else "NULL"
        rows = await self.session.execute(
            text(
                f"""
                SELECT {bucket} AS bucket, currency,
                    count(*) FILTER (WHERE status <> 'cancelled') AS orders,
                    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                    coalesce(sum(sales_minor) FILTER (WHERE status <> 'cancelled'), 0) AS sales,
                    coalesce(sum(commission_minor - reversed_minor)
                        FILTER (WHERE status = 'placed'), 0) AS estimated,
                    coalesce(sum(commission_minor - reversed_minor)
                        FILTER (WHERE status = 'completed'), 0) AS payable
                FROM commission.orders
                WHERE store_id = :store AND placed_at >= :start AND placed_at < :end
                    AND chargeable
                GROUP BY 1, 2
                ORDER BY 1, 2
                """
            ),
            {"store": store_id, "start": r.start, "end": r.end},
        )
        return [
            (
                row.bucket,
                OrderTotals(
                    row.currency,
                    int(row.orders),
                    int(row.cancelled),
                    from_minor(int(row.sales), row.currency),
                    from_minor(int(row.estimated), row.currency),
                    from_minor(int(row.payable), row.currency),
                ),
            )
            for row in rows
        ]

    async def refunds_in(self, store_id: str, r: DayRange) -> list[Any]:
        """Refunds of the store's affiliate orders made in range."""
        rows = await self.session.execute(
            text(
                """
                SELECT r.order_id, r.refund_id, r.occurred_at, r.items, o.currency
                FROM commission.refunds r JOIN commission.orders o USING (store_id, order_id)
                WHERE o.store_id = :store AND o.chargeable
                    AND r.occurred_at >= :start AND r.occurred_at < :end
                """
            ),
            {"store": store_id, "start": r.start, "end": r.end},
        )
        return list(rows)

    async def transactions(
        self,
        store_id: str,
        r: DayRange,
        f: TransactionFilter,
        after: tuple[datetime, str, str, str] | None,
        limit: int,
    ) -> list[Any]:
        """Order lines and refund lines, newest first (keyset: a page never shifts when rows
        are added)."""
        params: dict[str, Any] = {
            "store": store_id,
            "start": r.start,
            "end": r.end,
            "limit": limit,
        }
        lines_where = [
            "l.store_id = :store",
            "l.chargeable",
            "l.placed_at >= :start",
            "l.placed_at < :end",
        ]
        refunds_where = [
            "r.store_id = :store",
            "o.chargeable",
            "r.occurred_at >= :start",
            "r.occurred_at < :end",
        ]
        if f.product_id:
            params["product"] = f.product_id
            lines_where.append("l.product_id = :product")
            refunds_where.append("e.item->>'product_id' = :product")
        if f.order_id:
            params["order"] = f.order_id
            lines_where.append("l.order_id = :order")
            refunds_where.append("r.order_id = :order")
        if f.keyword:
            params["like"] = like_pattern(f.keyword)
            lines_where.append("lower(l.title) LIKE :like")
            refunds_where.append("lower(t.title) LIKE :like")
        if after is not None:
            params["a_at"], params["a_type"], params["a_order"], params["a_seq"] = after
            key = "(:a_at, :a_type, :a_order, :a_seq)"
            lines_where.append(
                f"(l.placed_at, 'order', l.order_id, lpad(l.line_no::text, 5, '0')) < {key}"
            )
            refunds_where.append(
                "(r.occurred_at, 'refund', r.order_id, "
                f"r.refund_id || '#' || lpad(e.idx::text, 5, '0')) < {key}"
            )
        parts = []
        if f.type in (None, "order"):
            parts.append(
                f"""
                (SELECT 'order' AS type, l.placed_at AS at, l.order_id,
                    lpad(l.line_no::text, 5, '0') AS seq, NULL AS refund_id, l.product_id,
                    l.title, l.quantity, l.currency, l.sales_minor AS amount_minor,
                    l.commission_minor, NULL AS refund_amount, NULL::bigint AS item_no, l.status,
                    l.affiliate_id
                FROM commission.order_lines l
                WHERE {" AND ".join(lines_where)}
                ORDER BY 2 DESC, 3 DESC, 4 DESC LIMIT :limit)
                """
            )
        if f.type in (None, "refund"):
            parts.append(
                f"""
                (SELECT 'refund' AS type, r.occurred_at AS at, r.order_id,
                    r.refund_id || '#' || lpad(e.idx::text, 5, '0') AS seq, r.refund_id,
                    e.item->>'product_id' AS product_id, coalesce(t.title, '') AS title,
                    NULL::integer AS quantity, o.currency, NULL::bigint AS amount_minor,
                    NULL::bigint AS commission_minor, e.item->>'amount' AS refund_amount,
                    e.idx - 1 AS item_no,
                    o.status, o.affiliate_id
                FROM commission.refunds r
                JOIN commission.orders o USING (store_id, order_id)
                CROSS JOIN LATERAL jsonb_array_elements(r.items) WITH ORDINALITY AS e(item, idx)
                LEFT JOIN LATERAL (
                    SELECT l.title FROM commission.order_lines l
                    WHERE l.store_id = r.store_id AND l.order_id = r.order_id
                        AND l.product_id = e.item->>'product_id'
                    ORDER BY l.line_no LIMIT 1
                ) t ON true
                WHERE {" AND ".join(refunds_where)}
                ORDER BY 2 DESC, 3 DESC, 4 DESC LIMIT :limit)
                """
            )
        sql = (
            "SELECT * FROM (" + " UNION ALL ".join(parts) + ") AS u"
            " ORDER BY at DESC, type DESC, order_id DESC, seq DESC LIMIT :limit"
        )
        return list(await self.session.execute(text(sql), params))

    async def product_performance(
        self,
        store_id: str,
        r: DayRange,
        *,
        order_by: str = "sales",
        limit: int | None = None,
        products: Sequence[str] | None = None,
    ) -> list[Any]:
        """Per product and currency: affiliate orders (not cancelled), units, sales and net
        commission of the lines placed in range."""
        order = {"sales": "sales", "orders": "orders", "commission": "commission"}[order_by]
        where = ""
        params: dict[str, Any] = {"store": store_id, "start": r.start, "end": r.end}
        if products is not None:
            where = "AND product_id = ANY(CAST(:products AS text[]))"
            params["products"] = list(products)
        rows = await self.session.execute(
            text(
                f"""
                SELECT product_id, currency, max(title) AS title,
                    count(DISTINCT order_id) AS orders, sum(quantity) AS units,
                    sum(sales_minor) AS sales, sum(commission_minor - reversed_minor) AS commission
                FROM commission.order_lines
                WHERE store_id = :store AND chargeable AND status <> 'cancelled'
                    AND placed_at >= :start AND placed_at < :end {where}
                GROUP BY product_id, currency
                ORDER BY {order} DESC, product_id
                {"LIMIT :limit" if limit else ""}
                """
            ),
            {**params, "limit": limit} if limit else params,
        )
        return list(rows)


async def refund_totals(
    session: AsyncSession,
    store_id: str,
    r: DayRange,
    granularity: Granularity,
    policy: ExitPolicy,
) -> tuple[list[RefundTotals], list[tuple[date, RefundTotals]]]:
    """Per currency, over the range and per bucket: refunded affiliate orders, refunded
    amount, and the commission the refunds reverse (computed by the core, as the ledger posts
    it). One read of the refunds serves both."""
    rows = await ReportRepository(session).refunds_in(store_id, r)
    reversed_by = await _reversals(session, store_id, {row.order_id for row in rows}, policy)
    acc: dict[tuple[date | None, str], tuple[set[str], Decimal, Decimal]] = {}
    for row in rows:
        amount = sum((Decimal(item["amount"]) for item in row.items), ZERO)
        keys = [(row.order_id, row.refund_id, n) for n in range(len(row.items))]
        rev = sum((reversed_by.get(k, ZERO) for k in keys), ZERO)
        for b in (None, bucket_of(row.occurred_at.date(), granularity)):
            orders, a, v = acc.get((b, row.currency), (set(), ZERO, ZERO))
            orders.add(row.order_id)
            acc[(b, row.currency)] = (orders, a + amount, v + rev)
    ordered = sorted(acc.items(), key=lambda kv: (kv[0][0] or date.min, kv[0][1]))
    totals = [RefundTotals(c, len(o), a, v) for (b, c), (o, a, v) in ordered if b is None]
    series = [(b, RefundTotals(c, len(o), a, v)) for (b, c), (o, a, v) in ordered if b]
    return totals, series


async def _reversals(
    session: AsyncSession, store_id: str, order_ids: set[str], policy: ExitPolicy
) -> dict[tuple[str, str, int], Decimal]:
    """(order, refund, item position) → commission reversed, for the given orders of the
    store."""
    repo = CommissionRepository(session)
    facts = await repo.order_facts((store_id, o) for o in order_ids)
    programs = await repo.programs({f.store_id for f in facts.values()})
    return {
        (f.order_id, refund_id, n): amount
        for f in facts.values()
        for (refund_id, n), amount in refund_reversals(f, programs[f.store_id], policy).items()
    }


async def transactions(
    session: AsyncSession,
    store_id: str,
    r: DayRange,
    f: TransactionFilter,
    after: tuple[datetime, str, str, str] | None,
    limit: int,
    policy: ExitPolicy,
) -> list[Transaction]:
    rows = await ReportRepository(session).transactions(store_id, r, f, after, limit)
    refunded = {row.order_id for row in rows if row.type == "refund"}
    reversed_by = await _reversals(session, store_id, refunded, policy) if refunded else {}
    out = []
    for row in rows:
        if row.type == "order":
            amount = from_minor(int(row.amount_minor), row.currency)
            commission = (
                from_minor(int(row.commission_minor), row.currency)
                if row.status != "cancelled"
                else ZERO
            )
        else:
            amount = Decimal(row.refund_amount)
            commission = -reversed_by.get((row.order_id, row.refund_id, row.item_no), ZERO)
        out.append(
            Transaction(
                row.type,
                row.at,
                store_id,
                row.order_id,
                row.seq,
                row.refund_id,
                row.product_id,
                row.title,
                row.quantity,
                row.currency,
                amount,
                commission,
                row.status,
                row.affiliate_id,
            )
        )
    return out
