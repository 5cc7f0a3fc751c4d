"""Commission rules, pure: an order's facts and its commission (chargeable, rates in force at
placement, refunds' reversals, the locking date, reason-coded adjustments), and who sees what
of an attribution's explanation.

No I/O, no clock reads (every time is a parameter), no framework imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from services.commission.core.errors import (
    AmountAboveBase,
    AmountTooPrecise,
    LinesRequired,
    Locked,
    TooManyAdjustments,
    UnknownProduct,
)
from services.commission.core.incentives import capped_reversal, line_rate
from services.commission.core.program import ProgramHistory
from shared.money import ZERO, fits_currency, round_money
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
    #: when it was reported: the later of its event time and its arrival at the tracker (None:
    #: its event time), so that a backdated refund cannot slip in before the locking date
    reported_at: datetime | None = None

    @property
    def reported(self) -> datetime:
        return self.reported_at or self.occurred_at


class AdjustmentAction(StrEnum):
    AMEND = "amend"  # lowers the commission base of the named lines
    DECLINE = "decline"  # the order's commission becomes zero
    RESET = "reset"  # undoes every adjustment before it


class AdjustmentReason(StrEnum):
    ITEM_RETURNED = "item_returned"
    ORDER_CHANGED = "order_changed"
    FRAUD = "fraud"
    NOT_COMPLIANT = "not_compliant"
    TEST_ORDER = "test_order"
    DUPLICATE = "duplicate"
    OTHER = "other"


#: at most this many adjustments per order
MAX_ADJUSTMENTS: Final = 100


@dataclass(frozen=True, slots=True)
class AdjustmentLine:
    product_id: str
    amount: Decimal  # what the product's commission base is lowered by (amend)


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A reason-coded correction of an order's commission, made at ``at``; ``seq`` numbers
    an order's adjustments from 1 in the order they were accepted."""

    seq: int
    at: datetime
    action: AdjustmentAction
    reason: AdjustmentReason
    lines: tuple[AdjustmentLine, ...] = ()
    note: str | None = None


#: An order is named by its store and its number: two stores may use the same order number.
OrderKey = tuple[str, str]  # (store_id, order_id)


@dataclass(frozen=True, slots=True)
class Placement:
    """What an ``order_placed`` says of an order: the facts its commission is computed from."""

    currency: str
    placed_at: datetime
    items: tuple[LineItem, ...]
    new_buyer: bool = False  # the buyer's first order on the marketplace (new-buyer bonus)


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
    adjustments: tuple[Adjustment, ...] = ()
    new_buyer: bool = False  # the storefront marked the buyer's first order
    #: what the affiliate-month's cap left the order when its completion was posted (None: no
    #: month cap applied; :func:`~services.commission.core.incentives.month_allowance`)
    month_allowance: Decimal | None = None

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
    amended: Decimal = ZERO  # what adjustments lowered the commission base by
    #: the new-buyer bonus's extra rate, paid on top of ``rate`` (the sum at most 100%)
    bonus_rate: Decimal = ZERO

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
    #: when the commission locks (None: nothing to lock, or not completed yet)
    locks_at: datetime | None = None
    declined: bool = False  # an adjustment declined the order (and no reset since)
    #: refunds reported at or after the lock: recorded, reversing nothing
    refunds_skipped: tuple[str, ...] = ()
    #: the most the order pays: the program's per-order cap in the order's currency in force at
    #: placement and what the affiliate-month's cap left it, the lower (None: no cap)
    per_order_cap: Decimal | None = None

    def locked(self, now: datetime) -> bool:
        """Whether nothing can change the commission any more at ``now``."""
        return self.locks_at is not None and now >= self.locks_at

    @property
    def uncapped(self) -> Decimal:
        """The commission before caps (bonus included): the sum of the lines'."""
        return sum((i.commission for i in self.items), ZERO)

    @property
    def commission(self) -> Decimal:
        """What the order pays: its commission before caps, at most the per-order cap."""
        uncapped = self.uncapped
        if self.per_order_cap is None:
            return uncapped
        return min(uncapped, self.per_order_cap)

    @property
    def capped(self) -> Decimal:
        """The amount the per-order cap cut (zero when it does not bind)."""
        return self.uncapped - self.commission

    @property
    def reversed(self) -> Decimal:
        """What refunds reverse: the lines' reversals; of a capped order, the refunded share of
        what was paid (:func:`~services.commission.core.incentives.capped_reversal`)."""
        lines = sum((i.reversed for i in self.items), ZERO)
        if self.capped == ZERO:
            return lines
        return capped_reversal(self.commission, self.uncapped, lines, self.currency)

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


