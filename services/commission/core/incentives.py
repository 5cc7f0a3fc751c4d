"""Incentive rules, pure: the new-buyer bonus, performance tiers and caps of a store's program
(issue 23), exact to the currency's minor unit.

- **New-buyer bonus**: an order the storefront marks as the buyer's first on the marketplace
  earns ``extra_rate`` on top of each line's rate (:func:`line_rate`).
- **Performance tiers**: per currency, thresholds on an affiliate's qualifying sales with a
  store in a calendar month (UTC) — sales amounts (price × quantity − shipping, less what was
  refunded), never items or orders; the highest tier reached pays its ``extra_rate`` × the
  qualifying sales, once, as its own ledger transaction after the month has settled
  (:func:`tier_bonus`, :func:`month_settled`).
- **Caps**: per currency, at most ``per_order`` per order and ``per_affiliate_month`` per
  affiliate and calendar month of completion; the month's room is shared by completion time
  then order id (:func:`share_caps`), so that any arrival order, replay or worker count gives
  the same figures; a refund of a capped order reverses its share of what was paid.

No I/O, no clock reads (time is a parameter), no framework imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from services.commission.core.errors import InvalidCaps, InvalidRate, InvalidTiers
from shared.money import ZERO, fits_currency, is_currency, round_money

#: an extra rate is a rate: in [0, 0.9]
MAX_EXTRA_RATE: Final = Decimal("0.9")
#: a line's rate with its bonus never pays more than the line's base
MAX_LINE_RATE: Final = Decimal("1")
#: at most this many tiers per currency
MAX_TIERS: Final = 20


def _check_extra_rate(rate: Decimal) -> Decimal:
    if not rate.is_finite() or not (ZERO <= rate <= MAX_EXTRA_RATE):
        raise InvalidRate(f"an extra rate is a decimal in [0, {MAX_EXTRA_RATE}]", rate=str(rate))
    return rate


@dataclass(frozen=True, slots=True)
class Tier:
    """Reached once the month's qualifying sales are at least ``start``; pays ``extra_rate``
    × all of them (not only the part above ``start``)."""

    start: Decimal
    extra_rate: Decimal


@dataclass(frozen=True, slots=True)
class Caps:
    """Per currency: the most commission one order pays, and the most one affiliate earns with
    the store per calendar month of completion (tier bonuses included). A currency not named
    is not capped."""

    per_order: Mapping[str, Decimal] = field(default_factory=dict)
    per_affiliate_month: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class Incentives:
    """A store's incentives as in force at one instant (part of its program's state)."""

    new_buyer_rate: Decimal = ZERO
    tiers: Mapping[str, tuple[Tier, ...]] = field(default_factory=dict)
    caps: Caps = field(default_factory=Caps)


@dataclass(frozen=True, slots=True)
class NewBuyerSetting:
    extra_rate: Decimal


@dataclass(frozen=True, slots=True)
class TierSetting:
    """One currency's tier table (empty: that currency has no tiers any more)."""

    currency: str
    tiers: tuple[Tier, ...]


#: a change of the incentives, carried by a program operation
IncentiveSetting = NewBuyerSetting | TierSetting | Caps


