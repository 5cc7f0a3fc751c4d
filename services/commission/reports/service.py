"""Report use cases: the seller reports (read models summed in SQL, refunds' reversals by
the pure core) and the reports consumer's batch (traffic, visitors, the catalog)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.core.camp import HISTORY as CAMP_HISTORY
from services.commission.core.camp import Kind
from services.commission.core.program import ProgramState
from services.commission.core.reports import (
    DayRange,
    Granularity,
    OrderTotals,
    TrafficRow,
    TransactionFilter,
    bucket_of,
    day_range,
    is_affiliate_view,
    product_score,
)
from services.commission.csv_export import snapshot
from services.commission.orders.service import OrderService
from services.commission.program.service import ProgramService
from services.commission.reports.repository import ReportRepository
from shared.clickcap import DEFAULT_CAP_PER_DAY
from shared.clock import Clock, SystemClock
from shared.db import decode_cursor, encode_cursor
from shared.events import Click, OrderPlaced, PageView, ProductUpserted
from shared.kafka import Received
from shared.money import ZERO, from_minor, to_minor

#: what the reports consumer handles (None: a storefront or order event it does not keep)
Incoming = Click | PageView | ProductUpserted | OrderPlaced | None
#: (visitor, store, category or '', kind) → the last time: the camp's visitor interests
Interests = dict[tuple[str, str, str, str], datetime]
#: (store, UTC day, visitor) → (an affiliate click, a page view)
Visitors = dict[tuple[str, date, str], tuple[bool, bool]]
#: visitor → the Kafka partition of its clicks and page views in the batch (both topics are
#: keyed by visitor): the ``shard`` of the traffic rows and sketches that count them
Shards = dict[str, int]
#: (store, UTC day, shard, kind) → events counted
Counts = Counter[tuple[str, date, int, str]]


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
    #: how the order was attributed: last_click or coupon (docs/coupons.md)
    rule: str | None = None
    #: a refund reported at or after the order's locking date: ``locked`` (it reverses nothing)
    reversal_skipped: str | None = None
    reason: str | None = None  # an adjustment's reason


#: a position in the transactions' order: (at, type, order id, seq)
After = tuple[datetime, str, str, str]


def transaction_cursor(t: Transaction) -> str:
    return encode_cursor([t.at.isoformat(), t.type, t.order_id, t.seq])


def transaction_after(cursor: str) -> After:
    """The position after which the next page starts; ValueError (or OverflowError) if it is
    not one of ours."""
    at, kind, order_id, seq = decode_cursor(cursor, 4)
    return datetime.fromisoformat(at).astimezone(UTC), kind, order_id, seq


@dataclass
class ReportService:
    clock: Clock = field(default_factory=SystemClock)
    orders: OrderService = field(default_factory=OrderService)
    programs: ProgramService = field(default_factory=ProgramService)
    #: where a CSV export reads from (a transaction of its own: the response outlives the
    #: request's)
    sessions: async_sessionmaker[AsyncSession] | None = None
    #: rows read at a time by a CSV export
    export_page: int = 2000

    def days(self, first: date | None, last: date | None) -> DayRange:
        """The range a report asks for (``to`` defaults to today, by the service's clock)."""
        return day_range(first, last, self.clock.now().date())

    async def dashboard(
        self, session: AsyncSession, store_id: str, r: DayRange
    ) -> tuple[TrafficRow, list[OrderTotals]]:
        repo = ReportRepository(session)
        traffic = await repo.traffic_total(store_id, r, store_visitors=False)
        return traffic, [o for _, o in await repo.order_totals(store_id, r)]

    async def traffic(
        self, session: AsyncSession, store_id: str, r: DayRange, granularity: Granularity
    ) -> tuple[TrafficRow, dict[date, TrafficRow]]:
        """Over the whole range (visitors distinct over it), and per bucket."""
        repo = ReportRepository(session)
        series = await repo.traffic_series(store_id, r, granularity)
        return await repo.traffic_total(store_id, r), series

    async def order_totals(
        self, session: AsyncSession, store_id: str, r: DayRange, granularity: Granularity
    ) -> list[tuple[date | None, OrderTotals]]:
        return await ReportRepository(session).order_totals(store_id, r, granularity)

    async def refund_totals(
        self, session: AsyncSession, store_id: str, r: DayRange, granularity: Granularity
    ) -> tuple[list[RefundTotals], list[tuple[date, RefundTotals]]]:
        """Per currency, over the range and per bucket: refunded affiliate orders, refunded
        amount, and the commission the refunds reverse (computed by the core, as the ledger
        posts it). One read of the refunds serves both."""
        rows = await ReportRepository(session).refunds_in(store_id, r)
        orders = {row.order_id for row in rows}
        reversed_by = await self.orders.refund_reversals(session, store_id, orders)
        acc: dict[tuple[date | None, str], tuple[set[str], Decimal, Decimal]] = {}
        for row in rows:
            amount = sum((Decimal(item["amount"]) for item in row.items), ZERO)
            keys = [(row.order_id, row.refund_id, n) for n in range(len(row.items))]
            rev = sum((reversed_by.get(k, ZERO) for k in keys), ZERO)
            for b in (None, bucket_of(row.occurred_at.date(), granularity)):
                seen, a, v = acc.get((b, row.currency), (set(), ZERO, ZERO))
                seen.add(row.order_id)
                acc[(b, row.currency)] = (seen, a + amount, v + rev)
        ordered = sorted(acc.items(), key=lambda kv: (kv[0][0] or date.min, kv[0][1]))
        totals = [RefundTotals(c, len(o), a, v) for (b, c), (o, a, v) in ordered if b is None]
        series = [(b, RefundTotals(c, len(o), a, v)) for (b, c), (o, a, v) in ordered if b]
        return totals, series

    async def transactions(
        self,
        session: AsyncSession,
        store_id: str,
        r: DayRange,
        f: TransactionFilter,
        after: After | None,
        limit: int,
    ) -> list[Transaction]:
        """Order lines and refund lines, newest first, after ``after``: each with its
        commission (a refund's: minus what it reverses, by the core)."""
        rows = await ReportRepository(session).transactions(store_id, r, f, after, limit)
        refunded = {row.order_id for row in rows if row.type == "refund"}
        reversed_by, skipped = (
            await self.orders.refund_outcomes(session, store_id, refunded)
            if refunded
            else ({}, set())
        )
        return [_transaction(store_id, row, reversed_by, skipped) for row in rows]

    async def transaction_pages(
        self, store_id: str, r: DayRange, f: TransactionFilter, after: After | None
    ) -> AsyncIterator[list[Transaction]]:
        """Every matching transaction after ``after``, a page at a time, from one snapshot."""
        assert self.sessions is not None, "a CSV export needs the app's sessions"
        async with snapshot(self.sessions) as session:
            while rows := await self.transactions(session, store_id, r, f, after, self.export_page):
                yield rows
                last = rows[-1]
                after = (last.at, last.type, last.order_id, last.seq)

    async def product_performance(
        self,
        session: AsyncSession,
        store_id: str,
        r: DayRange,
        *,
        order_by: str = "sales",
        limit: int | None = None,
        products: Sequence[str] | None = None,
    ) -> list[Any]:
        return await ReportRepository(session).product_performance(
            store_id, r, order_by=order_by, limit=limit, products=products
        )

    async def main_products(
        self, session: AsyncSession, store_id: str, r: DayRange
    ) -> tuple[ProgramState, list[Any]]:
        """The program in force now, and the performance of its main products in range."""
        state = (await self.programs.history(session, store_id)).current()
        rows = await self.product_performance(
            session, store_id, r, products=sorted(state.main_products)
        )
        return state, rows

    async def operations(self, session: AsyncSession, store_id: str, r: DayRange) -> list[Any]:
        return await self.programs.operations(session, store_id, r.start, r.end)


def _transaction(
    store_id: str,
    row: Any,
    reversed_by: dict[tuple[str, str, int], Decimal],
    skipped: set[tuple[str, str]],
) -> Transaction:
    if row.type == "order":
        amount = from_minor(int(row.amount_minor), row.currency)
        commission = (
            from_minor(int(row.commission_minor), row.currency)
            if row.status != "cancelled"
            else ZERO
        )
    elif row.type == "adjustment":
        amount = Decimal(row.refund_amount)
        commission = from_minor(int(row.commission_minor), row.currency)
    else:
        amount = Decimal(row.refund_amount)
        commission = -reversed_by.get((row.order_id, row.refund_id, row.item_no), ZERO)
    return Transaction(
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
        row.rule,
        "locked" if row.type == "refund" and (row.order_id, row.refund_id) in skipped else None,
        row.reason,
    )


@dataclass
class TrafficService:
    """The reports consumer's batch: clicks, page views and catalog updates into the reports'
    read models. Idempotent: clicks by click id, page views by event id, catalog updates by
    time (the newest wins)."""

    #: the attribution window of stores that set none (days)
    default_window_days: int
    programs: ProgramService = field(default_factory=ProgramService)
    #: clicks one visitor (or address) may store per link per UTC day (:mod:`shared.clickcap`)
    click_cap: int = DEFAULT_CAP_PER_DAY

    async def handle_batch(self, session: AsyncSession, batch: list[Received[Incoming]]) -> None:
        repo = ReportRepository(session)
        events = [r.value for r in batch if r.value is not None]
        # a partition is read by one worker at a time: rows keyed by it are never updated by
        # two workers' batches, where one row per (store, day) was (a hot row, docs/reports.md)
        shards: Shards = {
            r.value.visitor_id: r.partition for r in batch if isinstance(r.value, Click | PageView)
        }
        counts: Counts = Counter()
        visitors: Visitors = {}
        # clicks first: a page view in the same batch as its click counts as an affiliate view
        await self._count_clicks(
            repo, [e for e in events if isinstance(e, Click)], counts, visitors, shards
        )
        views = [e for e in events if isinstance(e, PageView)]
        await self._count_views(session, repo, views, counts, visitors, shards)
        await repo.add_counts(counts)
        await repo.add_visitors(visitors, shards)
        products = [e for e in events if isinstance(e, ProductUpserted)]
        await repo.upsert_products(await self._catalog_rows(session, products))
        # after the catalog: a view of a product upserted in the same batch knows its category
        await repo.add_interests(await self._interests(repo, events))

    async def _interests(self, repo: ReportRepository, events: list[Any]) -> Interests:
        """What each visitor met (the camp's personal boost): the stores and categories of
        their page views, affiliate clicks (not suspicious) and placed orders' lines. A
        product's category is the line's own, else the catalog's (when it knows the
        product). Replays change nothing: the last time only ever grows."""
        met: list[tuple[str, str, str | None, str | None, Kind, datetime]] = []
        for e in events:
            if isinstance(e, Click | PageView) and not (isinstance(e, Click) and e.suspicious):
                kind = Kind.CLICK if isinstance(e, Click) else Kind.VIEW
                met.append((e.visitor_id, e.store_id, e.product_id, None, kind, e.occurred_at))
            elif isinstance(e, OrderPlaced):
                at = e.occurred_at
                met += [
                    (e.visitor_id, e.store_id, i.product_id, i.category_id, Kind.ORDER, at)
                    for i in e.items
                ]
        unknown = {(s, p) for _, s, p, c, _, _ in met if p and not c}
        catalog = await repo.categories_of(unknown)
        out: Interests = {}
        for visitor, store, product, category, kind, at in met:
            category = category or (catalog.get((store, product)) if product else None)
            key = (visitor, store, category or "", kind.value)
            if key not in out or out[key] < at:
                out[key] = at
        return out

    async def forget_interests(
        self, sessions: async_sessionmaker[AsyncSession], now: datetime, batch: int = 10_000
    ) -> int:
        """Delete the visitor interests older than the camp's history (they no longer count),
        ``batch`` rows per transaction: what keeps the table bounded. Returns how many went.
        A replayed old event may write one back; the next run takes it again."""
        total = 0
        while True:
            async with sessions() as session, session.begin():
                repo = ReportRepository(session)
                n = await repo.forget_interests(now - CAMP_HISTORY, batch)
                # the click cap's counts of the same days (traffic_days keeps their totals)
                n += await repo.forget_click_caps((now - CAMP_HISTORY).date(), batch)
            total += n
            if n < batch:
                return total

    async def fold_shards(self, sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
        """Fold the traffic rows and sketches of the days before ``now``'s UTC day into one
        row per (store, day) (hourly: the partitions' rows of a day only matter while it is
        written); returns the rows removed."""
        async with sessions() as session, session.begin():
            return await ReportRepository(session).fold_shards(now.astimezone(UTC).date())

    async def _count_clicks(
        self,
        repo: ReportRepository,
        clicks: list[Click],
        counts: Counts,
        visitors: Visitors,
        shards: Shards,
    ) -> None:
        for c in await repo.fresh_clicks(clicks, self.click_cap):
            day, shard = c.occurred_at.date(), shards.get(c.visitor_id, 0)
            counts[(c.store_id, day, shard, "suspicious_clicks" if c.suspicious else "clicks")] += 1
            if not c.suspicious:
                _saw(visitors, c.store_id, day, c.visitor_id, clicked=True)

    async def _count_views(
        self,
        session: AsyncSession,
        repo: ReportRepository,
        views: list[PageView],
        counts: Counts,
        visitors: Visitors,
        shards: Shards,
    ) -> None:
        fresh = await repo.fresh_views(views)
        if not fresh:
            return
        last_clicks = await repo.last_clicks(fresh)
        programs = await self.programs.histories(session, {v.store_id for v in fresh})
        for v, click in zip(fresh, last_clicks, strict=True):
            day, shard = v.occurred_at.date(), shards.get(v.visitor_id, 0)
            counts[(v.store_id, day, shard, "page_views")] += 1
            days = programs[v.store_id].state_at(v.occurred_at).window_days
            window = timedelta(days=days or self.default_window_days)
            if is_affiliate_view(click, v.occurred_at, window):
                counts[(v.store_id, day, shard, "affiliate_page_views")] += 1
            _saw(visitors, v.store_id, day, v.visitor_id, viewed=True)

    async def _catalog_rows(
        self, session: AsyncSession, products: list[ProductUpserted]
    ) -> list[dict[str, Any]]:
        """The newest update of each product with the ranking fields its program gives it
        now (no sales history yet for a new product: the refresher adds it)."""
        if not products:
            return []
        newest: dict[tuple[str, str], ProductUpserted] = {}
        for p in products:
            key = (p.store_id, p.product_id)
            if key not in newest or newest[key].occurred_at <= p.occurred_at:
                newest[key] = p
        # the program's rates are read under its lock (shared): a program change, which
        # re-ranks the store's products, waits for this batch or this batch waits for it
        programs = await self.programs.locked_histories(
            session, {s for s, _ in newest}, shared=True
        )
        rows: list[dict[str, Any]] = []
        for (store, product), p in sorted(newest.items()):
            state = programs[store].current()
            rate = state.rate_for(product, p.category_id)
            main = product in state.main_products
            rows.append(
                {
                    "store_id": store,
                    "product_id": product,
                    "category_id": p.category_id,
                    "title": p.title,
                    "price_minor": to_minor(p.price, p.currency),
                    "currency": p.currency,
                    "updated_at": p.occurred_at,
                    "in_program": state.joined,
                    "rate": rate,
                    "main": main,
                    "score": product_score(False, main, rate, 0),
                }
            )
        return rows


def _saw(
    visitors: Visitors,
    store: str,
    day: date,
    visitor: str,
    *,
    clicked: bool = False,
    viewed: bool = False,
) -> None:
    was = visitors.get((store, day, visitor), (False, False))
    visitors[(store, day, visitor)] = (was[0] or clicked, was[1] or viewed)
