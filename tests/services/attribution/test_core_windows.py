"""A store's attribution window over time (per-program windows), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.attribution.core import Click, OrderRef, Windows, decide
from services.attribution.rebuild import Difference, compare

T = datetime(2026, 3, 1, tzinfo=UTC)
D15, D3 = timedelta(days=15), timedelta(days=3)


def test_the_default_holds_until_a_change_and_a_change_holds_from_its_instant() -> None:
    w = Windows(D15).with_change(T, D3)
    assert w is not None
    assert w.at(T - timedelta(microseconds=1)) == D15
    assert w.at(T) == D3  # inclusive: an order placed at the change's instant gets the new one
    back = w.with_change(T + timedelta(days=1), None)
    assert back is not None
    assert back.at(T + timedelta(days=2)) == D15
    assert back.widest == D15
    wide = Windows(D15).with_change(T, timedelta(days=30))
    assert wide is not None
    assert wide.widest == timedelta(days=30)


def test_a_change_that_changes_nothing_is_not_recorded() -> None:
    w = Windows(D15)
    assert w.with_change(T, D15) is None  # the default is in force
    assert w.with_change(T, None) is None
    w3 = w.with_change(T, D3)
    assert w3 is not None
    assert w3.with_change(T + timedelta(days=1), D3) is None
    assert w3.with_change(T, timedelta(days=7)) is None  # a change at that instant is recorded


def test_a_late_change_lands_in_its_place_in_time() -> None:
    w = Windows(D15).with_change(T + timedelta(days=10), D3)
    assert w is not None
    earlier = w.with_change(T, timedelta(days=7))
    assert earlier is not None
    assert [earlier.at(T + timedelta(days=d)) for d in (-1, 0, 9, 10)] == [
        D15,
        timedelta(days=7),
        timedelta(days=7),
        D3,
    ]


changes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=40),
        st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
    ),
    max_size=8,
)


@given(changes, st.integers(min_value=-5, max_value=45))
def test_the_window_in_force_is_the_last_change_at_or_before(
    raw: list[tuple[int, int | None]], day: int
) -> None:
    w = Windows(D15)
    recorded: dict[int, int | None] = {}
    for at, days in raw:
        after = w.with_change(T + timedelta(days=at), timedelta(days=days) if days else None)
        if after is not None:
            w = after
            recorded[at] = days
    when = T + timedelta(days=day)
    earlier = [at for at in recorded if at <= day]
    expected = D15
    if earlier:
        days = recorded[max(earlier)]
        expected = timedelta(days=days) if days else D15
    assert w.at(when) == expected
    assert w.widest >= w.at(when)


def test_an_order_is_decided_with_its_stores_window_at_placement() -> None:
    w = Windows(D15).with_change(T, D3)
    assert w is not None
    click = Click("c1", "s1", "v1", "a", T + timedelta(days=1))
    before = OrderRef("o1", "s1", "v1", T + timedelta(days=5))  # 4 days after the click
    assert decide(before, [click], w.at(before.placed_at)).click is None
    assert decide(before, [click], D15).click == click


def test_the_rebuild_uses_each_stores_window() -> None:
    w = Windows(D15).with_change(T, D3)
    assert w is not None
    clicks = [
        Click("c1", "s1", "v1", "a", T + timedelta(days=1)),
        Click("c2", "s2", "v1", "a", T + timedelta(days=1)),
    ]
    orders = [
        OrderRef("o1", "s1", "v1", T + timedelta(days=5)),
        OrderRef("o2", "s2", "v1", T + timedelta(days=5)),
    ]
    report = compare(clicks, orders, {("s1", "o1"): "c1", ("s2", "o2"): "c2"}, D15, {"s1": w})
    assert report.differences == [Difference("s1", "o1", "c1", None)]
