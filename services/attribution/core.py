"""The attribution rule, pure: no I/O, no clock, no framework.

For an order of store S placed by visitor V at ``placed_at``, a click is *eligible* when it is
on a link of S, by V, not marked suspicious, and ``placed_at - window <= occurred_at <=
placed_at`` (both ends inclusive). The order goes to the eligible click with the latest
``occurred_at``; ties go to the greater ``click_id``. No eligible click: organic.

Coupon codes (docs/coupons.md), under the program's coupon policy in force at
placement: a code is *valid* for the order when it is a code of the order's store (matched
case-insensitively) whose registration in force at ``placed_at`` names an affiliate and
``valid_from <= placed_at < valid_to`` (start included, end excluded; an open end is
unbounded; a code counts from its registration on and stops at its deletion). ``off``: clicks
only. ``coupon_wins``: a valid code attributes the order to its owner whatever the clicks.
``click_wins``: a valid code attributes the order only when no click is eligible.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Literal

from shared.coupons import CouponPolicy, coupon_key

DEFAULT_WINDOW: Final = timedelta(days=15)
#: the clicks a decision's explanation shows at most (the latest first)
EXPLAIN_SAMPLE: Final = 100


@dataclass(frozen=True, slots=True)
class Click:
    click_id: str
    store_id: str
    visitor_id: str
    affiliate_id: str
    occurred_at: datetime
    suspicious: bool = False
    link_code: str | None = None
    product_id: str | None = None
    sub_id: str | None = None


@dataclass(frozen=True)
class Windows:
    """One store's attribution window over time: ``default`` until its program sets one, then
    each change from its effective time on (inclusive); a change to None is the default again.
    The window that decides an order is the one in force when it was placed."""

    default: timedelta = DEFAULT_WINDOW
    changes: tuple[tuple[datetime, timedelta | None], ...] = ()  # in time order

    def at(self, when: datetime) -> timedelta:
        window = self.default
        for effective_at, change in self.changes:
            if effective_at > when:
                break
            window = change if change is not None else self.default
        return window

    @property
    def widest(self) -> timedelta:
        """The longest window the store has ever had (how far back a click may count)."""
        return max([self.default, *(w for _, w in self.changes if w is not None)])

    def with_change(self, effective_at: datetime, window: timedelta | None) -> Windows | None:
        """The history with a change at ``effective_at``, or None when that changes nothing
        (the same window already in force then, or a change already recorded at that time)."""
        if any(at == effective_at for at, _ in self.changes):
            return None
        before = self.at(effective_at)
        after = window if window is not None else self.default
        if before == after:
            return None
        return Windows(self.default, tuple(sorted((*self.changes, (effective_at, window)))))


@dataclass(frozen=True)
class Policies:
    """One store's coupon policy over time: ``off`` until its program sets one, then each
    change from its effective time on (inclusive). The policy in force at placement decides."""

    changes: tuple[tuple[datetime, CouponPolicy], ...] = ()  # in time order

    def at(self, when: datetime) -> CouponPolicy:
        policy = CouponPolicy.OFF
        for effective_at, change in self.changes:
            if effective_at > when:
                break
            policy = change
        return policy

    def with_change(self, effective_at: datetime, policy: CouponPolicy) -> Policies | None:
        """The history with a change at ``effective_at``, or None when that changes nothing
        (the same policy already in force then, or a change already recorded at that time)."""
        if any(at == effective_at for at, _ in self.changes) or self.at(effective_at) == policy:
            return None
        return Policies(tuple(sorted((*self.changes, (effective_at, policy)))))


@dataclass(frozen=True, slots=True)
class CouponVersion:
    """A code's registration from ``effective_at`` on: its owner (None: deleted then) and
    its validity (None ends: unbounded)."""

    effective_at: datetime
    affiliate_id: str | None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class Coupon:
    """A code that attributes an order to its owner."""

    code: str
    affiliate_id: str


@dataclass(frozen=True)
class CouponHistory:
    """One code of one store over time (``code`` as stored: :func:`coupon_key`)."""

    code: str
    versions: tuple[CouponVersion, ...] = ()  # in effective time order

    def valid_at(self, when: datetime) -> Coupon | None:
        """The code's grant for an order placed at ``when``, or None when not valid then:
        the registration in force at ``when`` (the latest with ``effective_at <= when``)
        names an owner and ``valid_from <= when < valid_to``."""
        current: CouponVersion | None = None
        for version in self.versions:
            if version.effective_at > when:
                break
            current = version
        if current is None or current.affiliate_id is None:
            return None
        if current.valid_from is not None and when < current.valid_from:
            return None
        if current.valid_to is not None and when >= current.valid_to:
            return None
        return Coupon(self.code, current.affiliate_id)

    def with_version(self, version: CouponVersion) -> CouponHistory | None:
        """The history with ``version``, or None when one is already recorded at its time."""
        if any(v.effective_at == version.effective_at for v in self.versions):
            return None
        ordered = sorted((*self.versions, version), key=lambda v: v.effective_at)
        return CouponHistory(self.code, tuple(ordered))


@dataclass(frozen=True, slots=True)
class OrderRef:
    order_id: str
    store_id: str
    visitor_id: str
    placed_at: datetime
    coupon_code: str | None = None  # as the buyer entered it

    @property
    def coupon_key(self) -> str | None:
        """The order's code in the form codes are registered in (None: no code)."""
        return coupon_key(self.coupon_code) if self.coupon_code else None


def coupon_for(order: OrderRef, codes: Mapping[tuple[str, str], CouponHistory]) -> Coupon | None:
    """The coupon that may attribute ``order``: its code, when that is a code of the
    order's store (``codes``: (store, code) → history) valid at placement; else None."""
    key = order.coupon_key
    if key is None:
        return None
    history = codes.get((order.store_id, key))
    return history.valid_at(order.placed_at) if history is not None else None


