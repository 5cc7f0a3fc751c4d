"""Commission rules, pure: program state, rates in force, commission maths, ledger postings.

No I/O, no clock reads (every time is a parameter), no framework imports. The commission
service's consumer and HTTP handlers are shells around these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from shared.money import ZERO, round_money
from shared.policy import ExitPolicy

DEFAULT_RATE: Final = Decimal("0.06")
MIN_RATE: Final = Decimal("0")
MAX_RATE: Final = Decimal("0.9")
MAX_MAIN_PRODUCTS: Final = 60
EXIT_LOCK: Final = timedelta(days=15)  # a store may exit no earlier than this after joining
REJOIN_LOCK: Final = timedelta(days=15)  # ...and may not rejoin for this long after exiting
MIN_WINDOW_DAYS: Final = 1  # a store's own attribution window, when it sets one
MAX_WINDOW_DAYS: Final = 30


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ProgramError(Exception):
    """A program rule refused an operation. Carries its HTTP status and a machine code."""

    status_code: int = 409

    def __init__(self, code: str, message: str, **details: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class InvalidRate(ProgramError):
    status_code = 422


class InvalidWindow(ProgramError):
    status_code = 422


def check_rate(rate: Decimal) -> Decimal:
    """``rate`` if it is a finite decimal in ``[0, 0.9]``, else :class:`InvalidRate`."""
    if not rate.is_finite() or not (MIN_RATE <= rate <= MAX_RATE):
        raise InvalidRate("invalid_rate", f"rate must be a decimal in [{MIN_RATE}, {MAX_RATE}]")
    return rate


# --------------------------------------------------------------------------------------------
# Program: a timeline of operations, folded into the state in force at any instant
# --------------------------------------------------------------------------------------------


class OpKind(StrEnum):
    JOIN = "join"
    EXIT = "exit"
    DEFAULT_RATE = "default_rate"
    CATEGORY_RATE = "category_rate"  # rate None: the category rate is removed
    MAIN_PRODUCT = "main_product"  # rate None: a main product without a rate of its own
    UNMAIN_PRODUCT = "unmain_product"
    ATTRIBUTION_WINDOW = "attribution_window"  # days None: back to the deployment's default


@dataclass(frozen=True, slots=True)
class ProgramOp:
    """One accepted change to a store's program, effective from ``at`` (inclusive)."""

    kind: OpKind
    at: datetime
    key: str | None = None  # category id or product id
    rate: Decimal | None = None
    days: int | None = None  # attribution window


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
    """The state after ``op``, or :class:`ProgramError` if the rules refuse it.

    Rules: join only when out of the program and at least 15 days after the last exit; exit
    only when in and at least 15 days after joining; rate, main-product and window changes only
    while in the program; rates in ``[0, 0.9]``; at most 60 main products; a window of 1 to 30
    days.
    """
    if op.rate is not None:
        check_rate(op.rate)
    if op.days is not None and not (MIN_WINDOW_DAYS <= op.days <= MAX_WINDOW_DAYS):
        raise InvalidWindow(
            "invalid_window",
            f"an attribution window is {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS} days",
            days=str(op.days),
        )
    if op.kind is OpKind.JOIN:
        if state.joined:
            raise ProgramError("already_joined", "the store is already in the program")
        allowed = state.rejoin_allowed_at
        if allowed is not None and op.at < allowed:
            raise ProgramError(
                "rejoin_too_early",
                "a store may not rejoin within 15 days of exiting",
                rejoin_allowed_at=allowed.isoformat(),
            )
        rate = op.rate if op.rate is not None else DEFAULT_RATE
        return replace(state, joined=True, joined_at=op.at, exited_at=None, default_rate=rate)
    if not state.joined:
        raise ProgramError("not_joined", "the store is not in the program")
    if op.kind is OpKind.EXIT:
        allowed = state.exit_allowed_at
        if allowed is not None and op.at < allowed:
            raise ProgramError(
                "exit_too_early",
                "a store may exit no earlier than 15 days after joining",
                exit_allowed_at=allowed.isoformat(),
            )
        return replace(state, joined=False, exited_at=op.at)
    if op.kind is OpKind.DEFAULT_RATE:
        if op.rate is None:
            raise InvalidRate("invalid_rate", "a default rate is required")
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
            raise ProgramError(
                "too_many_main_products",
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
    raise AssertionError(op.kind)  # pragma: no cover - exhaustive


@dataclass(frozen=True)
class ProgramHistory:
    """A store's accepted operations in time order, queried at any instant."""

    ops: tuple[ProgramOp, ...] = ()

    def state_at(self, at: datetime) -> ProgramState:
        """The program in force at ``at``: every op with ``op.at <= at`` applied."""
        state = ProgramState()
        for op in self.ops:
            if op.at > at:
                break
            state = apply_op(state, op)
        return state

    def current(self) -> ProgramState:
        state = ProgramState()
        for op in self.ops:
            state = apply_op(state, op)
        return state

    def append(self, op: ProgramOp) -> ProgramHistory:
        """A new history with ``op`` accepted, or :class:`ProgramError`.

        Operations are appended in time order: ``op.at`` may not precede the last one.
        """
        if self.ops and op.at < self.ops[-1].at:
            raise ProgramError("out_of_order", "program operations must be in time order")
        apply_op(self.current(), op)
        return ProgramHistory((*self.ops, op))


# --------------------------------------------------------------------------------------------
# Orders and their commission
# --------------------------------------------------------------------------------------------


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
    rounded half-up; each refund reverses ``amount × rate`` rounded half-up, the reversals of a
    line capped at its commission. Zero when not chargeable or cancelled."""
    state = program.state_at(facts.placed_at)
    chargeable = is_chargeable(facts, program, policy)
    pays = chargeable and facts.status is not OrderStatus.CANCELLED
    amounts = _refund_amounts(facts, facts.refunds if refunds is None else refunds)
    items: list[ItemCommission] = []
    for line, refunded in zip(facts.items, amounts, strict=True):
        rate = state.rate_for(line.product_id, line.category_id)
        commission = commission_on(line.base, rate, facts.currency) if pays else ZERO
        reversal = sum((commission_on(a, rate, facts.currency) for a in refunded), ZERO)
        items.append(
            ItemCommission(line.product_id, line.base, rate, commission, min(commission, reversal))
        )
    return OrderCommission(
        facts.order_id, facts.currency, facts.status, facts.affiliate_id, chargeable, tuple(items)
    )


# --------------------------------------------------------------------------------------------
# Ledger: double-entry postings derived from an order's facts
# --------------------------------------------------------------------------------------------


def store_account(store_id: str) -> str:
    """What the seller owes in commission (goes negative as commission accrues)."""
    return f"store:{store_id}:commission"


def affiliate_account(affiliate_id: str) -> str:
    """What the affiliate has earned and not yet been paid."""
    return f"affiliate:{affiliate_id}:earned"


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount: Decimal  # signed; the postings of one transaction sum to zero


class TxnKind(StrEnum):
    COMMISSION = "commission"
    REVERSAL = "reversal"
    PAYOUT = "payout"


@dataclass(frozen=True, slots=True)
class LedgerTxn:
    """A balanced transaction. ``key`` is its idempotency key: posting a key twice is a no-op."""

    key: str
    kind: TxnKind
    order_id: str | None
    currency: str
    postings: tuple[Posting, ...]

    @property
    def amount(self) -> Decimal:
        """The amount credited to the affiliate (negative for a reversal)."""
        return sum((p.amount for p in self.postings if p.account.startswith("affiliate:")), ZERO)


def commission_key(store_id: str, order_id: str) -> str:
    """Store ids hold no ``:``, so the key is read one way only."""
    return f"commission:{store_id}:{order_id}"


def reversal_prefix(store_id: str, order_id: str) -> str:
    """What the keys of an order's reversals start with; ``/`` is in no identifier, so an
    order's prefix never starts another order's key."""
    return f"reversal:{store_id}:{order_id}/"


def reversal_key(store_id: str, order_id: str, refund_id: str) -> str:
    return f"{reversal_prefix(store_id, order_id)}{refund_id}"


def _transfer(
    key: str, kind: TxnKind, facts: OrderFacts, affiliate: str, amount: Decimal
) -> LedgerTxn:
    return LedgerTxn(
        key,
        kind,
        facts.order_id,
        facts.currency,
        (
            Posting(store_account(facts.store_id), -amount),
            Posting(affiliate_account(affiliate), amount),
        ),
    )


def ledger_delta(
    facts: OrderFacts,
    program: ProgramHistory,
    posted: Mapping[str, Decimal],
    policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM,
) -> list[LedgerTxn]:
    """The transactions still to post for an order, given what is ``posted`` (key → affiliate
    amount). Commission is posted only once the order completes; each refund is then posted
    as a reversal of its own. Posting the result and calling again returns ``[]``; the sum of
    everything posted equals :func:`compute_order`'s net whatever order the facts came in."""
    if facts.status is not OrderStatus.COMPLETED or facts.affiliate_id is None:
        return []
    result = compute_order(facts, program, policy, refunds=())
    if not result.chargeable or result.commission == ZERO:
        return []
    txns: list[LedgerTxn] = []
    key = commission_key(facts.store_id, facts.order_id)
    if key not in posted:
        txns.append(
            _transfer(key, TxnKind.COMMISSION, facts, facts.affiliate_id, result.commission)
        )
    reversed_so_far = -sum(
        (
            amt
            for k, amt in posted.items()
            if k.startswith(reversal_prefix(facts.store_id, facts.order_id))
        ),
        ZERO,
    )
    known: list[Refund] = [
        r
        for r in facts.refunds
        if reversal_key(facts.store_id, facts.order_id, r.refund_id) in posted
    ]
    for refund in sorted(facts.refunds, key=lambda r: (r.occurred_at, r.refund_id)):
        rkey = reversal_key(facts.store_id, facts.order_id, refund.refund_id)
        if rkey in posted:
            continue
        known.append(refund)
        target = compute_order(facts, program, policy, refunds=known).reversed
        amount = target - reversed_so_far
        if amount > ZERO:
            txns.append(_transfer(rkey, TxnKind.REVERSAL, facts, facts.affiliate_id, -amount))
            reversed_so_far = target
    return txns


def balances(txns: Sequence[LedgerTxn]) -> dict[tuple[str, str], Decimal]:
    """Per (account, currency) balance of a set of transactions."""
    out: dict[tuple[str, str], Decimal] = {}
    for txn in txns:
        for p in txn.postings:
            out[(p.account, txn.currency)] = out.get((p.account, txn.currency), ZERO) + p.amount
    return out


def payout_account() -> str:
    """Money that left the platform for affiliates."""
    return "payouts:paid"


def payout_txns(
    payout_key: str, affiliate_id: str, balances: Mapping[str, Decimal]
) -> list[LedgerTxn]:
    """A payout of every positive balance (per currency) of the affiliate, one transaction per
    currency; a zero or negative balance (a claw-back larger than what was earned) is not paid
    and carries forward. :class:`ProgramError` ``nothing_to_pay`` when nothing is positive."""
    txns = [
        LedgerTxn(
            f"{payout_key}:{currency}",
            TxnKind.PAYOUT,
            None,
            currency,
            (Posting(affiliate_account(affiliate_id), -amount), Posting(payout_account(), amount)),
        )
        for currency, amount in sorted(balances.items())
        if amount > ZERO
    ]
    if not txns:
        raise ProgramError("nothing_to_pay", "the affiliate has no positive payable balance")
    return txns


# --------------------------------------------------------------------------------------------
# Who sees what of an attribution's explanation
# --------------------------------------------------------------------------------------------


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
