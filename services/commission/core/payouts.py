"""Payout runs, pure: what of an affiliate's earnings is payable, whether a run pays the
affiliate or carries it forward (and why), the conversion into the affiliate's currency, and
the payout's one ledger transaction.

The *payable* decision is :func:`held_why`, one function over one order's earning: a rule that
holds money back (the holding period today; a program's lock or a hold later) is one more
branch there, with its reason, and every caller — single payouts, runs, the affiliate's
preview of its next run — follows it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from services.commission.core.errors import InvalidFxRate
from services.commission.core.holds import Hold, holding
from services.commission.core.ledger import (
    LedgerTxn,
    Posting,
    TxnKind,
    affiliate_account,
    payout_account,
)
from shared.money import ZERO, is_currency, round_money

#: the platform minimum of a currency finance has not set (major units)
DEFAULT_MINIMUM: Final = Decimal("10.00")
#: how a conversion rounds, as the payout states it
ROUNDING: Final = "half-up to the minor unit of the payout currency, per source currency"
#: the most decimals a recorded rate may have
RATE_DIGITS: Final = 10


def fx_account(base: str, quote: str) -> str:
    """The account a conversion from ``base`` into ``quote`` passes through: it takes the
    ``base`` amount and gives the ``quote`` amount, so each currency's ledger sums to zero."""
    return f"fx:{base}/{quote}"


def pair(base: str, quote: str) -> str:
    return f"{base}/{quote}"


def parse_rates(raw: Mapping[str, Decimal]) -> dict[tuple[str, str], Decimal]:
    """``{"EUR/USD": 1.0843}`` as ``{("EUR", "USD"): 1.0843}``; :class:`InvalidFxRate` for a
    key that is not two distinct ISO 4217 codes, or a rate that is not positive, finite and at
    most :data:`RATE_DIGITS` decimals."""
    out: dict[tuple[str, str], Decimal] = {}
    for key, rate in raw.items():
        base, _, quote = key.partition("/")
        if not (is_currency(base) and is_currency(quote) and base != quote):
            raise InvalidFxRate(pair=key)
        exponent = rate.as_tuple().exponent
        if not (
            rate.is_finite()
            and rate > ZERO
            and isinstance(exponent, int)
            and -exponent <= RATE_DIGITS
            and rate < Decimal(10) ** 12
        ):
            raise InvalidFxRate(pair=key, rate=str(rate))
        out[(base, quote)] = rate
    return out


# -- what is payable ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Earning:
    """What one order credited an affiliate in one currency (its commission less its
    reversals), posted up to the run's ``up_to``."""

    currency: str
    amount: Decimal
    #: when the order completed (its commission is posted then)
    completed_at: datetime | None
    #: the order's store and placement (a hold covers a store; the lock period in force at
    #: the placement decides the locking date)
    store_id: str = ""
    placed_at: datetime | None = None
    #: the order's locking date, when the rule needs it (``PayableRule.requires_lock``)
    locks_at: datetime | None = None


class HeldWhy(StrEnum):
    """Why earned money is not payable yet."""

    #: the order completed less than the holding period ago
    HOLDING_PERIOD = "holding_period"
    #: an active hold covers the order's store (docs/program-controls.md)
    HELD = "held"
    #: payouts need the lock (``ALLIANCE_PAYOUT_REQUIRES_LOCK``) and the order is not locked
    NOT_LOCKED = "not_locked"


@dataclass(frozen=True, slots=True)
class PayableRule:
    """What decides when an earning may be paid: the holding period, the affiliate's active
    holds, and whether payouts need the order's locking date to have passed."""

    holding: timedelta
    requires_lock: bool = False
    #: the affiliate's holds (only an active one covering the order's store holds it)
    holds: tuple[Hold, ...] = ()
    affiliate_id: str | None = None


def held_why(earning: Earning, now: datetime, rule: PayableRule) -> HeldWhy | None:
    """Why the earning is held back at ``now``, or None when it is payable. The one payable
    decision of Alliance: a hold first (finance's word), then the lock when payouts need it,
    then the holding period."""
    if holding(rule.holds, earning.store_id, rule.affiliate_id) is not None:
        return HeldWhy.HELD
    if rule.requires_lock and (earning.locks_at is None or earning.locks_at > now):
        return HeldWhy.NOT_LOCKED
    if earning.completed_at is None or earning.completed_at > now - rule.holding:
        return HeldWhy.HOLDING_PERIOD
    return None


@dataclass(frozen=True)
class Balance:
    """An affiliate's money per currency: ``payable`` (payable earnings less every payout so
    far; negative after a claw-back larger than what was left) and ``held`` per reason."""

    payable: dict[str, Decimal] = field(default_factory=dict)
    held: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.payable.values()) and not any(
            v for per in self.held.values() for v in per.values()
        )


