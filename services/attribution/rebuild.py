"""`alliance attribution rebuild --from <time>`: recompute decisions from the retained topics
and report what differs from what was emitted.

The comparison is pure (:func:`compare`); :func:`rebuild` only reads the three topics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from services.attribution.core import Click as CoreClick
from services.attribution.core import (
    CouponHistory,
    CouponVersion,
    Decision,
    OrderRef,
    Policies,
    Windows,
    candidates,
    coupon_for,
    decide,
)
from shared.config import KafkaConnection
from shared.coupons import coupon_key
from shared.directory import DirectoryVersions
from shared.events import (
    Attribution,
    Click,
    CouponEntry,
    OrderPlaced,
    StoreEntry,
    Topic,
    directory_adapter,
    order_event_adapter,
)
from shared.kafka import stream_topic


@dataclass(frozen=True, slots=True)
class Difference:
    store_id: str
    order_id: str
    #: the winner as published (latest revision): a click id, ``coupon:<CODE>`` for a coupon
    #: code (:func:`winner`); None: organic
    emitted: str | None
    recomputed: str | None
    missing: bool = False  # no decision was published at all


@dataclass
class Report:
    orders: int = 0
    same: int = 0
    differences: list[Difference] = field(default_factory=list)


def winner(click_id: str | None, coupon_code: str | None) -> str | None:
    """How a decision's winner is compared: its click id, or ``coupon:<CODE>``."""
    return f"coupon:{coupon_code}" if coupon_code is not None else click_id


def _winner(decision: Decision) -> str | None:
    click = decision.click.click_id if decision.click else None
    return winner(click, decision.coupon.code if decision.coupon else None)


def compare(
    clicks: Iterable[CoreClick],
    orders: Iterable[OrderRef],
    emitted: dict[tuple[str, str], str | None],
    window: timedelta,
    windows: Mapping[str, Windows] | None = None,
    policies: Mapping[str, Policies] | None = None,
    codes: Mapping[tuple[str, str], CouponHistory] | None = None,
) -> Report:
    """Decide every order again from ``clicks`` and compare with ``emitted`` ((store, order)
    → :func:`winner` of the latest published decision). ``windows``: stores' own window
    histories, other stores use ``window``; ``policies`` and ``codes``: stores' coupon
    policies and codes (none: clicks only)."""
    windows = windows or {}
    policies = policies or {}
    codes = codes or {}
    by_pair: dict[tuple[str, str], list[CoreClick]] = {}
    for c in clicks:
        by_pair.setdefault((c.store_id, c.visitor_id), []).append(c)
    report = Report()
    for order in sorted(orders, key=lambda o: (o.store_id, o.order_id)):
        report.orders += 1
        in_force = windows.get(order.store_id, Windows(window)).at(order.placed_at)
        policy = policies.get(order.store_id, Policies()).at(order.placed_at)
        decision = decide(
            order,
            by_pair.get((order.store_id, order.visitor_id), []),
            in_force,
            policy,
            coupon_for(order, codes),
        )
        again = _winner(decision)
        key = (order.store_id, order.order_id)
        if key not in emitted:
            report.differences.append(Difference(*key, None, again, missing=True))
        elif emitted[key] != again:
            report.differences.append(Difference(*key, emitted[key], again))
        else:
            report.same += 1
    return report


def placement_ref(placed: OrderPlaced) -> OrderRef:
    """What a decision needs of a placement."""
    return OrderRef(
        placed.order_id, placed.store_id, placed.visitor_id, placed.occurred_at, placed.coupon_code
    )


def _placed(raws: Iterable[bytes]) -> Iterator[OrderPlaced]:
    """The placements among order events (undecodable ones went to the dead-letter topic)."""
    for raw in raws:
        try:
            event: Any = order_event_adapter.validate_json(raw)
        except ValueError:
            continue
        if isinstance(event, OrderPlaced):
            yield event


