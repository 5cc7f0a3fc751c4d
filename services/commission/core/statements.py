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


DAY, HOUR = timedelta(days=1), timedelta(hours=1)
#: a piece of an hour longer than this is read as its whole hour less the rest of it
HALF_HOUR = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Spans:
    """How the per-day and per-hour rollups answer ``[start, end)``: the sum of the day
    rollup's days ``[first, last)``, plus the hour rollup's hours in each ``[a, b)`` of
    ``hours``, plus, for each ``(a, b, sign)`` of ``scans``, ``sign`` times what the rows
    themselves sum over ``[a, b)``. No scan is longer than half an hour and there are at most
    four, so a range reads at most two hours of rows (at its two edges), whatever the
    subject's order count; the rollups' rows read are at most days × keys plus 48 hours ×
    keys."""

    first: date
    last: date
    hours: tuple[tuple[datetime, datetime], ...]
    scans: tuple[tuple[datetime, datetime, int], ...]


def _floor(t: datetime, unit: timedelta) -> datetime:
    if unit == DAY:
        return datetime.combine(t.date(), time(), UTC)
    return t.replace(minute=0, second=0, microsecond=0)


def _cover(
    a: datetime, b: datetime, unit: timedelta
) -> tuple[tuple[datetime, datetime] | None, list[tuple[datetime, datetime]]]:
    """The whole units inside ``[a, b)`` (None when there is none) and the rest of it, each
    piece of the rest inside one unit."""
    lo = _floor(a, unit)
    lo = lo if lo == a else lo + unit
    hi = _floor(b, unit)
    if lo < hi:
        return (lo, hi), [(x, y) for x, y in ((a, lo), (hi, b)) if x < y]
    mid = _floor(b, unit)
    return None, [(x, y) for x, y in ((a, mid), (mid, b)) if x < y] if a < mid else [(a, b)]


def _merged(ranges: list[tuple[datetime, datetime]]) -> tuple[tuple[datetime, datetime], ...]:
    out: list[tuple[datetime, datetime]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return tuple(out)


def spans(start: datetime, end: datetime) -> Spans:
    """The :class:`Spans` of ``[start, end)`` (``start < end``): its whole UTC days from the
    day rollup; the whole hours of the partial days at its edges from the hour rollup; a
    piece of an hour of at most half an hour read from the rows as it is, a longer one as its
    whole hour from the hour rollup less the rest of it read from the rows."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    days, pieces = _cover(start, end, DAY)
    first, last = (days[0].date(), days[1].date()) if days else (end.date(), end.date())
    hours: list[tuple[datetime, datetime]] = []
    scans: list[tuple[datetime, datetime, int]] = []
    for a, b in pieces:
        whole, rest = _cover(a, b, HOUR)
        if whole:
            hours.append(whole)
        for x, y in rest:
            if y - x <= HALF_HOUR:
                scans.append((x, y, 1))
                continue
            hour = _floor(x, HOUR)
            hours.append((hour, hour + HOUR))
            scans += [(p, q, -1) for p, q in ((hour, x), (y, hour + HOUR)) if p < q]
    return Spans(first, last, _merged(hours), tuple(scans))


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