def balance(
    earnings: Iterable[Earning], paid: Mapping[str, Decimal], now: datetime, rule: PayableRule
) -> Balance:
    """The affiliate's :class:`Balance` at ``now``: ``paid`` is per currency what payouts took
    from its account so far (negative, as posted)."""
    payable: dict[str, Decimal] = {}
    held: dict[str, dict[str, Decimal]] = {}
    for e in earnings:
        why = held_why(e, now, rule)
        if why is None:
            payable[e.currency] = payable.get(e.currency, ZERO) + e.amount
        else:
            per = held.setdefault(why.value, {})
            per[e.currency] = per.get(e.currency, ZERO) + e.amount
    for currency, amount in paid.items():
        payable[currency] = payable.get(currency, ZERO) + amount
    return Balance(
        {c: v for c, v in sorted(payable.items()) if v != ZERO},
        {w: {c: v for c, v in sorted(per.items()) if v != ZERO} for w, per in sorted(held.items())},
    )


# -- paid or carried forward ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayeeTerms:
    """The affiliate's payout settings as a run needs them."""

    currency: str
    minimum: Decimal


@dataclass(frozen=True, slots=True)
class Conversion:
    base: str
    quote: str
    rate: Decimal
    base_amount: Decimal
    #: ``base_amount × rate``, rounded by :data:`ROUNDING`
    quote_amount: Decimal


@dataclass(frozen=True)
class PayoutPlan:
    """A payout a run makes: ``amount`` in ``currency``, from ``source_amounts`` (each
    positive payable balance), converted by ``conversions``."""

    currency: str
    amount: Decimal
    source_amounts: dict[str, Decimal]
    conversions: tuple[Conversion, ...]
    minimum: Decimal


class CarryWhy(StrEnum):
    """Why a run carries an affiliate forward instead of paying it."""

    NO_PAYOUT_SETTINGS = "no_payout_settings"
    NOTHING_PAYABLE = "nothing_payable"  # all held back, or a claw-back left nothing positive
    BELOW_MINIMUM = "below_minimum"
    FX_RATE_MISSING = "fx_rate_missing"


@dataclass(frozen=True)
class Carry:
    why: CarryWhy
    #: the payout currency and the balance in it (payable, converted), when known
    currency: str | None
    balance: Decimal | None
    minimum: Decimal | None = None
    missing_rates: tuple[str, ...] = ()


def minimum_of(terms: PayeeTerms, platform_minimum: Decimal) -> Decimal:
    """The affiliate's own minimum, never below the platform's for its currency."""
    return max(terms.minimum, platform_minimum)


def decide(
    bal: Balance,
    terms: PayeeTerms | None,
    platform_minimum: Decimal,
    rates: Mapping[tuple[str, str], Decimal],
) -> PayoutPlan | Carry | None:
    """Pay or carry. Each positive payable currency is paid (a negative one — a claw-back
    larger than what was left — is not netted against another currency: it carries forward);
    a currency other than the payee's is converted at ``rates[(it, payee's)]`` and rounded by
    :data:`ROUNDING`, never at a default rate; the total must reach :func:`minimum_of`. None
    when the affiliate has nothing at all (nothing payable, nothing held)."""
    if bal.empty:
        return None
    if terms is None:
        return Carry(CarryWhy.NO_PAYOUT_SETTINGS, None, None)
    target = terms.currency
    minimum = minimum_of(terms, platform_minimum)
    positive = {c: v for c, v in sorted(bal.payable.items()) if v > ZERO}
    missing = tuple(pair(c, target) for c in positive if c != target and (c, target) not in rates)
    if missing:
        return Carry(CarryWhy.FX_RATE_MISSING, target, None, minimum, missing)
    conversions = tuple(
        Conversion(c, target, rates[(c, target)], v, round_money(v * rates[(c, target)], target))
        for c, v in positive.items()
        if c != target
    )
    amount = positive.get(target, ZERO) + sum((x.quote_amount for x in conversions), ZERO)
    if not positive:
        return Carry(CarryWhy.NOTHING_PAYABLE, target, amount, minimum)
    if amount < minimum:
        return Carry(CarryWhy.BELOW_MINIMUM, target, amount, minimum)
    return PayoutPlan(target, amount, positive, conversions, minimum)


def payout_txn(key: str, affiliate_id: str, plan: PayoutPlan) -> LedgerTxn:
    """The payout's one ledger transaction: each source amount leaves the affiliate's account
    in its currency; one not in the payout currency passes through its pair's FX account (in
    in the source currency, out in the payout's), so each currency's postings sum to zero; the
    payout's amount reaches the payouts account."""
    target = plan.currency
    postings: list[Posting] = []
    for currency, amount in plan.source_amounts.items():
        postings.append(Posting(affiliate_account(affiliate_id), -amount, currency))
    for x in plan.conversions:
        postings.append(Posting(fx_account(x.base, x.quote), x.base_amount, x.base))
        postings.append(Posting(fx_account(x.base, x.quote), -x.quote_amount, x.quote))
    postings.append(Posting(payout_account(), plan.amount, target))
    return LedgerTxn(key, TxnKind.PAYOUT, None, target, tuple(postings))
