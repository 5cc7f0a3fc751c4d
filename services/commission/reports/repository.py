"""All SQL of the reports: the report queries (read only) and the reports consumer's writes
(traffic per day, visitors per day, clicks and page views seen, the catalog).

Definitions (documented in docs/reports.md):
- an *affiliate order* is a chargeable order (attributed, store in the program at placement)
  that was not cancelled (:func:`~services.commission.core.reports.is_affiliate_order`);
  orders count by their placement day, cancelled ones apart;
- *commission payable* is the net commission of completed affiliate orders, *estimated* the
  net of those still open; both equal what the ledger holds or will hold for those orders;
- traffic counts affiliate clicks by their day, suspicious ones apart; *affiliate visitors*
  are the distinct visitors with an affiliate click, *store visitors* those with a click or a
  page view; an *affiliate page view* is a view by a visitor with an affiliate click on the
  store inside the store's attribution window before it
  (:func:`~services.commission.core.reports.is_affiliate_view`);
- distinct visitors are exact over a single day (``visitor_days``), and over more than one day
  the cardinality of the union of the days' HyperLogLog sketches (``visitor_sketches``), within
  :data:`~services.commission.core.reports.VISITOR_SKETCH_ERROR` (1.625% relative standard
  error).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m
from services.commission.core.reports import (
    VISITOR_SKETCH_LOG2M,
    VISITOR_SKETCH_REGWIDTH,
    DayRange,
    Granularity,
    OrderTotals,
    TrafficRow,
    TransactionFilter,
    single_days,
)
from services.commission.models import affiliate_order_sql
from shared.clickcap_store import ClickCapStore
from shared.db import like_pattern
from shared.events import Click, PageView
from shared.money import from_minor

#: the sketches' parameters (log2m, regwidth), as the migration made them
_SKETCH = f"{VISITOR_SKETCH_LOG2M}, {VISITOR_SKETCH_REGWIDTH}"

#: what each visitor and address may store in ``report_clicks`` per link per day
CAPS = ClickCapStore("commission")


def _bucket_sql(day: str, granularity: Granularity) -> str:
    """SQL of the bucket (its first day) of ``day``, an SQL date expression; the granularity is
    an enum, never user text."""
    if granularity is Granularity.DAY:
        return day
    return f"CAST(date_trunc('{granularity.value}', {day}) AS date)"


def _utc_day(timestamp: str) -> str:
    return f"CAST(({timestamp}) AT TIME ZONE 'UTC' AS date)"


#: the order lines of a transactions page (``{where}``: its filters)
_ORDER_LINES = """
    (SELECT 'order' AS type, l.placed_at AS at, l.order_id,
        lpad(l.line_no::text, 5, '0') AS seq, NULL AS refund_id, l.product_id,
        l.title, l.quantity, l.currency, l.sales_minor AS amount_minor,
        l.commission_minor, NULL AS refund_amount, NULL::bigint AS item_no, l.status,
        l.affiliate_id,
        (SELECT o.attribution->>'rule' FROM commission.orders o
         WHERE o.store_id = l.store_id AND o.order_id = l.order_id) AS rule,
        NULL AS reason
    FROM commission.order_lines l
    WHERE {where}
    ORDER BY 2 DESC, 3 DESC, 4 DESC LIMIT :limit)
"""

#: the refund lines of a transactions page, one per refunded item
_REFUND_LINES = """
    (SELECT 'refund' AS type, r.occurred_at AS at, r.order_id,
        r.refund_id || '#' || lpad(e.idx::text, 5, '0') AS seq, r.refund_id,
        e.item->>'product_id' AS product_id, coalesce(t.title, '') AS title,
        NULL::integer AS quantity, o.currency, NULL::bigint AS amount_minor,
        NULL::bigint AS commission_minor, e.item->>'amount' AS refund_amount,
        e.idx - 1 AS item_no,
        o.status, o.affiliate_id, o.attribution->>'rule' AS rule, NULL AS reason
    FROM commission.refunds r
    JOIN commission.orders o USING (store_id, order_id)
    CROSS JOIN LATERAL jsonb_array_elements(r.items) WITH ORDINALITY AS e(item, idx)
    LEFT JOIN LATERAL (
        SELECT l.title FROM commission.order_lines l
        WHERE l.store_id = r.store_id AND l.order_id = r.order_id
            AND l.product_id = e.item->>'product_id'
        ORDER BY l.line_no LIMIT 1
    ) t ON true
    WHERE {where}
    ORDER BY 2 DESC, 3 DESC, 4 DESC LIMIT :limit)
