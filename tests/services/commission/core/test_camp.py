"""The camp's ranking, pure: the visitor's profile (strongest kind per category and store in
the last 90 days, bounded), the documented multiplier and the order (against brute force)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.camp import (
    HISTORY,
    NO_PROFILE,
    Interest,
    Kind,
    Profile,
    camp_score,
    multiplier,
    profile,
    sort_key,
)

D = Decimal
AS_OF = datetime(2026, 11, 28, 12, tzinfo=UTC)
STRENGTH = {"view": 1, "click": 2, "order": 3}  # docs/camp.md: purchase > click > view

interests = st.builds(
    Interest,
    store_id=st.sampled_from(["s1", "s2", "s3"]),
    category_id=st.sampled_from([None, "c1", "c2"]),
    kind=st.sampled_from(list(Kind)),
    last_at=st.integers(min_value=-100 * 24, max_value=24).map(
        lambda h: AS_OF - timedelta(hours=h)
    ),
)


def brute_profile(rows: list[Interest]) -> Profile:
    """Every row in [as_of - 90 days, as_of], the strongest kind per key (no bound)."""
    cats: dict[str, int] = {}
    stores: dict[str, int] = {}
    for r in rows:
        if AS_OF - timedelta(days=90) <= r.last_at <= AS_OF:
            s = STRENGTH[r.kind.value]
            stores[r.store_id] = max(stores.get(r.store_id, 0), s)
            if r.category_id:
                cats[r.category_id] = max(cats.get(r.category_id, 0), s)
    return Profile(cats, stores)


class TestProfile:
    @given(st.lists(interests, max_size=30))
    def test_the_strongest_kind_per_category_and_store_in_the_last_90_days(
        self, rows: list[Interest]
    ) -> None:
        got = profile(rows, AS_OF)
        want = brute_profile(rows)
        assert dict(got.categories) == dict(want.categories)
        assert dict(got.stores) == dict(want.stores)

    def test_both_ends_of_the_90_days_count(self) -> None:
        rows = [
            Interest("s1", "c1", Kind.VIEW, AS_OF - HISTORY),
            Interest("s2", "c2", Kind.VIEW, AS_OF),
            Interest("s3", "c3", Kind.ORDER, AS_OF - HISTORY - timedelta(microseconds=1)),
            Interest("s4", "c4", Kind.ORDER, AS_OF + timedelta(microseconds=1)),
        ]
        p = profile(rows, AS_OF)
        assert dict(p.stores) == {"s1": 1, "s2": 1}
        assert dict(p.categories) == {"c1": 1, "c2": 1}

    def test_a_purchase_outweighs_a_click_which_outweighs_a_view(self) -> None:
        at = AS_OF - timedelta(days=1)
        rows = [
            Interest("s1", "c1", Kind.VIEW, at),
            Interest("s1", "c1", Kind.ORDER, at - timedelta(days=10)),
            Interest("s2", "c2", Kind.CLICK, at),
            Interest("s2", "c2", Kind.VIEW, at),
        ]
        p = profile(rows, AS_OF)
        assert dict(p.stores) == {"s1": 3, "s2": 2}
        assert dict(p.categories) == {"c1": 3, "c2": 2}

    def test_a_visitor_s_profile_is_bounded_strongest_then_most_recent(self) -> None:
        rows = [
            Interest(f"s{n:03}", f"c{n:03}", Kind.VIEW, AS_OF - timedelta(minutes=n))
            for n in range(120)
        ] + [Interest("bought", "bought-c", Kind.ORDER, AS_OF - timedelta(days=80))]
        p = profile(rows, AS_OF, limit=50)
        assert len(p.stores) == 50
        assert len(p.categories) == 50
        assert p.stores["bought"] == 3  # the strongest first, however old
        assert p.categories["bought-c"] == 3
        assert set(p.stores) - {"bought"} == {f"s{n:03}" for n in range(49)}  # most recent

    def test_no_history_is_no_profile(self) -> None:
        assert profile([], AS_OF).empty
        assert NO_PROFILE.empty


class TestScore:
    def test_the_documented_weights(self) -> None:
        assert multiplier(0, 0) == 1
        assert multiplier(1, 0) == D("1.15")  # a category viewed
        assert multiplier(0, 1) == D("1.10")  # a store viewed
        assert multiplier(2, 2) == D("1.50")  # both clicked
        assert multiplier(3, 3) == D("1.75")  # both bought from: the most there is

    @given(
        st.decimals(min_value=0, max_value=1000, places=4),
        st.sampled_from([None, "c1", "c2"]),
        st.sampled_from(["s1", "s2"]),
        st.integers(0, 3),
        st.integers(0, 3),
    )
    def test_final_is_base_times_the_boost_exactly(
        self, base: Decimal, category: str | None, store: str, kc: int, ks: int
    ) -> None:
        p = Profile({"c1": kc}, {"s1": ks})
        k_cat = kc if category == "c1" else 0
        k_store = ks if store == "s1" else 0
        want = base * (1 + D("0.15") * k_cat + D("0.10") * k_store)
        got = camp_score(base, category, store, p)
        assert got == want
        assert got >= base  # the boost never lowers a product
        exponent = got.as_tuple().exponent
        assert isinstance(exponent, int)
        assert exponent >= -6  # exact at six places: no rounding

    def test_without_history_the_plain_score(self) -> None:
        assert camp_score(D("42.5"), "c1", "s1", NO_PROFILE) == D("42.5")


class TestOrder:
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([D("5"), D("15"), D("15.0000"), D("38.01")]),
                st.sampled_from([D("0.05"), D("0.15")]),
                st.sampled_from(["s1", "s2"]),
                st.text("abc", min_size=1, max_size=3),
            ),
            max_size=20,
            unique_by=lambda r: (r[2], r[3]),
        )
    )
    def test_higher_score_first_then_higher_rate_then_ids(
        self, rows: list[tuple[Decimal, Decimal, str, str]]
    ) -> None:
        ordered = sorted(rows, key=lambda r: sort_key(*r))
        for x, y in itertools.pairwise(ordered):
            assert x[0] > y[0] or (
                x[0] == y[0] and (x[1] > y[1] or (x[1] == y[1] and (x[2], x[3]) < (y[2], y[3])))
            )
