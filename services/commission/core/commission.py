"""Commission rules, pure: an order's facts and its commission (chargeable, rates in force at
placement, refunds' reversals), and who sees what of an attribution's explanation.

No I/O, no clock reads (every time is a parameter), no framework imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from services.commission.core.program import ProgramHistory
from shared.money import ZERO, round_money
from shared.policy import ExitPolicy


class OrderStatus(StrEnum):
    PLACED = "placed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class LineItem:
    product_id: str
    category_id: str | None
    quantity: int
    unit_price: Decimal
    shipping_fee: Decimal
    title: str = ""

    @property
    def base(self) -> Decimal:
        """Commission base: price × quantity − shipping, never below zero."""
        return max(ZERO, self.unit_price * self.quantity - self.shipping_fee)


@dataclass(frozen=True, slots=True)
class RefundItem:
    product_id: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: str
    occurred_at: datetime
    items: tuple[RefundItem, ...]


#: An order is named by its store and its number: two stores may use the same order number.
OrderKey = tuple[str, str]  # (store_id, order_id)


@dataclass(frozen=True, slots=True)
class Placement:
    """What an ``order_placed`` says of an order: the facts its commission is computed from."""

    currency: str
    placed_at: datetime
    items: tuple[LineItem, ...]


@dataclass(frozen=True, slots=True)
class HeldPlacement:
    """What the commission service holds of an order when a decision arrives."""

    placement: Placement | None  # None: no placement seen yet
    revision: int  # of the decision applied, −1: none
    posted: bool  # something is posted for the order (its facts are settled)


def placement_to_apply(held: HeldPlacement, revision: int, decided: Placement) -> Placement | None:
    """One placement per order, for every consumer: the one attribution decided from (carried
    on its decision, revision ``revision``) replaces the placement held when the decision is
    applied (newer than the one held, nothing posted yet) and they differ. Two
    ``order_placed`` of one order (a storefront's retry after an edit, a hostile store) may
    reach attribution and commission in different orders; without this, commission could pay
    on a placement attribution never decided from. None: nothing to rewrite."""
    if revision <= held.revision or held.posted or held.placement == decided:
        return None
    return decided


@dataclass(frozen=True)
class OrderFacts:
    """Everything known about one order, whatever order the facts arrived in."""

    order_id: str
    store_id: str
    currency: str
    placed_at: datetime
    items: tuple[LineItem, ...]
    status: OrderStatus = OrderStatus.PLACED
    status_at: datetime | None = None  # when it completed or was cancelled
    affiliate_id: str | None = None
    click_id: str | None = None
    click_at: datetime | None = None
    refunds: tuple[Refund, ...] = ()

    @property
    def key(self) -> OrderKey:
        return (self.store_id, self.order_id)


@dataclass(frozen=True, slots=True)
class ItemCommission:
    product_id: str
    base: Decimal
    rate: Decimal
    commission: Decimal
    reversed: Decimal

    @property
    def net(self) -> Decimal:
        return self.commission - self.reversed


@dataclass(frozen=True)
class OrderCommission:
    order_id: str
    currency: str
    status: OrderStatus
    affiliate_id: str | None
    chargeable: bool
    items: tuple[ItemCommission, ...]

    @property
    def commission(self) -> Decimal:
        return sum((i.commission for i in self.items), ZERO)

    @property
    def reversed(self) -> Decimal:
        return sum((i.reversed for i in self.items), ZERO)

    @property
    def net(self) -> Decimal:
        return self.commission - self.reversed

    @property
    def estimated(self) -> Decimal:
        """Commission not yet payable: the net of a chargeable order still placed."""
        return self.net if self.status is OrderStatus.PLACED else ZERO

    @property
    def payable(self) -> Decimal:
        """Net commission of a completed order."""
        return self.net if self.status is OrderStatus.COMPLETED else ZERO

    @property
    def sales(self) -> Decimal:
        """Affiliate sales: the product amount, shipping excluded."""
        return sum((i.base for i in self.items), ZERO)


def commission_on(amount: Decimal, rate: Decimal, currency: str) -> Decimal:
    return round_money(amount * rate, currency)


def is_chargeable(
    facts: OrderFacts, program: ProgramHistory, policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM
) -> bool:
    """Attributed, and the store was in the program when the order was placed (or, under
    ``CLICK_IN_PROGRAM``, when the winning click was made)."""
    if facts.affiliate_id is None:
        return False
    if program.state_at(facts.placed_at).joined:
        return True
    if policy is ExitPolicy.CLICK_IN_PROGRAM and facts.click_at is not None:
        return program.state_at(facts.click_at).joined
    return False


def _refund_amounts(facts: OrderFacts, refunds: Iterable[Refund]) -> list[list[Decimal]]:
    """Refunded product amounts per line: each refund item goes to the line of its product
    (several lines of one product are filled in line order, each up to its base)."""
    per_line: list[list[Decimal]] = [[] for _ in facts.items]
    for refund in sorted(refunds, key=lambda r: (r.occurred_at, r.refund_id)):
        for ritem in refund.items:
            lines = [i for i, li in enumerate(facts.items) if li.product_id == ritem.product_id]
            if not lines:
                continue
            left = ritem.amount
            for pos, idx in enumerate(lines):
                last = pos == len(lines) - 1
                take = left if last else min(left, facts.items[idx].base)
                if take > ZERO:
                    per_line[idx].append(take)
                left -= take
    return per_line


def compute_order(
    facts: OrderFacts,
    program: ProgramHistory,
    policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM,
    refunds: Iterable[Refund] | None = None,
) -> OrderCommission:
    """The commission of an order: per line, ``base × rate`` (rate in force at placement)
    rounded half-up; the refunds of a line reverse ``(their total amount) × rate`` rounded
    half-up once, on the line's refunded total (never per refund item: 100 items of 0.50 at 1%
    reverse 0.50, not 100 × 0.01), capped at the line's commission. Zero when not chargeable
    or cancelled."""
    state = program.state_at(facts.placed_at)
    chargeable = is_chargeable(facts, program, policy)
    pays = chargeable and facts.status is not OrderStatus.CANCELLED
    amounts = _refund_amounts(facts, facts.refunds if refunds is None else refunds)
    items: list[ItemCommission] = []
    for line, refunded in zip(facts.items, amounts, strict=True):
        rate = state.rate_for(line.product_id, line.category_id)
        commission = commission_on(line.base, rate, facts.currency) if pays else ZERO
        reversal = commission_on(sum(refunded, ZERO), rate, facts.currency)
        items.append(
            ItemCommission(line.product_id, line.base, rate, commission, min(commission, reversal))
        )
    return OrderCommission(
        facts.order_id, facts.currency, facts.status, facts.affiliate_id, chargeable, tuple(items)
    )


def visible_clicks(
    considered: Sequence[Mapping[str, Any]],
    viewer_kind: str,
    viewer_id: str,
    store_id: str,
) -> list[dict[str, Any]]:
    """The clicks an explanation shows to a viewer. Finance and admin see everything. The
    order's store sees its own clicks in full and, of the buyer's clicks on other stores, only
    that they exist, when and why they lost (``other_store``): no store, affiliate or click id
    of theirs. An affiliate sees its own clicks in full; of the others only when and why they
    lost (an affiliate never learns who else promoted to the buyer, nor where)."""
    if viewer_kind in ("finance", "admin"):
        return [dict(c) for c in considered]
    out = []
    for c in considered:
        shown = dict(c)
        if viewer_kind == "affiliate":
            own = c.get("affiliate_id") == viewer_id
        else:
            own = c.get("store_id") == store_id
        if not own:
            shown["affiliate_id"] = None
            shown["click_id"] = None
            if c.get("store_id") != store_id:
                shown["store_id"] = None
        out.append(shown)
    return out
