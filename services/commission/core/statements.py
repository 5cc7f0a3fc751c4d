"""Statement rules, pure: what a month is, and a store's statement totals from the postings
on its account (the store's side is negative: it owes)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from services.commission.core.errors import InvalidPeriod
from services.commission.core.ledger import TxnKind
from shared.money import from_minor

_PERIOD = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII digits only (\d takes any script's)
FIRST_YEAR, LAST_YEAR = 2000, 2100


def period_range(period: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a ``YYYY-MM`` month (UTC), exactly that form, years 2000 to 2100;
    else :class:`~services.commission.core.errors.InvalidPeriod`."""
    match = _PERIOD.fullmatch(period)
    year, month = (int(match[1]), int(match[2])) if match else (0, 0)
    if not (FIRST_YEAR <= year <= LAST_YEAR and 1 <= month <= 12):
        raise InvalidPeriod(period=period)
    start = datetime(year, month, 1, tzinfo=UTC)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``(lo, hi)``: the UTC midnights with ``start <= lo <= hi <= end`` such that
    ``[lo, hi)`` holds every whole UTC day of ``[start, end)``; ``(end, end)`` when there is
    none. What a per-day rollup answers; ``[start, lo)`` and ``[hi, end)`` are the partial
    days at the edges."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    lo = datetime.combine(start.date(), time(), UTC)
    if lo < start:
        lo += timedelta(days=1)
    hi = datetime.combine(end.date(), time(), UTC)
    return (lo, hi) if lo < hi else (end, end)


#: a partial day longer than this is read as its whole day less the rest of it
HALF_DAY = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Spans:
    """How a per-day rollup answers ``[start, end)``: the sum of its days ``[first, last)``
    plus, for each ``(a, b, sign)`` of ``scans``, ``sign`` times what the rows themselves sum
    over ``[a, b)``. No scan is longer than half a day, so none reads more than half a day's
    rows, however many the range holds."""

    first: date
    last: date
    scans: tuple[tuple[datetime, datetime, int], ...]


def spans(start: datetime, end: datetime) -> Spans:
    """The :class:`Spans` of ``[start, end)`` (``start < end``): its whole UTC days from the
    rollup; a partial day of at most half a day read as it is, a longer one as its whole day
    from the rollup less the rest of it read from the rows."""
    lo, hi = whole_days(start, end)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if lo == hi:  # no whole day: the range's part in each day it touches
        midnight = datetime.combine(end.date(), time(), UTC)
        pieces = [(start, midnight), (midnight, end)] if start < midnight else [(start, end)]
        lo = hi = midnight
    else:
        pieces = [(start, lo), (hi, end)]
    first, last = lo.date(), hi.date()
    scans: list[tuple[datetime, datetime, int]] = []
    for a, b in pieces:
        if a >= b:
            continue
        if b - a <= HALF_DAY:
            scans.append((a, b, 1))
            continue
        day = datetime.combine(a.date(), time(), UTC)
        first, last = min(first, day.date()), max(last, day.date() + timedelta(days=1))
        scans += [(x, y, -1) for x, y in ((day, a), (b, day + timedelta(days=1))) if x < y]
    return Spans(first, last, tuple(scans))


@dataclass(frozen=True, slots=True)
class StoreTotals:
    """One currency of a statement: commission charged (positive: owed by the store) and
    reversed (positive: given back), each with its number of transactions."""

    currency: str
    orders_charged: int
    commission: Decimal
    refunds: int
    reversed: Decimal

    @property
    def net(self) -> Decimal:
        return self.commission - self.reversed


def statement_totals(postings: Iterable[tuple[str, str, int, int]]) -> list[StoreTotals]:
    """Per currency, in currency order, from ``(currency, kind, count, minor sum)`` of the
    store account's postings. The store's side of a commission is negative (it owes), of a
    reversal positive (owed less): both are shown as positive amounts. Other kinds (none
    post on a store's account today) are left out."""
    sums: dict[str, list[int]] = {}
    for currency, kind, count, minor in postings:
        t = sums.setdefault(currency, [0, 0, 0, 0])  # commission, orders, reversed, refunds
        if kind == TxnKind.COMMISSION:
            t[0] -= minor
            t[1] += count
        elif kind == TxnKind.REVERSAL:
            t[2] += minor
            t[3] += count
    return [
        StoreTotals(c, t[1], from_minor(t[0], c), t[3], from_minor(t[2], c))
        for c, t in sorted(sums.items())
    ]