def check_setting(setting: IncentiveSetting) -> IncentiveSetting:
    """``setting`` if the rules accept it, else the refusal: an extra rate outside ``[0, 0.9]``
    (:class:`InvalidRate`); a tier table of an unknown currency, more than 20 tiers, a
    threshold negative, finer than the currency's minor unit or not strictly increasing
    (:class:`InvalidTiers`); a cap of an unknown currency, not positive or finer than its
    minor unit (:class:`InvalidCaps`)."""
    if isinstance(setting, NewBuyerSetting):
        _check_extra_rate(setting.extra_rate)
    elif isinstance(setting, TierSetting):
        cur = setting.currency
        if not is_currency(cur):
            raise InvalidTiers("unknown currency", currency=cur[:8])
        if len(setting.tiers) > MAX_TIERS:
            raise InvalidTiers(f"at most {MAX_TIERS} tiers per currency", currency=cur)
        previous: Decimal | None = None
        for tier in setting.tiers:
            _check_extra_rate(tier.extra_rate)
            start = tier.start
            if not start.is_finite() or start < ZERO or not fits_currency(start, cur):
                raise InvalidTiers(
                    "a threshold is an amount of the currency, zero or more", start=str(start)
                )
            if previous is not None and start <= previous:
                raise InvalidTiers("thresholds must be strictly increasing", start=str(start))
            previous = start
    else:
        for name, caps in (
            ("per_order", setting.per_order),
            ("per_affiliate_month", setting.per_affiliate_month),
        ):
            for cur, amount in caps.items():
                if not is_currency(cur):
                    raise InvalidCaps("unknown currency", cap=name, currency=cur[:8])
                if not amount.is_finite() or amount <= ZERO or not fits_currency(amount, cur):
                    raise InvalidCaps(
                        "a cap is a positive amount of its currency", cap=name, amount=str(amount)
                    )
    return setting


def apply_setting(incentives: Incentives, setting: IncentiveSetting) -> Incentives:
    """The incentives after ``setting`` (checked by :func:`check_setting`): a new-buyer rate
    or the caps replace theirs; a tier table replaces its currency's (an empty one removes
    it)."""
    check_setting(setting)
    if isinstance(setting, NewBuyerSetting):
        return Incentives(setting.extra_rate, incentives.tiers, incentives.caps)
    if isinstance(setting, TierSetting):
        tiers = dict(incentives.tiers)
        if setting.tiers:
            tiers[setting.currency] = setting.tiers
        else:
            tiers.pop(setting.currency, None)
        return Incentives(incentives.new_buyer_rate, tiers, incentives.caps)
    return Incentives(incentives.new_buyer_rate, incentives.tiers, setting)


# --- new-buyer bonus ----------------------------------------------------------------------


def bonus_rate(incentives: Incentives, new_buyer: bool) -> Decimal:
    """The extra rate an order earns per line: the new-buyer rate in force at placement for
    an order marked as the buyer's first, else zero."""
    return incentives.new_buyer_rate if new_buyer else ZERO


def line_rate(rate: Decimal, incentives: Incentives, new_buyer: bool) -> Decimal:
    """A line's rate with the new-buyer bonus, never above 100%."""
    return min(MAX_LINE_RATE, rate + bonus_rate(incentives, new_buyer))


# --- performance tiers --------------------------------------------------------------------


def month_of(at: datetime) -> str:
    """The calendar month (UTC) of an instant, ``YYYY-MM``."""
    return at.astimezone(UTC).strftime("%Y-%m")


def month_start(month: str) -> datetime:
    """The first instant of the month ``YYYY-MM`` (UTC)."""
    year, mon = (int(p) for p in month.split("-"))
    return datetime(year, mon, 1, tzinfo=UTC)


def month_end(month: str) -> datetime:
    """The first instant after the month ``YYYY-MM`` (UTC)."""
    year, mon = (int(p) for p in month.split("-"))
    return datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MonthSale:
    """One completed, attributed order of an affiliate with a store, as the tier counts it."""

    order_id: str
    completed_at: datetime
    sales: Decimal  # price × quantity − shipping, summed over lines
    refunded: Decimal = ZERO  # refunded product amounts counted (before the bonus is posted)
    locks_at: datetime | None = None  # when its commission locks


def qualifying_sales(sales: Iterable[MonthSale], month: str) -> Decimal:
    """The month's qualifying sales: of the orders completed in ``month`` (UTC), their sales
    amounts less what was refunded (never below zero per order). Items and orders do not
    count, only amounts."""
    return sum(
        (max(ZERO, s.sales - s.refunded) for s in sales if month_of(s.completed_at) == month),
        ZERO,
    )


