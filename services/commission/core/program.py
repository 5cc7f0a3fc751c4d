"""Program rules, pure: a store's operations in time order, folded into the state in force
at any instant (join/exit locks, rates, main products, the attribution window, the coupon
policy); coupon codes and their rules."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from itertools import pairwise
from typing import Any, Final

from services.commission.core.errors import (
    AlreadyJoined,
    CouponTaken,
    ExitTooEarly,
    InvalidCouponCode,
    InvalidLockPeriod,
    InvalidRate,
    InvalidValidity,
    InvalidWindow,
    NotJoined,
    OutOfOrder,
    RejoinTooEarly,
    TooManyMainProducts,
)
from services.commission.core.incentives import (
    Caps,
    Incentives,
    IncentiveSetting,
    NewBuyerSetting,
    TierSetting,
    apply_setting,
    incentives_json,
)
from shared.coupons import CouponPolicy, coupon_key, is_coupon_code
from shared.partners import Enrollment
from shared.privacy import Consent

DEFAULT_RATE: Final = Decimal("0.06")
MIN_RATE: Final = Decimal("0")
MAX_RATE: Final = Decimal("0.9")
MAX_MAIN_PRODUCTS: Final = 60
EXIT_LOCK: Final = timedelta(days=15)  # a store may exit no earlier than this after joining
REJOIN_LOCK: Final = timedelta(days=15)  # ...and may not rejoin for this long after exiting
MIN_WINDOW_DAYS: Final = 1  # a store's own attribution window, when it sets one
MAX_WINDOW_DAYS: Final = 30
DEFAULT_LOCK_DAYS: Final = 60  # a completed order's commission locks this long after completion
MIN_LOCK_DAYS: Final = 0
MAX_LOCK_DAYS: Final = 365


def check_rate(rate: Decimal) -> Decimal:
    """``rate`` if it is a finite decimal in ``[0, 0.9]``, else :class:`InvalidRate`."""
    if not rate.is_finite() or not (MIN_RATE <= rate <= MAX_RATE):
        raise InvalidRate(f"rate must be a decimal in [{MIN_RATE}, {MAX_RATE}]")
    return rate


class OpKind(StrEnum):
    JOIN = "join"
    EXIT = "exit"
    DEFAULT_RATE = "default_rate"
    CATEGORY_RATE = "category_rate"  # rate None: the category rate is removed
    MAIN_PRODUCT = "main_product"  # rate None: a main product without a rate of its own
    UNMAIN_PRODUCT = "unmain_product"
    ATTRIBUTION_WINDOW = "attribution_window"  # days None: back to the deployment's default
    COUPON_POLICY = "coupon_policy"  # policy: off | coupon_wins | click_wins
    COUPON = "coupon"  # a code registered (or its validity changed): key, affiliate, validity
    DELETE_COUPON = "coupon_deleted"  # key: the code
    CONSENT = "consent"  # consent: not_required | required (the visitor cookie, docs/privacy.md)
    LOCK_PERIOD = "lock_period"  # days: the locking date's delay after completion (0 to 365)
    ENROLLMENT = "enrollment"  # enrollment: open | approval (who may promote, partner approval)
    BAN = "partner_ban"  # key: the affiliate banned (its orders placed from then on pay nothing)
    UNBAN = "partner_unban"  # key: the affiliate reinstated (approved again after a ban)
    NEW_BUYER = "new_buyer"  # incentive: the new-buyer bonus's extra rate (issue 23)
    TIERS = "tiers"  # incentive: one currency's performance tiers
    CAPS = "caps"  # incentive: the caps per order and per affiliate-month


#: the incentive operations and the setting each carries
INCENTIVE_OPS: Final[Mapping[OpKind, type[IncentiveSetting]]] = {
    OpKind.NEW_BUYER: NewBuyerSetting,
    OpKind.TIERS: TierSetting,
    OpKind.CAPS: Caps,
}


#: operations on single codes: recorded, but no part of the program's state (a store's codes
#: are kept apart, :class:`Coupon`), so the program's history is read without them
COUPON_OPS: Final = frozenset({OpKind.COUPON, OpKind.DELETE_COUPON})
#: operations made by a store's decisions on its partners (their routes are partner approval's,
#: ``services/commission/partners``): part of the state, as what an order pays follows a ban
PARTNER_OPS: Final = frozenset({OpKind.BAN, OpKind.UNBAN})


@dataclass(frozen=True, slots=True)
class Coupon:
    """A store's coupon code: orders placed in ``[valid_from, valid_to)`` (None: unbounded)
    with it go to ``affiliate_id`` under the program's coupon policy."""

    code: str  # as stored: :func:`shared.coupons.coupon_key`
    affiliate_id: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None