class Placements:
    """The orders to decide again and the :func:`winner` of each one's latest published
    decision, fed one event at a time (all placements first, then the decisions, in their
    topics' order), so a rebuild holds one reference per order, never the events."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, str], OrderRef] = {}
        self.latest: dict[tuple[str, str], tuple[int, str | None]] = {}

    def placed(self, event: OrderPlaced) -> None:
        self.orders.setdefault((event.store_id, event.order_id), placement_ref(event))

    def decided(self, decision: Attribution) -> None:
        key = (decision.store_id, decision.order_id)
        held = self.latest.get(key)
        if held is None or decision.revision > held[0]:
            self.latest[key] = (decision.revision, winner(decision.click_id, decision.coupon_code))
            self.orders[key] = placement_ref(decision.order)

    def since(
        self, since: datetime
    ) -> tuple[dict[tuple[str, str], OrderRef], dict[tuple[str, str], str | None]]:
        return (
            {k: o for k, o in self.orders.items() if o.placed_at >= since},
            {k: v[1] for k, v in self.latest.items()},
        )


def placements(
    placed: Iterable[OrderPlaced], decisions: Iterable[Attribution], since: datetime
) -> tuple[dict[tuple[str, str], OrderRef], dict[tuple[str, str], str | None]]:
    """The orders to decide again (placed at or after ``since``) and the :func:`winner` of
    each one's latest published decision, from the topics in their order. An order's
    placement is the one its latest decision was made from (the ``order`` it carries), as
    commission computes from; an order never decided: its first placement, as attribution
    keeps it. So a second ``order_placed`` that differs is no difference."""
    seen = Placements()
    for event in placed:
        seen.placed(event)
    for decision in decisions:
        seen.decided(decision)
    return seen.since(since)


async def rebuild(
    kafka: KafkaConnection, prefix: str, since: datetime, window: timedelta
) -> Report:
    """Read clicks, orders and attributions as retained; compare orders placed at or after
    ``since``. Undecodable messages are skipped (they went to the dead-letter topic)."""
    windows: dict[str, Windows] = {}
    policies: dict[str, Policies] = {}
    codes: dict[tuple[str, str], CouponHistory] = {}
    versions = DirectoryVersions()  # a replayed or reordered older entry is ignored
    async for raw in stream_topic(kafka, f"{prefix}{Topic.DIRECTORY}"):
        try:
            entry = directory_adapter.validate_json(raw)
        except ValueError:
            continue
        if not versions.admit(entry):
            continue
        if isinstance(entry, CouponEntry):
            key = (entry.store_id, coupon_key(entry.code))
            version = CouponVersion(
                entry.updated_at, entry.affiliate_id, entry.valid_from, entry.valid_to
            )
            known = codes.get(key, CouponHistory(key[1]))
            codes[key] = known.with_version(version) or known
        if isinstance(entry, StoreEntry):
            before = policies.get(entry.store_id, Policies())
            policies[entry.store_id] = (
                before.with_change(entry.updated_at, entry.coupon_policy) or before
            )
            days = entry.attribution_window_days
            history = windows.get(entry.store_id, Windows(window))
            changed = history.with_change(
                entry.updated_at, timedelta(days=days) if days is not None else None
            )
            windows[entry.store_id] = changed or history
    # the orders and decisions first, then the clicks streamed: of each click only what can
    # still win an order is kept (its best eligible click so far, :func:`candidates`), so a
    # visitor's flood costs time, never memory
    seen = Placements()  # one reference per order, the events not kept
    async for raw in stream_topic(kafka, f"{prefix}{Topic.ORDERS}"):
        for event in _placed([raw]):
            seen.placed(event)
    async for raw in stream_topic(kafka, f"{prefix}{Topic.ATTRIBUTIONS}"):
        seen.decided(Attribution.model_validate(orjson.loads(raw)))
    orders, emitted = seen.since(since)
    del seen
    by_pair: dict[tuple[str, str], list[tuple[OrderRef, timedelta]]] = {}
    for o in orders.values():
        in_force = windows.get(o.store_id, Windows(window)).at(o.placed_at)
        by_pair.setdefault((o.store_id, o.visitor_id), []).append((o, in_force))
    best: dict[tuple[str, str], CoreClick] = {}
    async for raw in stream_topic(kafka, f"{prefix}{Topic.CLICKS}"):
        try:
            c = Click.model_validate_json(raw)
        except ValueError:
            continue
        waiting = by_pair.get((c.store_id, c.visitor_id))
        if not waiting:
            continue
        click = CoreClick(
            c.click_id, c.store_id, c.visitor_id, c.affiliate_id, c.occurred_at, c.suspicious
        )
        for o, in_force in waiting:
            key = (o.store_id, o.order_id)
            so_far = [best[key]] if key in best else []
            kept = candidates(o, [*so_far, click], in_force, sample=0)
            if kept:
                best[key] = kept[0]
    return compare(best.values(), orders.values(), emitted, window, windows, policies, codes)