def tier_reached(tiers: Sequence[Tier], sales: Decimal) -> Tier | None:
    """The highest tier whose threshold ``sales`` reach (None: below the first)."""
    reached = None
    for tier in tiers:
        if sales >= tier.start:
            reached = tier
    return reached


def tier_bonus(tiers: Sequence[Tier], sales: Decimal, currency: str) -> Decimal:
    """The month's bonus before caps: the reached tier's extra rate × the qualifying sales,
    rounded half-up once."""
    tier = tier_reached(tiers, sales)
    return ZERO if tier is None else round_money(sales * tier.extra_rate, currency)


def month_settled(month: str, sales: Iterable[MonthSale], now: datetime) -> bool:
    """Whether the month's tier bonus may be posted at ``now``: the month is over and every
    order completed in it has locked (nothing can change its facts any more). An order
    without a lock date (none known) keeps the month open."""
    if now < month_end(month):
        return False
    return all(
        s.locks_at is not None and now >= s.locks_at
        for s in sales
        if month_of(s.completed_at) == month
    )


@dataclass(frozen=True, slots=True)
class TierProgress:
    """Where an affiliate stands in one currency's tiers for a month."""

    currency: str
    orders: int  # orders completed in the month (counted for information only)
    sales: Decimal  # qualifying sales
    tier: Tier | None  # the highest reached
    next_tier: Tier | None  # the next one, if any
    bonus: Decimal  # before caps
    capped_bonus: Decimal  # under the month's cap, after the month's orders
    settled: bool  # the month is over and all its orders locked: the bonus is final


def tier_progress(
    currency: str,
    tiers: Sequence[Tier],
    sales: Sequence[MonthSale],
    month: str,
    now: datetime,
    paid_in_month: Decimal = ZERO,
    per_month: Decimal | None = None,
) -> TierProgress:
    """The month's tier standing of one affiliate with one store in ``currency``: the
    qualifying sales of ``sales`` (its orders of that currency), the tier reached and the one
    after, the bonus before and after the month's cap, and whether it is final."""
    total = qualifying_sales(sales, month)
    reached = tier_reached(tiers, total)
    bonus = tier_bonus(tiers, total, currency)
    return TierProgress(
        currency,
        sum(1 for s in sales if month_of(s.completed_at) == month),
        total,
        reached,
        next((t for t in tiers if t.start > total), None),
        bonus,
        capped_tier_bonus(bonus, paid_in_month, per_month),
        month_settled(month, sales, now),
    )


def tier_bonus_key(store_id: str, affiliate_id: str, month: str, currency: str) -> str:
    """The bonus's ledger transaction key: one per store, affiliate, month and currency."""
    return f"tier_bonus:{store_id}:{affiliate_id}:{month}:{currency}"


# --- caps ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapClaim:
    """An order's claim on its affiliate's month: its commission before caps (bonus
    included) and what its refunds reverse of it, uncapped (at most the commission)."""

    order_id: str
    completed_at: datetime
    commission: Decimal
    reversed: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Capped:
    """What an order pays under the caps: ``commission`` of its uncapped commission (``cut``
    is the rest, shown as ``capped``) and ``reversed`` of that by its refunds."""

    order_id: str
    commission: Decimal
    cut: Decimal
    reversed: Decimal

    @property
    def net(self) -> Decimal:
        return self.commission - self.reversed


def capped_reversal(paid: Decimal, commission: Decimal, reversed_: Decimal, cur: str) -> Decimal:
    """What refunds reverse of a capped order: the refunded share of what was paid,
    ``paid × reversed / commission`` rounded half-up; a full refund reverses exactly what was
    paid, never more."""
    if commission <= ZERO or reversed_ <= ZERO:
        return ZERO
    if reversed_ >= commission:
        return paid
    return min(paid, round_money(paid * reversed_ / commission, cur))