def locks_at(facts: OrderFacts, program: ProgramHistory) -> datetime | None:
    """When the order's commission locks: ``completed_at + lock_days``, the lock period in
    force when the order was placed. None for an order not completed (a cancelled one never
    has anything to lock) or organic (no affiliate)."""
    if (
        facts.status is not OrderStatus.COMPLETED
        or facts.status_at is None
        or facts.affiliate_id is None
    ):
        return None
    return lock_of(facts.placed_at, facts.status_at, program)


def lock_of(placed_at: datetime, completed_at: datetime, program: ProgramHistory) -> datetime:
    """``completed_at + lock_days``, the lock period in force at ``placed_at``."""
    return completed_at + timedelta(days=program.state_at(placed_at).lock_days)


def before_lock(adjustments: Iterable[Adjustment], lock: datetime | None) -> list[Adjustment]:
    """The adjustments that count, in the order accepted: those made before the lock (one
    made at or after it changes nothing; the API refuses it with ``409 locked``)."""
    return sorted(
        (a for a in adjustments if lock is None or a.at < lock), key=lambda a: (a.at, a.seq)
    )


def fold_adjustments(
    items: Sequence[LineItem], adjustments: Iterable[Adjustment]
) -> tuple[list[Decimal], bool]:
    """What the adjustments (in order) lower each line's commission base by, and whether the
    order stands declined. ``amend`` lowers the lines of each named product (several lines of
    one product in line order, each down to zero at most: a base is never raised nor below
    zero); ``decline`` zeroes the order's commission; ``reset`` undoes everything before it."""
    amended = [ZERO for _ in items]
    declined = False
    for adj in adjustments:
        if adj.action is AdjustmentAction.RESET:
            amended = [ZERO for _ in items]
            declined = False
        elif adj.action is AdjustmentAction.DECLINE:
            declined = True
        else:
            for aline in adj.lines:
                left = aline.amount
                for i, li in enumerate(items):
                    if li.product_id != aline.product_id or left <= ZERO:
                        continue
                    take = min(left, li.base - amended[i])
                    amended[i] += take
                    left -= take
    return amended, declined


def check_adjustment(
    facts: OrderFacts, program: ProgramHistory, adjustment: Adjustment
) -> Adjustment:
    """``adjustment`` if the rules accept it on the order as it stands, else the refusal: the
    commission is locked at ``adjustment.at`` (:class:`Locked`), the order holds
    :data:`MAX_ADJUSTMENTS` already (:class:`TooManyAdjustments`), an ``amend`` names no line
    (:class:`LinesRequired`), a product the order does not hold (:class:`UnknownProduct`), an
    amount finer than the currency's minor unit (:class:`AmountTooPrecise`) or above what is
    left of the product's commission base (:class:`AmountAboveBase`: an amend never raises a
    base nor takes it below zero)."""
    lock = locks_at(facts, program)
    if lock is not None and adjustment.at >= lock:
        raise Locked(locks_at=lock.isoformat())
    if len(facts.adjustments) >= MAX_ADJUSTMENTS:
        raise TooManyAdjustments(limit=str(MAX_ADJUSTMENTS))
    if adjustment.action is not AdjustmentAction.AMEND:
        return adjustment
    if not adjustment.lines:
        raise LinesRequired()
    amended, _ = fold_adjustments(facts.items, before_lock(facts.adjustments, lock))
    asked: dict[str, Decimal] = {}
    for aline in adjustment.lines:
        if not any(li.product_id == aline.product_id for li in facts.items):
            raise UnknownProduct(product_id=aline.product_id)
        if not fits_currency(aline.amount, facts.currency):
            raise AmountTooPrecise(amount=str(aline.amount), currency=facts.currency)
        asked[aline.product_id] = asked.get(aline.product_id, ZERO) + aline.amount
    for product, amount in asked.items():
        left = sum(
            (
                li.base - a
                for li, a in zip(facts.items, amended, strict=True)
                if li.product_id == product
            ),
            ZERO,
        )
        if amount > left:
            raise AmountAboveBase(product_id=product, amount=str(amount), base=str(left))
    return adjustment


