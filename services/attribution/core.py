"""The attribution rule, pure: no I/O, no clock, no framework.

For an order of store S placed by visitor V at ``placed_at``, a click is *eligible* when it is
on a link of S, by V, not marked suspicious, and ``placed_at - window <= occurred_at <=
placed_at`` (both ends inclusive). The order goes to the eligible click with the latest
``occurred_at``; ties go to the greater ``click_id``. No eligible click: organic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Literal

DEFAULT_WINDOW: Final = timedelta(days=15)


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


@dataclass(frozen=True, slots=True)
class OrderRef:
    order_id: str
    store_id: str
    visitor_id: str
    placed_at: datetime


class Verdict(StrEnum):
    """Why a click did or did not win an order (the explain API shows these)."""

    WON = "won"
    EARLIER = "earlier_than_winner"
    OUTSIDE_WINDOW = "outside_window"
    AFTER_ORDER = "after_order"
    SUSPICIOUS = "suspicious"
    OTHER_STORE = "other_store"
    OTHER_VISITOR = "other_visitor"


@dataclass(frozen=True, slots=True)
class Decision:
    order_id: str
    click: Click | None
    window_start: datetime
    window_end: datetime

    @property
    def affiliate_id(self) -> str | None:
        return self.click.affiliate_id if self.click else None

    @property
    def rule(self) -> Literal["last_click", "organic"]:
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


def decide(
    order: OrderRef, clicks: Iterable[Click], window: timedelta = DEFAULT_WINDOW
) -> Decision:
    """The winning click for ``order`` among ``clicks`` (any order, duplicates harmless)."""
    best: Click | None = None
    for click in clicks:
        if ineligibility(click, order, window) is None and (
            best is None or _rank(click) > _rank(best)
        ):
            best = click
    start, end = window_of(order, window)
    return Decision(order.order_id, best, start, end)


def explain(
    order: OrderRef, clicks: Iterable[Click], window: timedelta = DEFAULT_WINDOW
) -> tuple[Decision, list[tuple[Click, Verdict]]]:
    """The decision plus, for every click considered, why it won or lost."""
    unique = {c.click_id: c for c in clicks}
    decision = decide(order, unique.values(), window)
    verdicts: list[tuple[Click, Verdict]] = []
    for click in sorted(unique.values(), key=_rank, reverse=True):
        reason = ineligibility(click, order, window)
        if reason is None:
            won = decision.click is not None and click.click_id == decision.click.click_id
            reason = Verdict.WON if won else Verdict.EARLIER
        verdicts.append((click, reason))
    return decision, verdicts
