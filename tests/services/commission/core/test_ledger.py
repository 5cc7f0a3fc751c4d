"""Ledger names in the pure core: the one spelling of the accounts and the kinds that the
repositories filter by, and the payout's refusal."""

from __future__ import annotations

import fnmatch
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.errors import NothingToPay
from services.commission.core.ledger import (
    AFFILIATE_ACCOUNTS,
    AFFILIATE_PREFIX,
    EARNING_KINDS,
    TxnKind,
    affiliate_account,
    payout_account,
    payout_txns,
    store_account,
)

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20)


def like(pattern: str, value: str) -> bool:
    """SQL ``LIKE`` with ``%`` only (the patterns here hold no ``_`` wildcard position)."""
    return fnmatch.fnmatchcase(value, pattern.replace("%", "*"))


class TestAccounts:
    @given(ids)
    def test_every_affiliate_account_and_only_those_match_the_pattern(self, who: str) -> None:
        assert affiliate_account(who).startswith(AFFILIATE_PREFIX)
        assert like(AFFILIATE_ACCOUNTS, affiliate_account(who))
        assert not like(AFFILIATE_ACCOUNTS, store_account(who))
        assert not like(AFFILIATE_ACCOUNTS, payout_account())

    def test_an_affiliate_earns_by_commission_reversal_and_adjustment(self) -> None:
        assert set(EARNING_KINDS) == {
            TxnKind.COMMISSION.value,
            TxnKind.REVERSAL.value,
            TxnKind.ADJUSTMENT.value,
        }


class TestPayout:
    def test_nothing_positive_is_refused_with_its_code(self) -> None:
        with pytest.raises(NothingToPay) as err:
            payout_txns("k", "a", {"USD": Decimal("-1.00"), "EUR": Decimal("0")})
        assert (err.value.status_code, err.value.code) == (409, "nothing_to_pay")

    def test_each_positive_balance_leaves_the_affiliate_account(self) -> None:
        (txn,) = payout_txns("k", "a", {"USD": Decimal("2.50"), "EUR": Decimal("-1")})
        assert txn.key == "k:USD"
        assert {p.account: p.amount for p in txn.postings} == {
            affiliate_account("a"): Decimal("-2.50"),
            payout_account(): Decimal("2.50"),
        }