"""


#: the adjustments of a transactions page, one per adjustment: ``refund_amount`` holds what an
#: amend lowered the base by, ``commission_minor`` what its ledger transaction credited the
#: affiliate (0 before the order completed: it changed the estimate only)
_ADJUSTMENTS = """
    (SELECT 'adjustment' AS type, a.at, a.order_id, lpad(a.seq::text, 5, '0') AS seq,
        NULL AS refund_id, coalesce(a.lines->0->>'product_id', '') AS product_id, '' AS title,
        NULL::integer AS quantity, o.currency, NULL::bigint AS amount_minor,
        coalesce((
            SELECT sum(p.amount_minor) FROM commission.ledger_transactions t
            JOIN commission.ledger_postings p ON p.txn_id = t.id
            WHERE t.key = 'adjustment:' || a.store_id || ':' || a.order_id || '/' || a.seq
              AND p.account LIKE 'affiliate:%'), 0)::bigint AS commission_minor,
        (SELECT coalesce(sum((x->>'amount')::numeric), 0)
         FROM jsonb_array_elements(a.lines) AS x)::text AS refund_amount,
        NULL::bigint AS item_no, o.status, o.affiliate_id, o.attribution->>'rule' AS rule,
        a.reason
    FROM commission.adjustments a
    JOIN commission.orders o USING (store_id, order_id)
    WHERE {where}
    ORDER BY 2 DESC, 3 DESC, 4 DESC LIMIT :limit)
