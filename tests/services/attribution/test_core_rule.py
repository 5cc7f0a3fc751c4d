"""The 15-day last-click rule at its edges, and against a brute-force reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.attribution.core import (
    DEFAULT_WINDOW,
    Click,
    OrderRef,
    Verdict,
    candidates,
    decide,
    explain,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ORDER = OrderRef("o1", "s1", "v1", T0)


def click(cid: str, at: datetime, **kw: object) -> Click:
    fields: dict[str, object] = {"store_id": "s1", "visitor_id": "v1", "affiliate_id": "aff-a"}
    fields.update(kw)
    return Click(click_id=cid, occurred_at=at, **fields)  # type: ignore[arg-type]


class TestWindowBoundaries:
    def test_click_exactly_15_days_before_is_attributed(self) -> None:
        assert decide(ORDER, [click("c1", T0 - timedelta(days=15))]).affiliate_id == "aff-a"

    def test_click_15_days_and_one_second_before_is_not(self) -> None:
        d = decide(ORDER, [click("c1", T0 - timedelta(days=15, seconds=1))])
        assert d.click is None
        assert d.rule == "organic"

    def test_click_at_the_order_instant_counts(self) -> None:
        assert decide(ORDER, [click("c1", T0)]).rule == "last_click"

    def test_click_after_the_order_is_ignored(self) -> None:
        assert decide(ORDER, [click("c1", T0 + timedelta(seconds=1))]).click is None

    def test_window_is_reported(self) -> None:
        d = decide(ORDER, [])
        assert (d.window_start, d.window_end) == (T0 - DEFAULT_WINDOW, T0)

    def test_window_is_configurable(self) -> None:
        c = click("c1", T0 - timedelta(days=20))
        assert decide(ORDER, [c], timedelta(days=30)).click == c
        assert decide(ORDER, [c]).click is None


class TestLastClickWins:
    def test_two_clicks_the_later_wins(self) -> None:
        a = click("c1", T0 - timedelta(days=5), affiliate_id="aff-a")
        b = click("c2", T0 - timedelta(days=1), affiliate_id="aff-b")
        assert decide(ORDER, [b, a]).affiliate_id == "aff-b"

    def test_same_instant_the_greater_click_id_wins(self) -> None:
        a = click("c-a", T0 - timedelta(days=1), affiliate_id="aff-a")
        b = click("c-b", T0 - timedelta(days=1), affiliate_id="aff-b")
        assert decide(ORDER, [b, a]).click == b
        assert decide(ORDER, [a, b]).click == b

    def test_reclick_restarts_the_window(self) -> None:
        old = click("c1", T0 - timedelta(days=20))
        new = click("c2", T0 - timedelta(days=10))
        assert decide(ORDER, [old, new]).click == new
        assert decide(ORDER, [old]).click is None

    def test_suspicious_latest_click_is_skipped(self) -> None:
        good = click("c1", T0 - timedelta(days=3))
        bad = click("c2", T0 - timedelta(days=1), suspicious=True, affiliate_id="aff-b")
        assert decide(ORDER, [good, bad]).click == good

    def test_other_store_and_other_visitor_never_count(self) -> None:
        assert (
            decide(ORDER, [click("c1", T0, store_id="s2"), click("c2", T0, visitor_id="v2")]).click
            is None
        )


class TestExplain:
    def test_every_click_gets_a_reason(self) -> None:
        clicks = [
            click("win", T0 - timedelta(days=1)),
            click("early", T0 - timedelta(days=2)),
            click("old", T0 - timedelta(days=16)),
            click("late", T0 + timedelta(hours=1)),
            click("sus", T0 - timedelta(hours=1), suspicious=True),
            click("other", T0 - timedelta(hours=2), store_id="s2"),
        ]
        decision, verdicts = explain(ORDER, clicks)
        assert decision.click is not None
        assert decision.click.click_id == "win"
        assert {c.click_id: v for c, v in verdicts} == {
            "win": Verdict.WON,
            "early": Verdict.EARLIER,
            "old": Verdict.OUTSIDE_WINDOW,
            "late": Verdict.AFTER_ORDER,
            "sus": Verdict.SUSPICIOUS,
            "other": Verdict.OTHER_STORE,
        }


# A brute-force reference: sort all eligible clicks and take the last one.
def reference(order: OrderRef, clicks: list[Click], window: timedelta) -> Click | None:
    eligible = [
        c
        for c in clicks
        if c.store_id == order.store_id
        and c.visitor_id == order.visitor_id
        and not c.suspicious
        and order.placed_at - window <= c.occurred_at <= order.placed_at
    ]
    eligible.sort(key=lambda c: (c.occurred_at, c.click_id))
    return eligible[-1] if eligible else None


def rank(c: Click | None) -> tuple[datetime, str] | None:
    """Clicks may share an id in generated data; the rule only sees (time, id)."""
    return (c.occurred_at, c.click_id) if c else None


# Offsets cluster around the edges (0 and 15 days) so that boundaries and ties are hit often.
_EDGE = int(DEFAULT_WINDOW.total_seconds())
offsets = st.one_of(
    st.integers(-3, 3),
    st.integers(_EDGE - 3, _EDGE + 3),
    st.integers(-86_400, 20 * 86_400),
)
clicks_st = st.lists(
    st.builds(
        lambda cid, off, store, vis, aff, sus: Click(
            f"c{cid}", store, vis, aff, T0 - timedelta(seconds=off), sus
        ),
        st.integers(0, 30),
        offsets,
        st.sampled_from(["s1", "s2"]),
        st.sampled_from(["v1", "v2"]),
        st.sampled_from(["aff-a", "aff-b", "aff-c"]),
        st.booleans(),
    ),
    max_size=25,
)


@settings(max_examples=400)
@given(clicks=clicks_st, window_days=st.sampled_from([15, 1, 30]))
def test_decide_equals_brute_force_reference(clicks: list[Click], window_days: int) -> None:
    window = timedelta(days=window_days)
    assert rank(decide(ORDER, clicks, window).click) == rank(reference(ORDER, clicks, window))


@given(clicks=clicks_st, data=st.data())
def test_decision_is_independent_of_arrival_order_and_duplicates(
    clicks: list[Click], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(clicks + clicks))
    assert rank(decide(ORDER, clicks).click) == rank(decide(ORDER, shuffled).click)


@settings(max_examples=300)
@given(clicks=clicks_st, sample=st.integers(0, 6), window_days=st.sampled_from([15, 1]))
def test_a_decision_over_its_bounded_candidates_equals_one_over_every_click(
    clicks: list[Click], sample: int, window_days: int
) -> None:
    """``candidates`` keeps at most ``sample + 1`` clicks, and deciding and explaining over
    them gives the decision and the first ``sample`` verdicts that all the clicks give."""
    unique = list({c.click_id: c for c in clicks}.values())
    window = timedelta(days=window_days)
    kept = candidates(ORDER, unique, window, sample)
    assert len(kept) <= sample + 1
    full, full_verdicts = explain(ORDER, unique, window)
    bounded, bounded_verdicts = explain(ORDER, kept, window)
    assert rank(bounded.click) == rank(full.click)
    assert bounded_verdicts[:sample] == full_verdicts[:sample]
