"""The pure rules of the reports: ranges, buckets, shares, per-refund reversals, ranking."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.commission.channel.service import ASCENDING, SORTS
from services.commission.core.commission import (
    LineItem,
    OrderFacts,
    OrderStatus,
    Refund,
    RefundItem,
    compute_order,
)
from services.commission.core.errors import RangeError
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp
from services.commission.core.reports import (
    MAX_DAYS,
    Granularity,
    bucket_of,
    buckets,
    day_range,
    hot_products,
    product_score,
    refund_reversals,
    share,
)

D = Decimal
TODAY = date(2026, 11, 23)
days = st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31))


def test_the_default_range_is_the_last_90_days_with_today() -> None:
    r = day_range(None, None, TODAY)
    assert (r.first, r.last, r.days) == (TODAY - timedelta(days=89), TODAY, 90)
    assert r.start == datetime(2026, 8, 26, tzinfo=UTC)
    assert r.end == datetime(2026, 11, 24, tzinfo=UTC)


def test_bad_ranges_are_refused_with_a_reason() -> None:
    with pytest.raises(RangeError) as backwards:
        day_range(TODAY, TODAY - timedelta(days=1), TODAY)
    assert backwards.value.code == "empty_range"
    with pytest.raises(RangeError) as long:
        day_range(TODAY - timedelta(days=MAX_DAYS), TODAY, TODAY)
    assert long.value.code == "range_too_long"
    assert day_range(TODAY - timedelta(days=MAX_DAYS - 1), TODAY, TODAY).days == MAX_DAYS


@given(days, st.integers(0, 120), st.sampled_from(list(Granularity)))
def test_buckets_cover_every_day_of_the_range_once_in_order(
    first: date, span: int, g: Granularity
) -> None:
    r = day_range(first, first + timedelta(days=span), TODAY)
    bs = buckets(r, g)
    assert bs == sorted(set(bs))
    in_range = [r.first + timedelta(days=n) for n in range(r.days)]
    assert {bucket_of(d, g) for d in in_range} == set(bs)
    for d in in_range:
        b = bucket_of(d, g)
        assert b <= d
        if g is Granularity.DAY:
            assert b == d
        elif g is Granularity.WEEK:
            assert b.weekday() == 0
            assert (d - b).days < 7
        else:
            assert b.day == 1
            assert (b.year, b.month) == (d.year, d.month)


def test_share_rounds_half_up_and_has_no_value_without_visitors() -> None:
    assert share(1, 3) == D("0.3333")
    assert share(2, 3) == D("0.6667")
    assert share(1, 8) == D("0.1250")
    assert share(0, 0) is None


T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROGRAM = ProgramHistory(
    (
        ProgramOp(OpKind.JOIN, T0),
        ProgramOp(OpKind.DEFAULT_RATE, T0, rate=D("0.07")),
        ProgramOp(OpKind.CATEGORY_RATE, T0, key="c2", rate=D("0.11")),
    )
)

amounts = st.decimals(min_value=D("0.01"), max_value=D("500"), places=2)


@st.composite
def refunded_orders(draw: st.DrawFn) -> OrderFacts:
    lines = draw(
        st.lists(
            st.tuples(st.sampled_from(["p1", "p2", "p3"]), st.sampled_from([None, "c2"]), amounts),
            min_size=1,
            max_size=4,
        )
    )
    items = tuple(LineItem(p, c, 1, price, D(0)) for p, c, price in lines)
    refunds = tuple(
        Refund(
            f"r{n}",
            T0 + timedelta(days=3, hours=draw(st.integers(0, 48))),
            (RefundItem(draw(st.sampled_from([i.product_id for i in items])), draw(amounts)),),
        )
        for n in range(draw(st.integers(0, 4)))
    )
    status = draw(st.sampled_from(list(OrderStatus)))
    return OrderFacts(
        "o1", "s1", "USD", T0 + timedelta(days=1), items, status, None, "aff", refunds=refunds
    )


@given(refunded_orders())
def test_reversals_per_refund_add_up_to_the_orders_reversal(facts: OrderFacts) -> None:
    per_refund = refund_reversals(facts, PROGRAM)
    assert set(per_refund) == {(r.refund_id, n) for r in facts.refunds for n in range(len(r.items))}
    assert all(v >= 0 for v in per_refund.values())
    assert sum(per_refund.values(), D(0)) == compute_order(facts, PROGRAM).reversed


def test_a_refund_reverses_amount_times_rate_capped_at_the_lines_commission() -> None:
    items = (LineItem("p1", "c2", 1, D("10.00"), D(0)),)
    refunds = (
        Refund("r1", T0 + timedelta(days=2), (RefundItem("p1", D("4.00")),)),
        Refund("r2", T0 + timedelta(days=3), (RefundItem("p1", D("9.00")),)),
    )
    facts = OrderFacts(
        "o1",
        "s1",
        "USD",
        T0 + timedelta(days=1),
        items,
        refunds=refunds,
        affiliate_id="aff",
        status=OrderStatus.COMPLETED,
    )
    # commission 1.10 (11%); r1 takes 0.44; r2 would take 0.99 but only 0.66 is left
    assert refund_reversals(facts, PROGRAM) == {("r1", 0): D("0.44"), ("r2", 0): D("0.66")}


def test_the_score_is_the_documented_sum() -> None:
    assert product_score(False, False, D("0.06"), 0) == D("6.0000")
    assert product_score(True, True, D("0.06"), 99) == D("30") + D("10") + D("6") + D("20")
    assert product_score(False, False, D("0.10"), 9) == D("20.0000")


@given(st.booleans(), st.booleans(), st.integers(0, 10**6), st.integers(1, 50))
def test_a_higher_rate_never_ranks_lower(hot: bool, main: bool, orders: int, bump: int) -> None:
    low = product_score(hot, main, D("0.05"), orders)
    high = product_score(hot, main, D("0.05") + D(bump) / 1000, orders)
    assert high > low
    assert [
        r["product_id"]
        for r in _channel_order([_row("s", "a", low, "0.05"), _row("s", "b", high, "0.06")])
    ] == ["b", "a"]


def _row(store: str, product: str, score: Decimal, rate: str) -> dict[str, Any]:
    return {"store_id": store, "product_id": product, "score": score, "rate": D(rate)}


def _channel_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The product channel's order as its keyset declares it (``SORTS["score"]``: each column
    descending unless ascending), applied in Python: what the SQL ``ORDER BY`` is built from."""
    out = list(rows)
    for column in reversed(SORTS["score"]):
        out.sort(key=lambda r: r[column], reverse=column not in ASCENDING)
    return out


def test_ties_go_to_the_higher_rate_then_the_ids() -> None:
    rows = _channel_order(
        [
            _row("s2", "x", D("10"), "0.05"),
            _row("s1", "y", D("10"), "0.08"),
            _row("s1", "a", D("10"), "0.05"),
        ]
    )
    assert [(r["store_id"], r["product_id"]) for r in rows] == [
        ("s1", "y"),
        ("s1", "a"),
        ("s2", "x"),
    ]


def test_hot_products_are_the_top_sellers_with_at_least_one_order() -> None:
    sold = {"a": 3, "b": 9, "c": 3, "d": 1, "e": 0, "f": 3}
    assert hot_products(sold, top=2) == {"b", "a"}  # a ties with c and f: the id decides
    assert hot_products(sold, top=10) == {"a", "b", "c", "d", "f"}
    assert hot_products({"a": 0}) == set()