class Verdict(StrEnum):
    """Why a click did or did not win an order (the explain API shows these)."""

    WON = "won"
    EARLIER = "earlier_than_winner"
    OUTSIDE_WINDOW = "outside_window"
    AFTER_ORDER = "after_order"
    SUSPICIOUS = "suspicious"
    OTHER_STORE = "other_store"
    OTHER_VISITOR = "other_visitor"
    COUPON_WON = "coupon_won"  # eligible, but the order's coupon code attributed it


@dataclass(frozen=True, slots=True)
class Decision:
    order_id: str
    click: Click | None
    window_start: datetime
    window_end: datetime
    #: the coupon that attributed the order (then ``click`` is None)
    coupon: Coupon | None = None

    @property
    def affiliate_id(self) -> str | None:
        if self.coupon is not None:
            return self.coupon.affiliate_id
        return self.click.affiliate_id if self.click else None

    @property
    def rule(self) -> Literal["last_click", "organic", "coupon"]:
        if self.coupon is not None:
            return "coupon"
        return "last_click" if self.click else "organic"


def window_of(order: OrderRef, window: timedelta = DEFAULT_WINDOW) -> tuple[datetime, datetime]:
    """The inclusive ``[start, end]`` interval of click times that can win ``order``."""
    return order.placed_at - window, order.placed_at


def ineligibility(
    click: Click, order: OrderRef, window: timedelta = DEFAULT_WINDOW
) -> Verdict | None:
    """None when ``click`` is eligible for ``order``, else the first reason it is not."""
    if click.store_id != order.store_id:
        return Verdict.OTHER_STORE
    if click.visitor_id != order.visitor_id:
        return Verdict.OTHER_VISITOR
    if click.suspicious:
        return Verdict.SUSPICIOUS
    if click.occurred_at > order.placed_at:
        return Verdict.AFTER_ORDER
    if click.occurred_at < order.placed_at - window:
        return Verdict.OUTSIDE_WINDOW
    return None


def _rank(click: Click) -> tuple[datetime, str]:
    return click.occurred_at, click.click_id


def candidates(
    order: OrderRef,
    clicks: Iterable[Click],
    window: timedelta = DEFAULT_WINDOW,
    sample: int = EXPLAIN_SAMPLE,
) -> list[Click]:
    """The bounded input of a decision: of ``clicks`` (any number, any order, read once), the
    eligible click that wins ``order`` (if any) plus the ``sample`` latest-ranked clicks (what
    the explanation shows), at most ``sample + 1`` clicks, latest first. Memory is
    O(``sample``) whatever one visitor did: :func:`decide` and :func:`explain` over the result
    give the same decision and the same first ``sample`` verdicts as over all of ``clicks``.
    The repository reads the same set by index (``decision_clicks``)."""
    best: Click | None = None
    latest: list[tuple[tuple[datetime, str], Click]] = []  # a min-heap of the sample
    seen: set[str] = set()
    for click in clicks:
        if click.click_id in seen:
            continue
        rank = _rank(click)
        if ineligibility(click, order, window) is None and (best is None or rank > _rank(best)):
            best = click
        if len(latest) < sample:
            heapq.heappush(latest, (rank, click))
            seen.add(click.click_id)
        elif sample and rank > latest[0][0]:
            _, out = heapq.heappushpop(latest, (rank, click))
            seen.discard(out.click_id)
            seen.add(click.click_id)
    chosen = {c.click_id: c for _, c in latest}
    if best is not None:
        chosen.setdefault(best.click_id, best)
    return sorted(chosen.values(), key=_rank, reverse=True)


def decide(
    order: OrderRef,
    clicks: Iterable[Click],
    window: timedelta = DEFAULT_WINDOW,
    policy: CouponPolicy = CouponPolicy.OFF,
    coupon: Coupon | None = None,
) -> Decision:
    """The decision for ``order``: the winning click among ``clicks`` (any order, duplicates
    harmless), or the coupon, under ``policy`` (in force at placement). ``coupon``: the
    order's code when valid at placement (:func:`coupon_for`), else None."""
    best: Click | None = None
    for click in clicks:
        if ineligibility(click, order, window) is None and (
            best is None or _rank(click) > _rank(best)
        ):
            best = click
    start, end = window_of(order, window)
    if coupon is not None and (
        policy is CouponPolicy.COUPON_WINS or (policy is CouponPolicy.CLICK_WINS and best is None)
    ):
        return Decision(order.order_id, None, start, end, coupon)
    return Decision(order.order_id, best, start, end)


def explain(
    order: OrderRef,
    clicks: Iterable[Click],
    window: timedelta = DEFAULT_WINDOW,
    policy: CouponPolicy = CouponPolicy.OFF,
    coupon: Coupon | None = None,
) -> tuple[Decision, list[tuple[Click, Verdict]]]:
    """The decision plus, for every click considered, why it won or lost (an eligible click
    loses to a coupon with ``coupon_won``)."""
    unique = {c.click_id: c for c in clicks}
    decision = decide(order, unique.values(), window, policy, coupon)
    verdicts: list[tuple[Click, Verdict]] = []
    for click in sorted(unique.values(), key=_rank, reverse=True):
        reason = ineligibility(click, order, window)
        if reason is None:
            won = decision.click is not None and click.click_id == decision.click.click_id
            if decision.coupon is not None:
                reason = Verdict.COUPON_WON
            else:
                reason = Verdict.WON if won else Verdict.EARLIER
        verdicts.append((click, reason))
    return decision, verdicts