def check_coupon(coupon: Coupon, existing: Coupon | None) -> Coupon:
    """``coupon`` with its code in the stored form, when it may replace ``existing`` (the
    store's registration of that code, if any); else the refusal: a code's shape (1 to 64 of
    ``[A-Za-z0-9_-]``, :class:`InvalidCouponCode`), ``valid_from`` before ``valid_to``
    (:class:`InvalidValidity`), and a code names one affiliate until it is deleted
    (:class:`CouponTaken`)."""
    if not is_coupon_code(coupon.code):
        raise InvalidCouponCode(coupon_code=coupon.code[:80])
    if (
        coupon.valid_from is not None
        and coupon.valid_to is not None
        and coupon.valid_from >= coupon.valid_to
    ):
        raise InvalidValidity(
            valid_from=coupon.valid_from.isoformat(), valid_to=coupon.valid_to.isoformat()
        )
    if existing is not None and existing.affiliate_id != coupon.affiliate_id:
        raise CouponTaken(coupon_code=existing.code, affiliate_id=existing.affiliate_id)
    return replace(coupon, code=coupon_key(coupon.code))


@dataclass(frozen=True, slots=True)
class ProgramOp:
    """One accepted change to a store's program, effective from ``at`` (inclusive)."""

    kind: OpKind
    at: datetime
    key: str | None = None  # category id or product id
    rate: Decimal | None = None
    days: int | None = None  # attribution window
    policy: CouponPolicy | None = None  # coupon policy
    coupon: Coupon | None = None  # a code registered (COUPON)
    consent: Consent | None = None  # whether the visitor cookie needs consent (CONSENT)
    enrollment: Enrollment | None = None  # who may promote the store (ENROLLMENT)
    incentive: IncentiveSetting | None = None  # an incentive's new setting (INCENTIVE_OPS)


@dataclass(frozen=True)
class ProgramState:
    """A store's program as in force at one instant."""

    joined: bool = False
    joined_at: datetime | None = None
    exited_at: datetime | None = None
    default_rate: Decimal = DEFAULT_RATE
    category_rates: Mapping[str, Decimal] = field(default_factory=dict)
    main_products: Mapping[str, Decimal | None] = field(default_factory=dict)
    window_days: int | None = None  # None: the deployment's default window
    coupon_policy: CouponPolicy = CouponPolicy.OFF
    consent: Consent = Consent.NOT_REQUIRED
    #: an order placed under this state locks this many days after it completed
    lock_days: int = DEFAULT_LOCK_DAYS
    #: who may promote the store (partner approval, docs/partners.md)
    enrollment: Enrollment = Enrollment.OPEN
    #: the affiliates banned by the store: an order of theirs placed under this state pays
    #: nothing (kept apart from the other partner statuses, which change no commission)
    banned: frozenset[str] = frozenset()

    def pays_affiliate(self, affiliate_id: str | None) -> bool:
        """Whether an order attributed to ``affiliate_id`` placed under this state may earn:
        not when the store had banned the affiliate then."""
        return affiliate_id is None or affiliate_id not in self.banned

    #: the new-buyer bonus, tiers and caps in force (issue 23)
    incentives: Incentives = field(default_factory=Incentives)

    @property
    def exit_allowed_at(self) -> datetime | None:
        return self.joined_at + EXIT_LOCK if self.joined and self.joined_at else None

    @property
    def rejoin_allowed_at(self) -> datetime | None:
        return self.exited_at + REJOIN_LOCK if not self.joined and self.exited_at else None

    def rate_for(self, product_id: str, category_id: str | None) -> Decimal:
        """Main-product rate if set, else category rate, else the default."""
        main = self.main_products.get(product_id)
        if main is not None:
            return main
        if category_id is not None and category_id in self.category_rates:
            return self.category_rates[category_id]
        return self.default_rate


