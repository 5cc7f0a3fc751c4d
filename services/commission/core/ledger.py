"""Ledger rules, pure: double-entry postings derived from an order's facts, payouts, and the
accounts' names (the one spelling of them: repositories build their filters from these)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final

from services.commission.core.commission import (
    OrderCommission,
    OrderFacts,
    OrderStatus,
    Refund,
    compute_order,
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
    amount: Decimal  # signed; the postings of one transaction sum to zero


class TxnKind(StrEnum):
    COMMISSION = "commission"
    REVERSAL = "reversal"
    PAYOUT = "payout"


#: the kinds of transaction an affiliate earns by (commission and its reversals)
EARNING_KINDS: Final = (TxnKind.COMMISSION.value, TxnKind.REVERSAL.value)


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
    unrefunded: OrderCommission | None = None,
) -> list[LedgerTxn]:
    """The transactions still to post for an order, given what is ``posted`` (key → affiliate
    amount). Commission is posted only once the order completes; each refund is then posted
    as a reversal of its own. Posting the result and calling again returns ``[]``; the sum of
    everything posted equals :func:`compute_order`'s net whatever order the facts came in.
    ``unrefunded``: the order's commission with no refund, when the caller has it (of an
    order without refunds, :func:`compute_order`'s result)."""
    if facts.status is not OrderStatus.COMPLETED or facts.affiliate_id is None:
        return []
    result = compute_order(facts, program, policy, refunds=()) if unrefunded is None else unrefunded
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