"""


def _adjustment_filters(
    f: TransactionFilter, after: tuple[datetime, str, str, str] | None, params: dict[str, Any]
) -> list[str]:
    """The conditions on adjustments of a transactions page (as :func:`_transaction_filters`:
    the range on the adjustment's time; a reason)."""
    where = ["a.store_id = :store", "o.chargeable", "a.at >= :start", "a.at < :end"]
    if f.reason:
        params["reason"] = f.reason
        where.append("a.reason = :reason")
    if f.product_id:
        params["product"] = f.product_id
        where.append(
            "a.lines @> jsonb_build_array(jsonb_build_object('product_id', CAST(:product AS text)))"
        )
    if f.order_id:
        params["order"] = f.order_id
        where.append("a.order_id = :order")
    if f.keyword:
        where.append("false")  # adjustments have no title
    if after is not None:
        where.append(
            "(a.at, 'adjustment', a.order_id, lpad(a.seq::text, 5, '0'))"
            " < (:a_at, :a_type, :a_order, :a_seq)"
        )
    return where


def _transaction_filters(
    f: TransactionFilter, after: tuple[datetime, str, str, str] | None, params: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The conditions on order lines and on refund lines of a transactions page (its range,
    filters and keyset position); their values go into ``params``."""
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
    return lines_where, refunds_where


#: a closed day's shards of ``traffic_days`` into its shard 0 (:meth:`ReportRepository.fold_shards`)
_FOLD_TRAFFIC = """
WITH gone AS (
    DELETE FROM commission.traffic_days WHERE day < :before AND shard <> 0 RETURNING *
), folded AS (
    INSERT INTO commission.traffic_days AS t (store_id, day, shard, clicks, suspicious_clicks,
        page_views, affiliate_page_views)
    SELECT store_id, day, 0, sum(clicks), sum(suspicious_clicks), sum(page_views),
        sum(affiliate_page_views)
    FROM gone GROUP BY store_id, day ORDER BY store_id, day
    ON CONFLICT (store_id, day, shard) DO UPDATE SET clicks = t.clicks + excluded.clicks,
        suspicious_clicks = t.suspicious_clicks + excluded.suspicious_clicks,
        page_views = t.page_views + excluded.page_views,
        affiliate_page_views = t.affiliate_page_views + excluded.affiliate_page_views
)
SELECT count(*) FROM gone
"""
#: the same for ``visitor_sketches`` (a day's sketch: the union of its shards')
_FOLD_SKETCHES = """
WITH gone AS (
    DELETE FROM commission.visitor_sketches WHERE day < :before AND shard <> 0 RETURNING *
), folded AS (
    INSERT INTO commission.visitor_sketches AS k (store_id, day, shard, affiliate_visitors,
        store_visitors)
    SELECT store_id, day, 0, hll_union_agg(affiliate_visitors), hll_union_agg(store_visitors)
    FROM gone GROUP BY store_id, day ORDER BY store_id, day
    ON CONFLICT (store_id, day, shard) DO UPDATE SET
        affiliate_visitors = hll_union(k.affiliate_visitors, excluded.affiliate_visitors),
        store_visitors = hll_union(k.store_visitors, excluded.store_visitors)
)
SELECT count(*) FROM gone
"""


class ReportRepository:
    """All SQL of the reports. Read only."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def traffic_total(
        self, store_id: str, r: DayRange, *, store_visitors: bool = True
    ) -> TrafficRow:
        """Totals over the range; ``store_visitors=False`` leaves the store's visitors out
        (0: the dashboard shows only affiliate visitors). Distinct visitors are exact over one
        day, estimated from the days' sketches over more (:meth:`_sketched_visitors`)."""
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
        if r.days == 1:
            affiliate, store = (await self.exact_visitors(store_id, r)).get(r.first, (0, 0))
        else:
            affiliate, store = await self._sketched_visitors(store_id, r, store_visitors)
        return TrafficRow(
            int(counts.clicks),
            int(counts.suspicious_clicks),
            int(counts.page_views),
            int(counts.affiliate_page_views),
            affiliate,
            store if store_visitors else 0,
        )

    async def exact_visitors(
        self, store_id: str, r: DayRange, days: Sequence[date] | None = None
    ) -> dict[date, tuple[int, int]]:
        """Per day of the range (or of ``days`` only): (affiliate visitors, store visitors),
        exact: a visitor-day is one row, so a day's count needs no DISTINCT."""
        only = "AND day = ANY(CAST(:days AS date[]))" if days is not None else ""
        params: dict[str, Any] = {"store": store_id, "first": r.first, "last": r.last}
        if days is not None:
            params["days"] = list(days)
        rows = await self.session.execute(
            text(
                f"""
                SELECT day, count(*) FILTER (WHERE clicked) AS affiliate, count(*) AS store
                FROM commission.visitor_days
                WHERE store_id = :store AND day BETWEEN :first AND :last {only}
                GROUP BY day
                """
            ),
            params,
        )
        return {row.day: (int(row.affiliate), int(row.store)) for row in rows}

    async def _sketched_visitors(
        self, store_id: str, r: DayRange, store_visitors: bool
    ) -> tuple[int, int]:
        """Distinct (affiliate, store) visitors over the range: the cardinality of the union of
        its days' sketches, within :data:`VISITOR_SKETCH_ERROR` (docs/reports.md)."""
        store = "round(hll_cardinality(hll_union_agg(store_visitors)))" if store_visitors else "0"
        row = (
            await self.session.execute(
                text(
                    f"""
                    SELECT round(hll_cardinality(hll_union_agg(affiliate_visitors)))
                            AS affiliate,
                        {store} AS store
                    FROM commission.visitor_sketches
                    WHERE store_id = :store AND day BETWEEN :first AND :last
                    """
                ),
                {"store": store_id, "first": r.first, "last": r.last},
            )
        ).one()
        return int(row.affiliate or 0), int(row.store or 0)

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
        visitors = await self._visitors_per_bucket(store_id, r, granularity)
        out: dict[date, TrafficRow] = {}
        for c in counts:
            affiliate, store = visitors.get(c.bucket, (0, 0))
            out[c.bucket] = TrafficRow(
                int(c.clicks),
                int(c.suspicious_clicks),
                int(c.page_views),
                int(c.affiliate_page_views),
                affiliate,
                store,
            )
        for b, (affiliate, store) in visitors.items():
            if b not in out:
                out[b] = TrafficRow(affiliate_visitors=affiliate, store_visitors=store)
        return out

    async def _visitors_per_bucket(
        self, store_id: str, r: DayRange, granularity: Granularity
    ) -> dict[date, tuple[int, int]]:
        """(affiliate, store) visitors per bucket: exact for a bucket of one day of the range,
        else from the union of its days' sketches."""
        if granularity is Granularity.DAY:
            return await self.exact_visitors(store_id, r)
        bucket = _bucket_sql("day", granularity)
        rows = await self.session.execute(
            text(
                f"""
                SELECT {bucket} AS bucket,
                    round(hll_cardinality(hll_union_agg(affiliate_visitors))) AS affiliate,
                    round(hll_cardinality(hll_union_agg(store_visitors))) AS store
                FROM commission.visitor_sketches
                WHERE store_id = :store AND day BETWEEN :first AND :last
                GROUP BY 1
                """
            ),
            {"store": store_id, "first": r.first, "last": r.last},
        )
        out = {row.bucket: (int(row.affiliate or 0), int(row.store or 0)) for row in rows}
        single = single_days(r, granularity)
        exact = await self.exact_visitors(store_id, r, sorted(single.values()))
        for b, day in single.items():
            out.pop(b, None)
            if day in exact:
                out[b] = exact[day]
        return out

    async def order_totals(
        self, store_id: str, r: DayRange, granularity: Granularity | None = None
    ) -> list[tuple[date | None, OrderTotals]]:
        """Per currency (and bucket, if ``granularity``): affiliate orders placed in range."""
        bucket = _bucket_sql(_utc_day("placed_at"), granularity) if granularity else "NULL"
        affiliate = affiliate_order_sql()  # of the chargeable orders: those not cancelled
        rows = await self.session.execute(
            text(
                f"""
                SELECT {bucket} AS bucket, currency,
                    count(*) FILTER (WHERE {affiliate}) AS orders,
                    count(*) FILTER (WHERE NOT {affiliate}) AS cancelled,
                    coalesce(sum(sales_minor) FILTER (WHERE {affiliate}), 0) AS sales,
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
        """Order lines, refund lines and adjustments, newest first (keyset: a page never shifts
        when rows are added); with a reason, only the adjustments with it."""
        params: dict[str, Any] = {"store": store_id, "start": r.start, "end": r.end, "limit": limit}
        lines_where, refunds_where = _transaction_filters(f, after, params)
        adjustments_where = _adjustment_filters(f, after, params)
        parts = []
        if f.type in (None, "order") and f.reason is None:
            parts.append(_ORDER_LINES.format(where=" AND ".join(lines_where)))
        if f.type in (None, "refund") and f.reason is None:
            parts.append(_REFUND_LINES.format(where=" AND ".join(refunds_where)))
        if f.type in (None, "adjustment"):
            parts.append(_ADJUSTMENTS.format(where=" AND ".join(adjustments_where)))
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
                WHERE store_id = :store AND {affiliate_order_sql()}
                    AND placed_at >= :start AND placed_at < :end {where}
                GROUP BY product_id, currency
                ORDER BY {order} DESC, product_id
                {"LIMIT :limit" if limit else ""}
                """
            ),
            {**params, "limit": limit} if limit else params,
        )
        return list(rows)

    # -- the reports consumer's writes ----------------------------------------------------------

    async def fresh_clicks(self, clicks: list[Click], cap: int) -> list[Click]:
        """The clicks not seen before (by click id), each to be counted once. At most ``cap``
        of them per visitor (and per client address) per link per UTC day are stored in
        ``report_clicks``; the rest are counted in ``click_caps`` (:mod:`shared.clickcap`)
        and returned too: the traffic counts include them."""
        if not clicks:
            return []
        by_id = {c.click_id: c for c in clicks}
        t = m.report_clicks
        known = set(
            (
                await self.session.execute(
                    text(
                        "SELECT click_id FROM commission.report_clicks WHERE click_id = ANY(:ids)"
                    ),
                    {"ids": list(by_id)},
                )
            ).scalars()
        )
        new = [c for i, c in by_id.items() if i not in known]
        admitted = (await CAPS.admit(self.session, new, cap)).admitted
        if admitted:
            await self.session.execute(
                insert(t)
                .values(
                    [
                        {
                            "click_id": c.click_id,
                            "store_id": c.store_id,
                            "visitor_id": c.visitor_id,
                            "affiliate_id": c.affiliate_id,
                            "occurred_at": c.occurred_at,
                            "suspicious": c.suspicious,
                        }
                        for c in sorted(admitted, key=lambda c: c.click_id)
                    ]
                )
                .on_conflict_do_nothing(index_elements=["click_id", "occurred_at"])
            )
        return new

    async def fresh_views(self, views: list[PageView]) -> list[PageView]:
        if not views:
            return []
        by_id = {f"{v.store_id}/{v.event_id}": v for v in views}
        t = m.seen_page_views
        rows = await self.session.execute(
            insert(t)
            .values([{"event_id": k} for k in sorted(by_id)])
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(t.c.event_id)
        )
        return [by_id[k] for k in rows.scalars()]

    async def last_clicks(self, views: list[PageView]) -> list[datetime | None]:
        """For each view: the last affiliate click (not suspicious) of its visitor on its
        store at or before the view, if any."""
        if not views:
            return []
        rows = await self.session.execute(
            text(
                """
                SELECT v.n, (
                    SELECT max(c.occurred_at) FROM commission.report_clicks c
                    WHERE c.store_id = v.store_id AND c.visitor_id = v.visitor_id
                      AND c.occurred_at <= v.at AND NOT c.suspicious
                ) AS last_click
                FROM unnest(CAST(:stores AS text[]), CAST(:visitors AS text[]),
                    CAST(:ats AS timestamptz[])) WITH ORDINALITY AS v(store_id, visitor_id, at, n)
                """
            ),
            {
                "stores": [v.store_id for v in views],
                "visitors": [v.visitor_id for v in views],
                "ats": [v.occurred_at for v in views],
            },
        )
        last: dict[int, datetime | None] = {int(r.n): r.last_click for r in rows}
        return [last.get(n) for n in range(1, len(views) + 1)]

    async def add_counts(self, counts: Counter[tuple[str, date, int, str]]) -> None:
        """Add (store, day, shard, kind) counts to their rows, in key order (a row is one
        partition's: see ``traffic_days``)."""
        per_day: dict[tuple[str, date, int], dict[str, int]] = {}
        for (store, day, shard, kind), n in counts.items():
            per_day.setdefault((store, day, shard), {})[kind] = n
        if not per_day:
            return
        names = ("clicks", "suspicious_clicks", "page_views", "affiliate_page_views")
        t = m.traffic_days
        stmt = insert(t).values(
            [
                {"store_id": s, "day": d, "shard": h, **{k: kinds.get(k, 0) for k in names}}
                for (s, d, h), kinds in sorted(per_day.items())
            ]
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["store_id", "day", "shard"],
                set_={k: t.c[k] + stmt.excluded[k] for k in names},
            )
        )

    async def add_visitors(
        self, visitors: dict[tuple[str, date, str], tuple[bool, bool]], shards: dict[str, int]
    ) -> None:
        """The batch's visitor-days (a flag only ever turns on), and one sketch upsert per
        (store, day, shard) of the batch, ``shards`` giving each visitor's: the union of the
        stored sketch and the batch's (adding a visitor twice changes nothing, so a replay is
        harmless). Rows in key order: two workers' batches lock them in the same order."""
        if not visitors:
            return
        t = m.visitor_days
        ordered = sorted(visitors.items())
        stmt = insert(t).values(
            [
                {"store_id": s, "day": d, "visitor_id": v, "clicked": c, "viewed": w}
                for (s, d, v), (c, w) in ordered
            ]
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["store_id", "day", "visitor_id"],
                set_={
                    "clicked": t.c.clicked | stmt.excluded.clicked,
                    "viewed": t.c.viewed | stmt.excluded.viewed,
                },
                where=(~t.c.clicked & stmt.excluded.clicked) | (~t.c.viewed & stmt.excluded.viewed),
            )
        )
        await self.session.execute(
            text(
                f"""
                INSERT INTO commission.visitor_sketches AS k (store_id, day, shard,
                    affiliate_visitors, store_visitors)
                SELECT store_id, day, shard,
                    coalesce(hll_add_agg(hll_hash_text(visitor_id), {_SKETCH})
                        FILTER (WHERE clicked), hll_empty({_SKETCH})),
                    hll_add_agg(hll_hash_text(visitor_id), {_SKETCH})
                FROM unnest(CAST(:stores AS text[]), CAST(:days AS date[]),
                    CAST(:shards AS smallint[]), CAST(:visitors AS text[]),
                    CAST(:clicked AS boolean[]))
                    AS u(store_id, day, shard, visitor_id, clicked)
                GROUP BY store_id, day, shard
                ORDER BY store_id, day, shard
                ON CONFLICT (store_id, day, shard) DO UPDATE SET
                    affiliate_visitors = hll_union(k.affiliate_visitors,
                        excluded.affiliate_visitors),
                    store_visitors = hll_union(k.store_visitors, excluded.store_visitors)
                """
            ),
            {
                "stores": [s for (s, _, _), _ in ordered],
                "days": [d for (_, d, _), _ in ordered],
                "shards": [shards.get(v, 0) for (_, _, v), _ in ordered],
                "visitors": [v for (_, _, v), _ in ordered],
                "clicked": [c for _, (c, _) in ordered],
            },
        )

    async def categories_of(
        self, products: set[tuple[str, str]]
    ) -> dict[tuple[str, str], str | None]:
        """The catalog's category of each (store, product) it knows."""
        if not products:
            return {}
        ordered = sorted(products)
        rows = await self.session.execute(
            text(
                """
                SELECT p.store_id, p.product_id, p.category_id
                FROM unnest(CAST(:stores AS text[]), CAST(:products AS text[])) AS k(s, p)
                JOIN commission.products p ON p.store_id = k.s AND p.product_id = k.p
                """
            ),
            {"stores": [s for s, _ in ordered], "products": [p for _, p in ordered]},
        )
        return {(r.store_id, r.product_id): r.category_id for r in rows}

    async def add_interests(self, interests: dict[tuple[str, str, str, str], datetime]) -> None:
        """Visitor interests: (visitor, store, category or '', kind) → last time; the later
        time wins (idempotent, in any order)."""
        if not interests:
            return
        t = m.visitor_interests
        stmt = insert(t).values(
            [
                {"visitor_id": v, "store_id": s, "category_id": c, "kind": k, "last_at": at}
                for (v, s, c, k), at in sorted(interests.items())
            ]
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["visitor_id", "store_id", "category_id", "kind"],
                set_={"last_at": stmt.excluded.last_at},
                where=t.c.last_at < stmt.excluded.last_at,
            )
        )

    async def fold_shards(self, before: date) -> int:
        """Fold the shards of each (store, day) before ``before`` into its shard 0 (closed
        days: what a dashboard reads is then one row a day again); returns the rows removed.
        Sums and unions are the same in every snapshot, and a late event's row written
        meanwhile is folded by the next run."""
        removed = 0
        for sql in (_FOLD_TRAFFIC, _FOLD_SKETCHES):
            result = await self.session.execute(text(sql), {"before": before})
            removed += int(result.scalar_one())
        return removed

    async def forget_click_caps(self, before: date, batch: int) -> int:
        """Delete at most ``batch`` click-cap counts of days before ``before``; how many."""
        return await CAPS.forget(self.session, before, batch)

    async def forget_interests(self, before: datetime, batch: int) -> int:
        """Delete at most ``batch`` visitor interests last met before ``before``; how many."""
        result = await self.session.execute(
            text(
                """
                DELETE FROM commission.visitor_interests WHERE ctid IN (
                    SELECT ctid FROM commission.visitor_interests
                    WHERE last_at < :before LIMIT :batch
                )
                """
            ),
            {"before": before, "batch": batch},
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def upsert_products(self, rows: list[dict[str, Any]]) -> None:
        """Catalog rows (with their ranking fields); a row older than the stored one loses."""
        if not rows:
            return
        t = m.products
        stmt = insert(t).values(rows)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["store_id", "product_id"],
                set_={
                    c: stmt.excluded[c]
                    for c in (
                        "category_id",
                        "title",
                        "price_minor",
                        "currency",
                        "updated_at",
                        "rate",
                        "main",
                        "in_program",
                    )
                },
                where=t.c.updated_at <= stmt.excluded.updated_at,
            )
        )