def apply_op(state: ProgramState, op: ProgramOp) -> ProgramState:
    """The state after ``op``, or a :class:`ProgramError` (of the case) if the rules refuse it.

    Rules: join only when out of the program and at least 15 days after the last exit; exit
    only when in and at least 15 days after joining; rate, main-product, window, coupon-policy
    and code registrations only while in the program (a code may be deleted at any time); rates
    in ``[0, 0.9]``; at most 60 main products; a window of 1 to 30 days; a lock period of 0 to
    365 days (set only while in the program, like a rate). Codes leave the state unchanged
    (:class:`Coupon`, :func:`check_coupon`). The enrollment mode and partner bans may change in
    or out of the program (a store may require approval before it joins).
    """
    if op.rate is not None:
        check_rate(op.rate)
    if op.kind is OpKind.LOCK_PERIOD:
        if op.days is None or not (MIN_LOCK_DAYS <= op.days <= MAX_LOCK_DAYS):
            raise InvalidLockPeriod(
                f"a lock period is {MIN_LOCK_DAYS} to {MAX_LOCK_DAYS} days", days=str(op.days)
            )
    elif op.days is not None and not (MIN_WINDOW_DAYS <= op.days <= MAX_WINDOW_DAYS):
        raise InvalidWindow(
            f"an attribution window is {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS} days",
            days=str(op.days),
        )
    if op.kind is OpKind.JOIN:
        if state.joined:
            raise AlreadyJoined()
        allowed = state.rejoin_allowed_at
        if allowed is not None and op.at < allowed:
            raise RejoinTooEarly(rejoin_allowed_at=allowed.isoformat())
        rate = op.rate if op.rate is not None else DEFAULT_RATE
        return replace(state, joined=True, joined_at=op.at, exited_at=None, default_rate=rate)
    if op.kind is OpKind.DELETE_COUPON:
        return state
    if op.kind is OpKind.ENROLLMENT:
        assert op.enrollment is not None
        return replace(state, enrollment=op.enrollment)
    if op.kind is OpKind.BAN:
        assert op.key is not None
        return replace(state, banned=state.banned | {op.key})
    if op.kind is OpKind.UNBAN:
        assert op.key is not None
        return replace(state, banned=state.banned - {op.key})
    if not state.joined:
        raise NotJoined()
    if op.kind is OpKind.EXIT:
        allowed = state.exit_allowed_at
        if allowed is not None and op.at < allowed:
            raise ExitTooEarly(exit_allowed_at=allowed.isoformat())
        return replace(state, joined=False, exited_at=op.at)
    if op.kind is OpKind.DEFAULT_RATE:
        if op.rate is None:
            raise InvalidRate("a default rate is required")
        return replace(state, default_rate=op.rate)
    if op.kind is OpKind.CATEGORY_RATE:
        assert op.key is not None
        categories = dict(state.category_rates)
        if op.rate is None:
            categories.pop(op.key, None)
        else:
            categories[op.key] = op.rate
        return replace(state, category_rates=categories)
    if op.kind is OpKind.MAIN_PRODUCT:
        assert op.key is not None
        mains = dict(state.main_products)
        if op.key not in mains and len(mains) >= MAX_MAIN_PRODUCTS:
            raise TooManyMainProducts(
                f"a store may have at most {MAX_MAIN_PRODUCTS} main products",
            )
        mains[op.key] = op.rate
        return replace(state, main_products=mains)
    if op.kind is OpKind.UNMAIN_PRODUCT:
        assert op.key is not None
        mains = dict(state.main_products)
        mains.pop(op.key, None)
        return replace(state, main_products=mains)
    if op.kind is OpKind.ATTRIBUTION_WINDOW:
        return replace(state, window_days=op.days)
    if op.kind is OpKind.COUPON_POLICY:
        assert op.policy is not None
        return replace(state, coupon_policy=op.policy)
    if op.kind is OpKind.COUPON:
        return state
    if op.kind is OpKind.CONSENT:
        assert op.consent is not None
        return replace(state, consent=op.consent)
    if op.kind is OpKind.LOCK_PERIOD:
        assert op.days is not None
        return replace(state, lock_days=op.days)
    if op.kind in INCENTIVE_OPS:
        if not isinstance(op.incentive, INCENTIVE_OPS[op.kind]):
            raise AssertionError(op.kind)
        return replace(state, incentives=apply_setting(state.incentives, op.incentive))
    raise AssertionError(op.kind)  # pragma: no cover - exhaustive


