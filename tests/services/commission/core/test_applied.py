"""Idempotency namespaces (issue 19, defect 1) and one placement per order (defect 9), in the
pure core: no value a store chooses reaches another source's key, no derived key of one kind
is another kind's, and the decided placement replaces the held one only when the decision is
applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.applied import (
    SOURCES,
    Source,
    decision_key,
    storefront_key,
)
from services.commission.core.commission import (
    HeldPlacement,
    LineItem,
    Placement,
    placement_to_apply,
)
from services.commission.core.ledger import commission_key, reversal_key
from services.commission.core.webhooks import attribution_key

#: what shared.events allows: identifiers (may hold ``:``), principal ids (no ``:``)
idents = st.from_regex(r"[A-Za-z0-9._:@\-]{1,64}", fullmatch=True)
principals = st.from_regex(r"[A-Za-z0-9._@\-]{1,64}", fullmatch=True)
revisions = st.integers(min_value=0, max_value=10**6)


class TestAppliedNamespaces:
    @given(principals, idents, revisions)
    def test_a_store_event_shaped_like_a_decision_id_cannot_take_its_slot(
        self, store: str, order: str, revision: int
    ) -> None:
        decision = decision_key(store, order, revision)
        shaped_like_it = storefront_key(store, f"{store}:{order}:{revision}")
        assert decision != shaped_like_it
        assert decision.source is Source.DECISION
        assert shaped_like_it.source is Source.STOREFRONT

    @given(principals, idents, principals, idents)
    def test_no_storefront_event_reaches_the_decisions_namespace(
        self, store: str, event_id: str, other_store: str, order: str
    ) -> None:
        assert storefront_key(store, event_id).source is Source.STOREFRONT
        assert storefront_key(store, event_id) != decision_key(other_store, order, 0)

    @given(principals, idents, principals, idents)
    def test_storefront_keys_are_one_per_store_and_event(
        self, s1: str, e1: str, s2: str, e2: str
    ) -> None:
        assert (storefront_key(s1, e1) == storefront_key(s2, e2)) == ((s1, e1) == (s2, e2))

    @given(principals, idents, revisions, principals, idents, revisions)
    def test_decision_keys_are_one_per_store_order_and_revision(
        self, s1: str, o1: str, r1: int, s2: str, o2: str, r2: int
    ) -> None:
        same = decision_key(s1, o1, r1) == decision_key(s2, o2, r2)
        assert same == ((s1, o1, r1) == (s2, o2, r2))

    def test_the_sources_are_the_check_constraints_values(self) -> None:
        assert SOURCES == ("storefront", "decision")

    @pytest.mark.parametrize(("store", "part"), [("s/1", "e"), ("s", "e/1"), ("", "e")])
    def test_a_part_holding_a_slash_or_empty_has_no_key(self, store: str, part: str) -> None:
        with pytest.raises(ValueError, match="'/'"):
            storefront_key(store, part)
        with pytest.raises(ValueError, match="'/'"):
            decision_key(store, part, 0)

    def test_a_negative_revision_has_no_key(self) -> None:
        with pytest.raises(ValueError, match="revision"):
            decision_key("s", "o", -1)


class TestDerivedKeysOfTheLedgerAndWebhooks:
    """The ledger's idempotency keys and the webhooks' causes: one kind never spells
    another's key, and each is read one way only."""

    @given(principals, idents, principals, idents, idents)
    def test_a_commission_key_is_never_a_reversal_key(
        self, s1: str, o1: str, s2: str, o2: str, refund: str
    ) -> None:
        assert commission_key(s1, o1) != reversal_key(s2, o2, refund)

    @given(principals, idents, principals, idents)
    def test_commission_keys_are_one_per_order(self, s1: str, o1: str, s2: str, o2: str) -> None:
        assert (commission_key(s1, o1) == commission_key(s2, o2)) == ((s1, o1) == (s2, o2))

    @given(principals, idents, idents, principals, idents, idents)
    def test_reversal_keys_are_one_per_refund(
        self, s1: str, o1: str, r1: str, s2: str, o2: str, r2: str
    ) -> None:
        same = reversal_key(s1, o1, r1) == reversal_key(s2, o2, r2)
        assert same == ((s1, o1, r1) == (s2, o2, r2))

    @given(principals, idents, revisions, principals, idents, revisions)
    def test_attribution_causes_are_one_per_decision(
        self, s1: str, o1: str, r1: int, s2: str, o2: str, r2: int
    ) -> None:
        same = attribution_key(s1, o1, r1) == attribution_key(s2, o2, r2)
        assert same == ((s1, o1, r1) == (s2, o2, r2))


AT = datetime(2026, 12, 1, 12, tzinfo=UTC)


def placement(currency: str = "USD", price: str = "10.00") -> Placement:
    return Placement(currency, AT, (LineItem("p1", None, 1, Decimal(price), Decimal(0)),))


class TestOnePlacement:
    def test_the_decided_placement_replaces_a_different_one_held(self) -> None:
        held = HeldPlacement(placement("EUR", "99.00"), -1, posted=False)
        assert placement_to_apply(held, 0, placement()) == placement()

    def test_it_replaces_nothing_when_none_was_held(self) -> None:
        assert placement_to_apply(HeldPlacement(None, -1, False), 0, placement()) == placement()

    def test_the_same_placement_is_not_rewritten(self) -> None:
        held = HeldPlacement(placement(price="10.0"), -1, posted=False)
        assert placement_to_apply(held, 0, placement(price="10.00")) is None

    def test_a_stale_decision_rewrites_nothing(self) -> None:
        held = HeldPlacement(placement("EUR"), 2, posted=False)
        assert placement_to_apply(held, 1, placement()) is None
        assert placement_to_apply(held, 2, placement()) is None

    def test_nothing_is_rewritten_once_the_order_posted(self) -> None:
        held = HeldPlacement(placement("EUR"), 0, posted=True)
        assert placement_to_apply(held, 1, placement()) is None

    def test_a_later_time_is_another_placement(self) -> None:
        later = Placement("USD", AT + timedelta(seconds=1), placement().items)
        assert placement_to_apply(HeldPlacement(later, -1, False), 0, placement()) is not None
