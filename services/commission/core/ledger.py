"""Ledger rules, pure: double-entry postings derived from an order's facts, payouts, and the
accounts' names (the one spelling of them: repositories build their filters from these)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from services.commission.core.commission import (
    Adjustment,
    OrderCommission,
    OrderFacts,
    OrderStatus,
    Refund,
    before_lock,
    compute_order,
    locks_at,
)
from services.commission.core.errors import NothingToPay
from services.commission.core.program import ProgramHistory
from shared.money import ZERO
from shared.policy import ExitPolicy

#: what every affiliate's account name starts with (``affiliate:<id>:earned``)
AFFILIATE_PREFIX: Final = "affiliate:"
#: every affiliate account, as a SQL ``LIKE`` pattern (no identifier holds ``%`` or ``_``
#: at this position: the prefix is fixed)
AFFILIATE_ACCOUNTS: Final = f"{AFFILIATE_PREFIX}%"


def store_account(store_id: str) -> str:
    """What the seller owes in commission (goes negative as commission accrues)."""
    return f"store:{store_id}:commission"


def affiliate_account(affiliate_id: str) -> str:
    """What the affiliate has earned and not yet been paid."""
    return f"{AFFILIATE_PREFIX}{affiliate_id}:earned"


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount: Decimal  # signed; the postings of one transaction sum to zero, per currency
    #: the posting's currency when it is not its transaction's (a payout's conversion legs)
    currency: str | None = None


class TxnKind(StrEnum):
    COMMISSION = "commission"
    REVERSAL = "reversal"
    ADJUSTMENT = "adjustment"  # a reason-coded adjustment of a completed order's commission
    PAYOUT = "payout"


#: the kinds of transaction an affiliate earns by (commission, its reversals, adjustments)
EARNING_KINDS: Final = (
    TxnKind.COMMISSION.value,
    TxnKind.REVERSAL.value,
    TxnKind.ADJUSTMENT.value,
)


@dataclass(frozen=True, slots=True)
class LedgerTxn:
    """A balanced transaction. ``key`` is its idempotency key: posting a key twice is a no-op."""

    key: str
    kind: TxnKind
    order_id: str | None
    currency: str
    postings: tuple[Posting, ...]
    reason: str | None = None  # an adjustment's reason code

    @property
    def amount(self) -> Decimal:
        """The amount credited to the affiliate (negative for a reversal)."""
        return sum(
            (p.amount for p in self.postings if p.account.startswith(AFFILIATE_PREFIX)), ZERO
        )


def commission_key(store_id: str, order_id: str) -> str:
    """Store ids hold no ``:``, so the key is read one way only."""
    return f"commission:{store_id}:{order_id}"


def reversal_prefix(store_id: str, order_id: str) -> str:
    """What the keys of an order's reversals start with; ``/`` is in no identifier, so an
    order's prefix never starts another order's key."""
    return f"reversal:{store_id}:{order_id}/"


def reversal_key(store_id: str, order_id: str, refund_id: str) -> str:
    return f"{reversal_prefix(store_id, order_id)}{refund_id}"


def adjustment_prefix(store_id: str, order_id: str) -> str:
    """What the keys of an order's adjustments start with (as :func:`reversal_prefix`)."""
    return f"adjustment:{store_id}:{order_id}/"


def adjustment_key(store_id: str, order_id: str, seq: int) -> str:
    return f"{adjustment_prefix(store_id, order_id)}{seq}"


def _transfer(
    key: str,
    kind: TxnKind,
    facts: OrderFacts,
    affiliate: str,
    amount: Decimal,
    reason: str | None = None,
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
        reason,
    )