class _PrefixStates:
    """The states of a history's prefixes (``n`` ops applied), folded once each, as far as
    asked: an op that cannot apply raises where the fold reaches it, as a fold from scratch
    would."""

    def __init__(self, ops: tuple[ProgramOp, ...]) -> None:
        self.ops = ops
        self.states = [ProgramState()]

    def state(self, n: int) -> ProgramState:
        states = self.states
        while len(states) <= n:
            states.append(apply_op(states[-1], self.ops[len(states) - 1]))
        return states[n]


@dataclass(frozen=True)
class ProgramHistory:
    """A store's accepted operations in time order, queried at any instant."""

    ops: tuple[ProgramOp, ...] = ()

    def state_at(self, at: datetime) -> ProgramState:
        """The program in force at ``at``: every op with ``op.at <= at`` applied (those before
        the first later one). Each prefix's state is folded once per history: a batch asks
        this of every order."""
        return self._prefixes.state(self._applied_at(at))

    def _applied_at(self, at: datetime) -> int:
        """How many ops are in force at ``at``: those before the first op later than it."""
        if self._in_time_order:
            return bisect_right(self._times, at)
        return next((n for n, op in enumerate(self.ops) if op.at > at), len(self.ops))

    @cached_property
    def _times(self) -> list[datetime]:
        return [op.at for op in self.ops]

    @cached_property
    def _in_time_order(self) -> bool:
        times = self._times
        return all(a <= b for a, b in pairwise(times))

    @cached_property
    def _prefixes(self) -> _PrefixStates:
        return _PrefixStates(self.ops)

    def current(self) -> ProgramState:
        state = ProgramState()
        for op in self.ops:
            state = apply_op(state, op)
        return state

    def append(self, op: ProgramOp) -> ProgramHistory:
        """A new history with ``op`` accepted, or a :class:`ProgramError` (:class:`OutOfOrder`).

        Operations are appended in time order: ``op.at`` may not precede the last one.
        """
        if self.ops and op.at < self.ops[-1].at:
            raise OutOfOrder()
        apply_op(self.current(), op)
        return ProgramHistory((*self.ops, op))


def state_json(state: ProgramState) -> dict[str, Any]:
    """The state as the operation record keeps it (before and after each change)."""
    return {
        "joined": state.joined,
        "joined_at": state.joined_at.isoformat() if state.joined_at else None,
        "exited_at": state.exited_at.isoformat() if state.exited_at else None,
        "default_rate": str(state.default_rate),
        "category_rates": {k: str(v) for k, v in sorted(state.category_rates.items())},
        "main_products": {
            k: (str(v) if v is not None else None) for k, v in sorted(state.main_products.items())
        },
        "window_days": state.window_days,
        "coupon_policy": state.coupon_policy.value,
        "consent": state.consent.value,
        "lock_days": state.lock_days,
        "enrollment": state.enrollment.value,
        "incentives": incentives_json(state.incentives),
    }


def coupon_json(coupon: Coupon | None) -> dict[str, Any]:
    """A code as the operation record keeps it (before and after a code's change; ``{}``:
    no such code)."""
    if coupon is None:
        return {}
    return {
        "code": coupon.code,
        "affiliate_id": coupon.affiliate_id,
        "valid_from": coupon.valid_from.isoformat() if coupon.valid_from else None,
        "valid_to": coupon.valid_to.isoformat() if coupon.valid_to else None,
    }
