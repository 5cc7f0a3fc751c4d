"""Attribution on the real stream: duplicates, late clicks, poison messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.commission.core.program import OpKind
from shared.config import Settings
from shared.events import Click, OrderCompleted, OrderItem, OrderPlaced, Topic, encode
from shared.kafka import make_producer
from tests.integration.harness import (
    Services,
    admin,
    eventually,
    ledger_lines,
    order_view,
    register_store,
    running,
)
from tests.integration.topics import read_topic

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


def click(u: str, visitor: str, at: datetime, affiliate: str = "aff") -> Click:
    return Click(
        event_id=f"c-{u}-{affiliate}-{at.timestamp():.0f}",
        occurred_at=at,
        received_at=at,
        affiliate_id=f"{affiliate}-{u}",
        store_id=f"s-{u}",
        link_code="k1.x.y",
        visitor_id=visitor,
    )


def order(u: str, visitor: str, at: datetime, n: int = 1) -> OrderPlaced:
    return OrderPlaced(
        event_id=f"o-{u}-{n}-p",
        occurred_at=at,
        store_id=f"s-{u}",
        order_id=f"o-{u}-{n}",
        visitor_id=visitor,
        currency="USD",
        items=[OrderItem(product_id="p1", quantity=1, unit_price=Decimal("100.00"))],
    )


async def produce(settings: Settings, items: list[tuple[Topic, str, bytes]]) -> None:
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for topic, key, value in items:
            await producer.send_and_wait(settings.topic(topic), value, key=key.encode())
    finally:
        await producer.stop()


async def joined_store(svc: Services, settings: Settings, u: str) -> None:
    """The store, in the program since well before the events (the commission service's own
    history is written straight into its tables: this test is about the stream)."""
    from services.commission.program.service import ProgramService
    from shared.clock import FixedClock

    await register_store(svc, settings, f"s-{u}", landing="https://x.example/{product_id}")
    sessions = svc.apps["commission"].state.sessions
    async with sessions() as session, session.begin():
        service = ProgramService(FixedClock(NOW - timedelta(days=60)))
        await service.change_program(session, f"s-{u}", OpKind.JOIN, "test")


async def test_an_order_sent_before_its_click_is_attributed_when_the_click_arrives(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    async with running(settings) as svc:
        await joined_store(svc, settings, u)
        o = order(u, f"v-{u}", NOW)
        await produce(settings, [(Topic.ORDERS, o.visitor_id, encode(o))])
        await eventually(
            lambda: order_view(
                svc, settings, (o.store_id, o.order_id), attribution_decided=True, affiliate_id=None
            )
        )
        late = click(u, f"v-{u}", NOW - timedelta(days=2))
        await produce(settings, [(Topic.CLICKS, late.visitor_id, encode(late))])
        got = await eventually(
            lambda: order_view(svc, settings, (o.store_id, o.order_id), affiliate_id=f"aff-{u}")
        )
        assert got["estimated"] == "6.00"
        done = OrderCompleted(
            event_id=f"{o.order_id}-c", occurred_at=NOW, store_id=o.store_id, order_id=o.order_id
        )
        await produce(settings, [(Topic.ORDERS, o.order_id, encode(done))])
        got = await eventually(
            lambda: order_view(svc, settings, (o.store_id, o.order_id), status="completed")
        )
        assert got["payable"] == "6.00"
    decisions = await read_topic(settings.kafka, settings.topic(Topic.ATTRIBUTIONS))
    assert [(d["type"], d["revision"], d["affiliate_id"]) for d in decisions] == [
        ("attribution", 0, None),
        ("attribution_changed", 1, f"aff-{u}"),
    ]


async def test_duplicates_of_every_event_change_nothing(settings: Settings) -> None:
    u = uuid.uuid4().hex[:8]
    c1, c2 = (
        click(u, f"v-{u}", NOW - timedelta(days=3), "a"),
        click(u, f"v-{u}", NOW - timedelta(days=1), "b"),
    )
    o = order(u, f"v-{u}", NOW)
    done = OrderCompleted(
        event_id=f"{o.order_id}-c", occurred_at=NOW, store_id=o.store_id, order_id=o.order_id
    )
    events = [
        (Topic.CLICKS, c1.visitor_id, encode(c1)),
        (Topic.CLICKS, c2.visitor_id, encode(c2)),
        (Topic.ORDERS, o.visitor_id, encode(o)),
        (Topic.ORDERS, o.order_id, encode(done)),
    ]
    async with running(settings) as svc:
        await joined_store(svc, settings, u)
        await produce(settings, events + events[::-1] + events)
        got = await eventually(
            lambda: order_view(
                svc, settings, (o.store_id, o.order_id), status="completed", affiliate_id=f"b-{u}"
            )
        )
        assert got["payable"] == "6.00"
        # let every duplicate through the pipeline, then look again
        pipeline = svc.apps["commission"].state.pipeline
        await eventually(lambda: _at_least(pipeline.processed, 3 * 2 + 1))  # orders ×3 + decision
    decisions = await read_topic(settings.kafka, settings.topic(Topic.ATTRIBUTIONS))
    assert [(d["revision"], d["affiliate_id"]) for d in decisions] == [(0, f"b-{u}")]
    async with running(settings) as svc:
        ledger = await ledger_lines(svc.commission, settings)
    mine = [x for x in ledger if x["order_id"] == o.order_id]
    assert sorted(x["amount"] for x in mine) == ["-6.00", "6.00"]


async def _at_least(value: int, n: int) -> bool | None:
    """A poll on a counter that only grows: has it reached ``n`` yet."""
    return True if value >= n else None


@pytest.mark.allow_logged_errors
async def test_a_poison_message_is_dead_lettered_and_the_rest_is_processed(
    settings: Settings,
) -> None:
    u = uuid.uuid4().hex[:8]
    o = order(u, f"v-{u}", NOW)
    async with running(settings) as svc:
        await joined_store(svc, settings, u)
        await produce(
            settings,
            [
                (Topic.ORDERS, "x", b"{not json"),
                (Topic.ORDERS, "x", b'{"type": "order_placed", "event_id": "e"}'),
                (Topic.ORDERS, o.visitor_id, encode(o)),
            ],
        )
        await eventually(
            lambda: order_view(svc, settings, (o.store_id, o.order_id), attribution_decided=True)
        )

        async def all_dead() -> list[dict[str, Any]] | None:
            # each consumer reads the orders topic at its own pace: wait for both
            letters = await read_topic(settings.kafka, settings.topic(Topic.DEAD_LETTERS))
            return letters if len(letters) >= 4 else None

        await eventually(all_dead)
    dead = await read_topic(settings.kafka, settings.topic(Topic.DEAD_LETTERS))
    # dead letters are at least once (a batch retried after a failure sends its letters again);
    # (consumer, topic, partition, offset) identifies one
    unique = {(d["consumer"], d["source_topic"], d["partition"], d["offset"]): d for d in dead}
    by_consumer: dict[str, list[str]] = {}
    for letter in unique.values():
        by_consumer.setdefault(letter["consumer"], []).append(letter["value"])
    assert sorted(by_consumer) == ["attribution", "commission"]
    for values in by_consumer.values():
        assert sorted(values) == sorted(["{not json", '{"type": "order_placed", "event_id": "e"}'])
    assert all(letter["reason"] for letter in dead)


async def _clicks_stored(settings: Settings, visitor: str, n: int) -> bool | None:
    from sqlalchemy import func, select

    from services.attribution.models import clicks as clicks_table
    from shared.db import make_engine

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            got = await conn.scalar(
                select(func.count()).where(clicks_table.c.visitor_id == visitor)
            )
    finally:
        await engine.dispose()
    return True if got == n else None


async def test_explain_shows_every_click_considered_and_why_it_lost(settings: Settings) -> None:
    u = uuid.uuid4().hex[:8]
    v = f"v-{u}"
    won = click(u, v, NOW - timedelta(days=1), "aff")
    earlier = click(u, v, NOW - timedelta(days=5), "rival")
    outside = click(u, v, NOW - timedelta(days=16), "old")
    bot = click(u, v, NOW - timedelta(hours=2), "bot").model_copy(update={"suspicious": True})
    elsewhere = click(u, v, NOW - timedelta(hours=3), "other").model_copy(
        update={"store_id": f"s2-{u}"}
    )
    after = click(u, v, NOW + timedelta(hours=1), "late")
    o = order(u, v, NOW)
    async with running(settings) as svc:
        await joined_store(svc, settings, u)
        resp = await svc.commission.post(
            "/v1/admin/affiliates",
            json={"affiliate_id": f"aff-{u}", "name": "a"},
            headers=admin(settings),
        )
        affiliate_key = resp.json()["api_key"]
        clicks = [won, earlier, outside, bot, elsewhere, after]
        await produce(settings, [(Topic.CLICKS, v, encode(c)) for c in clicks])
        # the explanation is what the decision saw: let every click be stored first (clicks
        # that cannot change the decision, after the order or on another store, reopen nothing)
        await eventually(lambda: _clicks_stored(settings, v, len(clicks)))
        await produce(settings, [(Topic.ORDERS, v, encode(o))])
        await eventually(
            lambda: order_view(svc, settings, (o.store_id, o.order_id), affiliate_id=f"aff-{u}")
        )
        full = (
            await svc.commission.get(
                f"/v1/stores/{o.store_id}/orders/{o.order_id}/attribution", headers=admin(settings)
            )
        ).json()
        mine = (
            await svc.commission.get(
                f"/v1/stores/{o.store_id}/orders/{o.order_id}/attribution",
                headers={"Authorization": f"Bearer {affiliate_key}"},
            )
        ).json()
        stranger = await svc.commission.get(
            f"/v1/stores/{o.store_id}/orders/{o.order_id}/attribution",
            headers={"Authorization": "Bearer nope"},
        )
    assert full["rule"] == "last_click"
    assert full["click_id"] == won.click_id
    assert full["window_start"].startswith((NOW - timedelta(days=15)).isoformat()[:19])
    verdicts = {c["click_id"]: c["verdict"] for c in full["considered"]}
    assert verdicts == {
        won.click_id: "won",
        earlier.click_id: "earlier_than_winner",
        outside.click_id: "outside_window",
        bot.click_id: "suspicious",
        elsewhere.click_id: "other_store",
        after.click_id: "after_order",
    }
    # the affiliate sees its own clicks in full, the others unnamed (no affiliate, no click)
    names = {c["affiliate_id"] for c in mine["considered"]}
    assert names == {f"aff-{u}", None}
    for c in mine["considered"]:
        assert (c["click_id"] is None) == (c["affiliate_id"] is None)
    assert stranger.status_code == 401


async def test_a_late_click_after_the_grace_period_changes_nothing_and_is_counted(
    settings: Settings,
) -> None:
    from shared.clock import FixedClock

    u = uuid.uuid4().hex[:8]
    clock = FixedClock(NOW)
    o = order(u, f"v-{u}", NOW)
    async with running(settings, clock) as svc:
        await joined_store(svc, settings, u)
        await produce(settings, [(Topic.ORDERS, o.visitor_id, encode(o))])
        await eventually(
            lambda: order_view(svc, settings, (o.store_id, o.order_id), attribution_decided=True)
        )
        clock.advance(timedelta(minutes=10, seconds=1))  # the default grace is 10 minutes
        late = click(u, f"v-{u}", NOW - timedelta(days=1))
        await produce(settings, [(Topic.CLICKS, late.visitor_id, encode(late))])
        stats = svc.apps["attribution"].state.service.stats
        await eventually(lambda: _at_least(stats.late_after_freeze, 1))
        assert (
            await order_view(svc, settings, (o.store_id, o.order_id), affiliate_id=None)
        ) is not None
    decisions = await read_topic(settings.kafka, settings.topic(Topic.ATTRIBUTIONS))
    assert [d["revision"] for d in decisions] == [0]


async def test_rebuild_recomputes_from_the_topics_and_reports_frozen_differences(
    settings: Settings,
) -> None:
    from services.attribution.rebuild import rebuild
    from shared.clock import FixedClock

    u = uuid.uuid4().hex[:8]
    clock = FixedClock(NOW)
    kept, frozen = order(u, f"v1-{u}", NOW, 1), order(u, f"v2-{u}", NOW, 2)
    async with running(settings, clock) as svc:
        await joined_store(svc, settings, u)
        early = click(u, f"v1-{u}", NOW - timedelta(days=2))
        await produce(settings, [(Topic.CLICKS, early.visitor_id, encode(early))])
        await produce(settings, [(Topic.ORDERS, o.visitor_id, encode(o)) for o in (kept, frozen)])
        await eventually(
            lambda: order_view(
                svc, settings, (frozen.store_id, frozen.order_id), attribution_decided=True
            )
        )
        clock.advance(timedelta(hours=1))  # past the grace: the next click is too late
        late = click(u, f"v2-{u}", NOW - timedelta(days=1))
        await produce(settings, [(Topic.CLICKS, late.visitor_id, encode(late))])
        stats = svc.apps["attribution"].state.service.stats
        await eventually(lambda: _at_least(stats.late_after_freeze, 1))
    report = await rebuild(
        settings.kafka, settings.topic_prefix, NOW - timedelta(days=1), timedelta(days=15)
    )
    assert (report.orders, report.same) == (2, 1)
    (diff,) = report.differences
    assert (diff.order_id, diff.emitted, diff.recomputed) == (frozen.order_id, None, late.click_id)