def ledger_delta(
    facts: OrderFacts,
    program: ProgramHistory,
    posted: Mapping[str, Decimal],
    policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM,
    unrefunded: OrderCommission | None = None,
) -> list[LedgerTxn]:
    """The transactions still to post for an order, given what is ``posted`` (key → affiliate
    amount). Commission is posted only once the order completes, gross (before that, refunds
    and adjustments change the estimate only); then each refund reported before the lock is a
    reversal of its own and each adjustment made before the lock an adjustment transaction of
    its own with its reason, in time order, each posting what the order's net grows or shrinks
    by when it is added (a step that changes nothing posts nothing). The order the facts
    arrive in changes nothing. Posting the result and calling again returns ``[]``;
    the sum of everything posted equals :func:`compute_order`'s net whatever order the facts
    came in. ``unrefunded``: the order's commission with no refund and no adjustment, when
    the caller has it (:func:`compute_order`'s result of such an order)."""
    if facts.status is not OrderStatus.COMPLETED or facts.affiliate_id is None:
        return []
    affiliate = facts.affiliate_id
    gross = (
        compute_order(facts, program, policy, refunds=(), adjustments=())
        if unrefunded is None or facts.refunds or facts.adjustments
        else unrefunded
    )
    if not gross.chargeable or gross.commission == ZERO:
        return []
    lock = locks_at(facts, program)
    adjustments = before_lock(facts.adjustments, lock)
    refunds = [r for r in facts.refunds if lock is None or r.reported < lock]
    store, order = facts.store_id, facts.order_id

    def rkey(r: Refund) -> str:
        return reversal_key(store, order, r.refund_id)

    def akey(a: Adjustment) -> str:
        return adjustment_key(store, order, a.seq)

    txns: list[LedgerTxn] = []
    key = commission_key(store, order)
    prefixes = (reversal_prefix(store, order), adjustment_prefix(store, order))
    # what is posted for this order (by its own keys: never another order's)
    running = sum((v for k, v in posted.items() if k == key or k.startswith(prefixes)), ZERO)
    if key not in posted:
        txns.append(_transfer(key, TxnKind.COMMISSION, facts, affiliate, gross.commission))
        running += gross.commission
    elif (
        running
        == compute_order(facts, program, policy, refunds=refunds, adjustments=adjustments).net
    ):
        # what is posted is the order's net already: a step left unposted changed nothing when
        # it came (its effect, none, is in what the later steps posted). Judged again now, in
        # a context without the other steps that changed nothing, it could seem to change
        # something, and the ledger would move twice for one fact.
        return txns
    known_refunds = [r for r in refunds if rkey(r) in posted]
    known_adjustments = [a for a in adjustments if akey(a) in posted]
    steps: list[tuple[datetime, int, str, Refund | Adjustment]] = [
        (r.reported, 0, r.refund_id, r) for r in refunds if rkey(r) not in posted
    ]
    steps += [(a.at, 1, f"{a.seq:09d}", a) for a in adjustments if akey(a) not in posted]
    for _, _, _, step in sorted(steps, key=lambda s: s[:3]):
        if isinstance(step, Refund):
            known_refunds.append(step)
        else:
            known_adjustments.append(step)
        target = compute_order(
            facts, program, policy, refunds=known_refunds, adjustments=known_adjustments
        ).net
        amount = target - running
        if isinstance(step, Refund):
            if amount < ZERO:  # a refund only ever takes back
                txns.append(_transfer(rkey(step), TxnKind.REVERSAL, facts, affiliate, amount))
                running = target
        elif amount != ZERO:
            txns.append(
                _transfer(
                    akey(step), TxnKind.ADJUSTMENT, facts, affiliate, amount, step.reason.value
                )
            )
            running = target
    return txns


def balances(txns: Sequence[LedgerTxn]) -> dict[tuple[str, str], Decimal]:
    """Per (account, currency) balance of a set of transactions."""
    out: dict[tuple[str, str], Decimal] = {}
    for txn in txns:
        for p in txn.postings:
            key = (p.account, p.currency or txn.currency)
            out[key] = out.get(key, ZERO) + p.amount
    return out


def payout_account() -> str:
    """Money that left the platform for affiliates."""
    return "payouts:paid"


def payout_txns(
    payout_key: str, affiliate_id: str, balances: Mapping[str, Decimal]
) -> list[LedgerTxn]:
    """A payout of every positive balance (per currency) of the affiliate, one transaction per
    currency; a zero or negative balance (a claw-back larger than what was earned) is not paid
    and carries forward. :class:`NothingToPay` when nothing is positive."""
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
        raise NothingToPay()
    return txns