def compute_order(
    facts: OrderFacts,
    program: ProgramHistory,
    policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM,
    refunds: Iterable[Refund] | None = None,
    adjustments: Iterable[Adjustment] | None = None,
) -> OrderCommission:
    """The commission of an order: per line, ``(base − amended) × rate`` (rate in force at
    placement with the new-buyer bonus in force then for an order marked as the buyer's first,
    the adjustments' lowering of the base) rounded half-up, zero while declined;
    the refunds of a line reverse ``(their total amount) × rate`` rounded half-up once, on the
    line's refunded total (never per refund item: 100 items of 0.50 at 1% reverse 0.50, not
    100 × 0.01), capped at the line's commission. Zero when not chargeable or cancelled, and
    when the store had banned the affiliate at the order's placement (partner approval: an
    order placed at or after the ban and before any reinstatement; earlier ones keep theirs).
    The order's total is at most the per-order cap in force at placement (``commission``;
    ``capped`` the cut, ``uncapped`` the lines' sum); refunds of a capped order reverse the
    refunded share of what was paid (``reversed``). Lines show their figures before the cap.

    The locking date (:func:`locks_at`): a refund reported at or after it reverses nothing
    (``refunds_skipped``), an adjustment made at or after it changes nothing.
    ``refunds``/``adjustments``: a subset of the facts' own to compute with (the ledger's
    steps), before the lock's filter."""
    state = program.state_at(facts.placed_at)
    chargeable = is_chargeable(facts, program, policy)
    lock = locks_at(facts, program)
    adjusted = before_lock(facts.adjustments if adjustments is None else adjustments, lock)
    amended, declined = fold_adjustments(facts.items, adjusted)
    pays = (
        chargeable
        and facts.status is not OrderStatus.CANCELLED
        and not declined
        and state.pays_affiliate(facts.affiliate_id)  # a banned affiliate's later orders
    )
    given = list(facts.refunds if refunds is None else refunds)
    counted = [r for r in given if lock is None or r.reported < lock]
    amounts = _refund_amounts(facts, counted)
    items: list[ItemCommission] = []
    for line, refunded, less in zip(facts.items, amounts, amended, strict=True):
        rate = state.rate_for(line.product_id, line.category_id)
        paid = line_rate(rate, state.incentives, facts.new_buyer)
        commission = commission_on(line.base - less, paid, facts.currency) if pays else ZERO
        reversal = commission_on(sum(refunded, ZERO), paid, facts.currency)
        items.append(
            ItemCommission(
                line.product_id,
                line.base,
                rate,
                commission,
                min(commission, reversal),
                less,
                paid - rate if paid != rate else ZERO,
            )
        )
    return OrderCommission(
        facts.order_id,
        facts.currency,
        facts.status,
        facts.affiliate_id,
        chargeable,
        tuple(items),
        lock,
        declined,
        tuple(sorted(r.refund_id for r in given if lock is not None and r.reported >= lock)),
        _order_cap(state.incentives.caps.per_order.get(facts.currency), facts.month_allowance),
    )


def _order_cap(per_order: Decimal | None, allowance: Decimal | None) -> Decimal | None:
    caps = [c for c in (per_order, allowance) if c is not None]
    return min(caps) if caps else None


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
