"""The pure rules of the reports: ranges and buckets of days, shares, per-refund reversals,
what an affiliate order and an affiliate page view are, product ranking. No I/O; the report
queries, the reports consumer and the product channel call these."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Final

from services.commission.core.commission import OrderFacts, OrderStatus, Refund, compute_order
from services.commission.core.errors import EmptyRange, OutOfRange, RangeTooLong
from services.commission.core.program import ProgramHistory
from shared.money import ZERO
from shared.policy import ExitPolicy

#: The range a report covers when none is given: the last 90 days, today included.
DEFAULT_DAYS = 90
#: The longest range one request may ask for (a year and a bit: a year-on-year quarter).
MAX_DAYS = 400


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO weeks, Monday first
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class DayRange:
    """UTC days ``first`` to ``last``, both included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), UTC)

    @property
    def end(self) -> datetime:
        """The instant after the last day (exclusive)."""
        return datetime.combine(self.last + timedelta(days=1), time(), UTC)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def day_range(first: date | None, last: date | None, today: date) -> DayRange:
    """The range a report asks for: ``to`` defaults to today, ``from`` to 89 days before it."""
    last = last or today
    if last >= date(9999, 1, 1):
        raise OutOfRange()
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise EmptyRange()
    if (last - first).days + 1 > MAX_DAYS:
        raise RangeTooLong(f"a report covers at most {MAX_DAYS} days")
    return DayRange(first, last)


# -- what the reports count --------------------------------------------------------------------

#: The statuses of an affiliate order: a chargeable order (attributed, its store in the program
#: when it was placed) that was not cancelled. Repositories build their SQL from this.
AFFILIATE_ORDER_STATUSES: Final = (OrderStatus.PLACED, OrderStatus.COMPLETED)


def is_affiliate_order(chargeable: bool, status: OrderStatus) -> bool:
    """Whether an order (or one of its lines) counts as an affiliate order in the reports and
    the product channel's sales history."""
    return chargeable and status in AFFILIATE_ORDER_STATUSES


def is_affiliate_view(last_click: datetime | None, viewed_at: datetime, window: timedelta) -> bool:
    """Whether a page view counts as an affiliate page view: its visitor's last affiliate
    click (not suspicious) on the store is at most ``window`` before the view. Both ends are
    included, as in the attribution window (``placed_at - window <= click <= placed_at``): a
    view exactly ``window`` after the click counts, as an order placed then would be
    attributed."""
    return last_click is not None and last_click <= viewed_at <= last_click + window


def bucket_of(day: date, granularity: Granularity) -> date:
    """The first day of the bucket ``day`` falls in."""
    if granularity is Granularity.DAY:
        return day
    if granularity is Granularity.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def buckets(r: DayRange, granularity: Granularity) -> list[date]:
    """Every bucket the range touches, in order, each named by its first day (the first bucket
    of a week or month may begin before ``r.first``: it then holds only the days in range)."""
    out: list[date] = []
    day = r.first
    while day <= r.last:
        b = bucket_of(day, granularity)
        if not out or out[-1] != b:
            out.append(b)
        day += timedelta(days=1)
    return out


def single_days(r: DayRange, granularity: Granularity) -> dict[date, date]:
    """The buckets of the range that hold one day of it, each with that day: their distinct
    visitors are exact (:data:`VISITOR_SKETCH_ERROR`)."""
    held: dict[date, list[date]] = {}
    day = r.first
    while day <= r.last:
        held.setdefault(bucket_of(day, granularity), []).append(day)
        day += timedelta(days=1)
    return {b: days[0] for b, days in held.items() if len(days) == 1}


# -- distinct visitors over more than one day --------------------------------------------------

#: The HyperLogLog sketch of a (store, day)'s visitors (``postgresql-hll``): 2^12 registers of
#: 5 bits (2.5 kB once dense); up to 320 visitors a set of hashes (exact).
VISITOR_SKETCH_LOG2M: Final = 12
VISITOR_SKETCH_REGWIDTH: Final = 5
#: The relative standard error of distinct visitors over more than one day: 1.04 / sqrt(2^12),
#: 1.625%; three of it (4.9%) bounds 99.7% of estimates. A single day's count is exact.
VISITOR_SKETCH_ERROR: Final = 1.04 / math.sqrt(2**VISITOR_SKETCH_LOG2M)


# -- what the report queries return ----------------------------------------------------------


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
class TransactionFilter:
    product_id: str | None = None
    keyword: str | None = None
    order_id: str | None = None
    type: str | None = None  # order | refund | adjustment | None: all
    #: an adjustment reason (docs/program-controls.md): only adjustments with it
    reason: str | None = None


def share(part: int, whole: int) -> Decimal | None:
    """``part / whole`` to four places, half up; None when there is no whole."""
    if whole == 0:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def refund_reversals(
    facts: OrderFacts, program: ProgramHistory, policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM
) -> dict[tuple[str, int], Decimal]:
    """The commission each refund item reverses, per (refund id, item position): refunds in
    time order and their items in order, each taking what the order's reversal grows by when
    it is added (what the ledger posts per refund once the order completed; before that, what
    it takes off the estimate). Sums to ``compute_order(...).reversed``."""
    known: list[Refund] = []
    before = ZERO
    out: dict[tuple[str, int], Decimal] = {}
    for refund in sorted(facts.refunds, key=lambda r: (r.occurred_at, r.refund_id)):
        for n in range(len(refund.items)):
            partial = replace(refund, items=refund.items[: n + 1])
            total = compute_order(facts, program, policy, refunds=[*known, partial]).reversed
            out[(refund.refund_id, n)] = total - before
            before = total
        known.append(refund)
    return out


# -- the affiliate product channel's ranking -------------------------------------------------

#: a product is hot when it is among this many of its store's best sellers to affiliates
HOT_TOP = 20
HOT_POINTS = Decimal(30)
MAIN_POINTS = Decimal(10)
RATE_POINTS = Decimal(100)  # per unit of rate: 6% gives 6 points
ORDER_POINTS = Decimal(10)  # per decade of affiliate orders in 90 days


def product_score(hot: bool, main: bool, rate: Decimal, orders_90d: int) -> Decimal:
    """The composite score the product channel ranks by (higher first; ties go to the higher
    rate, then store and product id)::

        30 if hot + 10 if a main product + 100 × rate + 10 × log10(1 + affiliate orders, 90 d)
    """
    history = Decimal(str(round(math.log10(1 + orders_90d), 4)))
    score = (
        (HOT_POINTS if hot else ZERO)
        + (MAIN_POINTS if main else ZERO)
        + RATE_POINTS * rate
        + ORDER_POINTS * history
    )
    return score.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def hot_products(orders_by_product: Mapping[str, int], top: int = HOT_TOP) -> set[str]:
    """A store's hot products: its ``top`` products by affiliate orders (at least one), ties
    broken by product id."""
    ranked = sorted(
        ((n, p) for p, n in orders_by_product.items() if n > 0), key=lambda x: (-x[0], x[1])
    )
    return {p for _, p in ranked[:top]}
