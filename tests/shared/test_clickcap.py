"""The click cap's rule, pure (shared.clickcap)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.clickcap import CapKey, admit, cap_keys
from shared.events import Click

T0 = datetime(2026, 12, 5, 23, 59, 50, tzinfo=UTC)


def click(n: int, visitor: str = "v1", ip: str | None = "192.0.2.1", at: datetime = T0) -> Click:
    return Click(
        event_id=f"c{n:03}",
        occurred_at=at + timedelta(seconds=n),
        received_at=at,
        affiliate_id="a",
        store_id="s",
        link_code="k1.x.y",
        visitor_id=visitor,
        ip=ip,
    )


def test_a_visitor_stores_the_first_clicks_up_to_the_cap_per_day_and_the_rest_is_counted() -> None:
    clicks = [click(n) for n in range(15)]  # ten on the 5th, five on the 6th (UTC)
    got = admit(reversed(clicks), {}, cap=3)
    assert [c.click_id for c in got.admitted] == ["c000", "c001", "c002", "c010", "c011", "c012"]
    day5 = CapKey(T0.date(), "k1.x.y", "visitor:v1")
    day6 = CapKey(T0.date() + timedelta(days=1), "k1.x.y", "visitor:v1")
    assert got.overflow == {day5: 7, day6: 2}
    assert sum(got.overflow.values()) + len(got.admitted) == len(clicks)


def test_an_address_is_capped_across_visitors_and_each_refusal_is_counted_once() -> None:
    clicks = [click(n, visitor=f"v{n}") for n in range(5)]
    address = CapKey(T0.date(), "k1.x.y", "address:192.0.2.1")
    got = admit(clicks, {address: 1}, cap=3)
    assert len(got.admitted) == 2
    assert got.overflow == {address: 3}


def test_what_a_key_stored_before_counts_and_a_click_without_address_has_one_key() -> None:
    c = click(0, ip=None)
    assert cap_keys(c) == (CapKey(T0.date(), "k1.x.y", "visitor:v1"),)
    assert admit([c], {cap_keys(c)[0]: 3}, cap=3).admitted == []
    assert len(cap_keys(click(0, ip="x" * 500))[1].subject) <= 200
