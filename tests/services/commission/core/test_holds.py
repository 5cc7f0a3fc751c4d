"""Hold rules in the pure core: which orders a hold holds, and hold/release sums against a
brute-force reference (nothing lost, nothing paid twice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.holds import (
    Earned,
    Hold,
    HoldNotActive,
    HoldStatus,
    end,
    holding,
    payable_split,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
stores = st.sampled_from(["s1", "s2", "s3"])
earned_st = st.lists(
    st.builds(
        Earned,
        stores,
        st.sampled_from(["USD", "EUR"]),
        st.integers(-5_000, 50_000),
        st.integers(-3, 3).map(lambda d: T0 + timedelta(days=d)),
    ),
    max_size=12,
)
holds_st = st.lists(
    st.builds(
        Hold,
        st.integers(1, 10_000),
        st.sampled_from(["aff", "other"]),
        st.one_of(st.none(), stores),
        st.sampled_from(list(HoldStatus)),
        st.just(T0),
    ),
    max_size=4,
)


class TestHolding:
    def test_a_hold_holds_its_affiliates_orders_on_its_store_or_every_store(self) -> None:
        store_hold = Hold(1, "aff", "s1", HoldStatus.ACTIVE, T0)
        everywhere = Hold(2, "aff", None, HoldStatus.ACTIVE, T0)
        assert holding([store_hold], "s1", "aff") is store_hold
        assert holding([store_hold], "s2", "aff") is None
        assert holding([store_hold], "s1", "other") is None
        assert holding([everywhere], "s9", "aff") is everywhere
        assert holding([end(store_hold, HoldStatus.RELEASED)], "s1", "aff") is None

    def test_an_ended_hold_cannot_end_again(self) -> None:
        released = end(Hold(1, "aff", None, HoldStatus.ACTIVE, T0), HoldStatus.RELEASED)
        with pytest.raises(HoldNotActive) as err:
            end(released, HoldStatus.VOIDED)
        assert (err.value.status_code, err.value.code) == (409, "hold_not_active")


class TestSums:
    @given(earned_st, holds_st, st.booleans())
    def test_payable_and_held_match_the_reference_and_release_loses_nothing(
        self, earned: list[Earned], holds: list[Hold], requires_lock: bool
    ) -> None:
        payable, held = payable_split(earned, holds, "aff", T0, requires_lock=requires_lock)
        # brute force: an order is held when any active hold of "aff" names its store or none
        want_payable: dict[str, int] = {}
        want_held: dict[str, int] = {}
        for e in earned:
            is_held = any(
                h.status is HoldStatus.ACTIVE
                and h.affiliate_id == "aff"
                and h.store_id in (None, e.store_id)
                for h in holds
            )
            if is_held:
                want_held[e.currency] = want_held.get(e.currency, 0) + e.minor
            elif not requires_lock or e.locks_at <= T0:
                want_payable[e.currency] = want_payable.get(e.currency, 0) + e.minor
        assert (payable, held) == (want_payable, want_held)
        # every hold released: what they held is payable again, nothing lost
        released = [
            end(h, HoldStatus.RELEASED) if h.status is HoldStatus.ACTIVE else h for h in holds
        ]
        after, none = payable_split(earned, released, "aff", T0, requires_lock=requires_lock)
        assert none == {}
        for currency in set(after) | set(payable) | set(held):
            locked_held = sum(
                e.minor
                for e in earned
                if e.currency == currency
                and holding(holds, e.store_id, "aff") is not None
                and (not requires_lock or e.locks_at <= T0)
            )
            assert after.get(currency, 0) == payable.get(currency, 0) + locked_held