def share_caps(
    claims: Iterable[CapClaim],
    currency: str,
    per_order: Decimal | None,
    per_month: Decimal | None,
) -> dict[str, Capped]:
    """Each order's capped commission in one affiliate's month with one store and currency.

    In completion order (ties by order id): an order pays its commission, at most
    ``per_order``, at most what the month's earlier orders left of ``per_month``. Room is
    taken by what was paid at completion; a later refund does not give it back (an order's
    figures never change because another order was refunded). The result depends on the set
    of claims only, not their order; an order's figures depend only on the orders before it.
    """
    room = per_month
    out: dict[str, Capped] = {}
    for claim in sorted(claims, key=lambda c: (c.completed_at, c.order_id)):
        paid = claim.commission
        if per_order is not None:
            paid = min(paid, per_order)
        if room is not None:
            paid = max(ZERO, min(paid, room))
            room -= paid
        out[claim.order_id] = Capped(
            claim.order_id,
            paid,
            claim.commission - paid,
            capped_reversal(paid, claim.commission, claim.reversed, currency),
        )
    return out


def month_allowance(
    commission: Decimal, per_month: Decimal | None, used: Decimal
) -> Decimal | None:
    """What an order whose completion is posted now may pay of its affiliate's month with the
    store (``used``: what the month's earlier postings took): its commission (after the
    per-order cap), at most the room left of ``per_month``. The room is taken in the order the
    completions are posted (one affiliate-month's postings are serialised by a row lock), so
    a late-completing earlier order never changes what was already posted. None: no cap."""
    if per_month is None:
        return None
    return max(ZERO, min(commission, per_month - used))


def capped_tier_bonus(bonus: Decimal, paid_in_month: Decimal, per_month: Decimal | None) -> Decimal:
    """A tier bonus under the month's cap (caps apply after bonuses): at most what the month's
    orders left of it."""
    if per_month is None:
        return bonus
    return max(ZERO, min(bonus, per_month - paid_in_month))


# --- records ------------------------------------------------------------------------------


def incentives_json(incentives: Incentives) -> dict[str, Any]:
    """The incentives as the operation record and ``GET …/program`` show them."""
    caps = incentives.caps
    return {
        "new_buyer": {"extra_rate": str(incentives.new_buyer_rate)},
        "tiers": {
            cur: [{"from": str(t.start), "extra_rate": str(t.extra_rate)} for t in tiers]
            for cur, tiers in sorted(incentives.tiers.items())
        },
        "caps": {
            "per_order": {k: str(v) for k, v in sorted(caps.per_order.items())},
            "per_affiliate_month": {k: str(v) for k, v in sorted(caps.per_affiliate_month.items())},
        },
    }


def setting_json(setting: IncentiveSetting) -> dict[str, Any]:
    """A change as stored with its program operation (read back by :func:`setting_of`)."""
    if isinstance(setting, NewBuyerSetting):
        return {"new_buyer": str(setting.extra_rate)}
    if isinstance(setting, TierSetting):
        return {
            "currency": setting.currency,
            "tiers": [[str(t.start), str(t.extra_rate)] for t in setting.tiers],
        }
    return {
        "per_order": {k: str(v) for k, v in setting.per_order.items()},
        "per_affiliate_month": {k: str(v) for k, v in setting.per_affiliate_month.items()},
    }


def setting_of(data: Mapping[str, Any]) -> IncentiveSetting:
    """The change :func:`setting_json` stored."""
    if "new_buyer" in data:
        return NewBuyerSetting(Decimal(data["new_buyer"]))
    if "tiers" in data:
        return TierSetting(
            data["currency"], tuple(Tier(Decimal(s), Decimal(r)) for s, r in data["tiers"])
        )
    return Caps(
        {k: Decimal(v) for k, v in data["per_order"].items()},
        {k: Decimal(v) for k, v in data["per_affiliate_month"].items()},
    )
