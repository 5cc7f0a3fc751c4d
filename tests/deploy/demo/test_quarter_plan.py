"""The quarter the demo replays: what it plans is a possible history of three stores."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from deploy.demo import quarter as q
from shared.events import (
    Click,
    Event,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderRefunded,
    Topic,
)

END = datetime(2026, 6, 30, tzinfo=UTC)
START = END - timedelta(days=q.DAYS)
#: the stores of the demo, at a tenth of their sizes
SMALL = [
    q.StorePlan("seed", 860, 460, 26, 9, rate_change_on_day=45),
    q.StorePlan("outlet", 90, 55, 3, 2, exits_on_day=60),
]


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> q.Quarter:
    monkeypatch.setattr(q, "PLANS", SMALL)
    return q.plan_events("r1", START, END, random.Random(11))


def test_a_seed_gives_the_same_quarter(small: q.Quarter) -> None:
    again = q.plan_events("r1", START, END, random.Random(11))
    assert again.events == small.events
    other = q.plan_events("r1", START, END, random.Random(12))
    assert other.events != small.events


def test_every_event_happens_inside_the_quarter(small: q.Quarter) -> None:
    assert all(START <= e.occurred_at < END for _, _, e in small.events)


def test_the_sizes_follow_the_plans(small: q.Quarter) -> None:
    by_topic: dict[Topic, list[Event]] = defaultdict(list)
    for topic, _, event in small.events:
        by_topic[topic].append(event)
    assert len(by_topic[Topic.CLICKS]) == sum(p.clicks for p in SMALL)
    assert len(by_topic[Topic.CATALOG]) == 30 * len(SMALL)
    placed = [e for e in by_topic[Topic.ORDERS] if isinstance(e, OrderPlaced)]
    assert 0 < len(placed) <= sum(p.orders + p.organic_orders for p in SMALL)


def test_an_order_follows_its_buyers_click_and_its_fate_follows_it(small: q.Quarter) -> None:
    clicked: dict[str, datetime] = {}
    placed: dict[str, OrderPlaced] = {}
    for _, key, event in small.events:
        if isinstance(event, Click):
            assert key == event.visitor_id
            clicked.setdefault(event.visitor_id, event.occurred_at)
        elif isinstance(event, OrderPlaced):
            assert key == event.visitor_id
            placed[event.order_id] = event
            if event.visitor_id in clicked:  # affiliate orders come after a click
                assert event.occurred_at > clicked[event.visitor_id]
        elif isinstance(event, OrderCompleted | OrderCancelled | OrderRefunded):
            order = placed[event.order_id]
            assert key == order.visitor_id
            assert event.occurred_at >= order.occurred_at


def test_the_program_history_is_a_join_then_the_plans_changes() -> None:
    seed, outlet = q.program_history(SMALL[0]), q.program_history(SMALL[1])
    assert [(s.day, s.method, s.path, s.body) for s in seed] == [
        (-5, "POST", "/program/join", {}),
        (45, "PUT", "/rates/default", {"rate": "0.08"}),
    ]
    assert [(s.day, s.path) for s in outlet] == [(-5, "/program/join"), (60, "/program/exit")]
