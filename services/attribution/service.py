"""Attribution use cases: fold a batch of clicks and order events into decisions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.attribution.core import (
    EXPLAIN_SAMPLE,
    CouponVersion,
    Decision,
    OrderRef,
    Policies,
    Verdict,
    Windows,
    coupon_for,
    explain,
)
from services.attribution.core import Click as CoreClick
from services.attribution.models import outbox as outbox_table
from services.attribution.repository import (
    AttributionRepository,
    ClickQuery,
    DecisionRow,
    OrderKey,
    StoredOrder,
)
from shared.clickcap import DEFAULT_CAP_PER_DAY
from shared.clock import Clock
from shared.config import Settings
from shared.coupons import coupon_key
from shared.db import lock_key, lock_keys
from shared.directory import DirectoryVersions, directory_key
from shared.events import (
    Click,
    CouponEntry,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    StoreEntry,
    Topic,
)
from shared.kafka import Received
from shared.outbox import OutboxRepository

log = logging.getLogger(__name__)

OUTBOX = OutboxRepository(outbox_table)

#: how far after an order its explanation still shows clicks (they are "after the order")
EXPLAIN_AFTER = timedelta(days=1)

#: what the pipeline hands over: an event the join uses, or None (skipped)
AttributionEvent = Click | OrderPlaced | OrderCompleted | OrderCancelled | StoreEntry | CouponEntry
Incoming = AttributionEvent | None

#: stores share this many lock keys between program changes (windows, coupon policies and
#: codes) and decisions
WINDOW_LOCK_BUCKETS = 64

#: orders decided together (one read of their visitors' clicks): bounds a batch's memory
#: whatever the number of orders it decides (a partition's held backlog is released at once)
DECIDE_CHUNK = 2000


#: for each clicks partition a worker holds: (next offset to read, end offset or None)
ClickProgress = Callable[[], Mapping[int, tuple[int, int | None]]]


def _hold(progress: Mapping[int, tuple[int, int | None]], partition: int) -> tuple[int, int] | None:
    """What an order read from ``partition`` waits for: the same partition of the clicks
    topic (same key, same partition count) read up to its current end. None: nothing to wait
    for (read to the end, end unknown yet, or not held by this worker)."""
    if partition not in progress:
        return None
    consumed, end = progress[partition]
    if end is None or consumed >= end:
        return None
    return partition, end


def attribution_json(
    order: StoredOrder,
    decision: Decision,
    revision: int,
    now: datetime,
    verdicts: list[tuple[CoreClick, Verdict]],
) -> bytes:
    """The :class:`~shared.events.Attribution` event of a decision, as JSON. Written directly
    (the stored order event is already canonical JSON): building and validating the pydantic
    model cost five times more, per decision. A unit test holds it equal to the model."""
    click = decision.click
    return orjson.dumps(
        {
            "v": 1,
            "event_id": f"{order.store_id}:{order.order_id}:{revision}",
            "occurred_at": now,
            "type": "attribution" if revision == 0 else "attribution_changed",
            "revision": revision,
            "order_id": order.order_id,
            "store_id": order.store_id,
            "visitor_id": order.visitor_id,
            "placed_at": order.placed_at,
            "rule": decision.rule,
            "affiliate_id": decision.affiliate_id,
            "coupon_code": decision.coupon.code if decision.coupon else None,
            "click_id": click.click_id if click else None,
            "click_at": click.occurred_at if click else None,
            "link_code": click.link_code if click else None,
            "sub_id": click.sub_id if click else None,
            "link_product_id": click.product_id if click else None,
            "window_start": decision.window_start,
            "window_end": decision.window_end,
            "order": order.order_event,
            "considered": [
                {
                    "click_id": c.click_id,
                    "affiliate_id": c.affiliate_id,
                    "store_id": c.store_id,
                    "occurred_at": c.occurred_at,
                    "suspicious": c.suspicious,
                    "verdict": v.value,
                }
                for c, v in verdicts[:EXPLAIN_SAMPLE]
            ],
        },
        option=orjson.OPT_UTC_Z,
    )


def order_ref(order: StoredOrder) -> OrderRef:
    """What the core needs of a stored order."""
    return OrderRef(
        order.order_id, order.store_id, order.visitor_id, order.placed_at, order.entered_code
    )


def _window_bucket(store_id: str) -> str:
    return str(lock_key("store", store_id) % WINDOW_LOCK_BUCKETS)


@dataclass
class Stats:
    decisions: int = 0
    corrections: int = 0
    late_after_freeze: int = 0  # a late click that would have changed a frozen decision


@dataclass
class AttributionService:
    clock: Clock
    window: timedelta
    topic_prefix: str = ""
    grace: timedelta = timedelta(minutes=10)
    max_hold: timedelta = timedelta(seconds=60)
    #: the clicks partitions this worker holds, each (next offset to read, end offset); None
    #: (or a partition not held): orders are decided as soon as they arrive
    click_progress: ClickProgress | None = None
    stats: Stats = field(default_factory=Stats)
    #: at most this many orders are decided together (see :data:`DECIDE_CHUNK`)
    chunk: int = DECIDE_CHUNK
    #: clicks one visitor (or address) may store per link per UTC day (:mod:`shared.clickcap`)
    click_cap: int = DEFAULT_CAP_PER_DAY
    #: of the held orders: lowest offset waited for per partition, oldest hold (None: unknown)
    _holds: tuple[dict[int, int], datetime | None] | None = field(default=None, repr=False)
    _holds_for: frozenset[int] = field(default=frozenset(), repr=False)

    @classmethod
    def configured(cls, settings: Settings, clock: Clock) -> AttributionService:
        """The service as the deployment's settings configure it."""
        return cls(
            clock,
            timedelta(days=settings.attribution_window_days),
            settings.topic_prefix,
            timedelta(seconds=settings.attribution_grace_s),
            timedelta(seconds=settings.attribution_max_hold_s),
            click_cap=settings.click_cap_per_day,
        )

    async def handle_batch(self, session: AsyncSession, batch: list[Received[Incoming]]) -> None:
        """Apply one batch; idempotent: a replayed batch writes no new state and no outbox row."""
        try:
            await self._handle_batch(session, batch)
        except BaseException:
            self._holds = None  # what this batch noted may not be committed: ask the database
            raise

    async def _handle_batch(self, session: AsyncSession, batch: list[Received[Incoming]]) -> None:
        repo = AttributionRepository(session)
        events = [r.value for r in batch if r.value is not None]
        entries = [e for e in events if isinstance(e, StoreEntry)]
        coupons = [e for e in events if isinstance(e, CouponEntry)]
        windows = await self._lock_and_read_windows(repo, batch, events, entries, coupons)
        entries, coupons = await self._current_entries(repo, entries, coupons)
        policies = await repo.policies(windows.keys())
        changed = await self._apply_window_changes(repo, windows, entries)
        changed += await self._apply_policy_changes(repo, policies, entries)
        changed += await self._apply_coupon_changes(repo, coupons)
        reached = await self._store_clicks(repo, batch, windows)
        await repo.insert_statuses(
            ((e.store_id, e.order_id), e.type.removeprefix("order_"), e.occurred_at)
            for e in events
            if isinstance(e, OrderCompleted | OrderCancelled)
        )
        now = self.clock.now()
        progress = dict(self.click_progress()) if self.click_progress else {}
        first = await self._store_new_orders(repo, batch, progress, now)
        candidates = {o.key: o for o in await repo.orders_by_key(first)}
        for o in reached:  # decided orders that a new click may win
            candidates.setdefault(o.key, o)
        for store_id, since, code in changed:
            for o in await repo.open_orders_of_store(store_id, since, now, code):
                candidates.setdefault(o.key, o)
        await self._decide(repo, windows, policies, list(candidates.values()), now)
        # Held orders now ready, a chunk at a time: a backlog's release (every order of a
        # partition at once) would otherwise read all their clicks into memory together.
        async for released in self._release(repo, progress, now):
            await self._decide(repo, windows, policies, released, now)

    async def _lock_and_read_windows(
        self,
        repo: AttributionRepository,
        batch: list[Received[Incoming]],
        events: list[AttributionEvent],
        entries: list[StoreEntry],
        coupons: list[CouponEntry],
    ) -> dict[str, Windows]:
        """Take the batch's locks, then read the attribution windows of every store it
        touches (clicks, placed orders, program changes)."""
        # One visitor's clicks and orders share a partition number (same key, same partition
        # count), but the two topics' partitions may be held by two workers, or by two at once
        # during a rebalance. Without this lock each could read before the other commits and
        # both miss the other's click or order (write skew under READ COMMITTED).
        session = repo.session
        await lock_keys(session, "attribution-partition", {str(r.partition) for r in batch})
        stores = {e.store_id for e in events if isinstance(e, Click | OrderPlaced)}
        # A window, coupon-policy or code change re-decides the store's open orders placed
        # since; decisions read what is in force. Buckets of stores keep the two from missing
        # each other.
        changed = {e.store_id for e in entries} | {e.store_id for e in coupons}
        changing = {_window_bucket(s) for s in changed}
        await lock_keys(session, "attribution-window", changing)
        await lock_keys(
            session,
            "attribution-window",
            {_window_bucket(s) for s in stores} - changing,
            shared=True,
        )
        return await repo.windows(stores | changed, self.window)

    async def _current_entries(
        self, repo: AttributionRepository, entries: list[StoreEntry], coupons: list[CouponEntry]
    ) -> tuple[list[StoreEntry], list[CouponEntry]]:
        """The directory entries to apply (after the window locks: one key's entries are
        applied by one batch at a time): those not older than the version held for their key
        (:mod:`shared.directory`), in arrival order; the versions then held are recorded."""
        keys = [directory_key(e) for e in (*entries, *coupons)]
        versions = DirectoryVersions(await repo.directory_versions(keys))
        before = dict(versions.held)
        current_entries = versions.admit_all(entries)
        current_coupons = versions.admit_all(coupons)
        if versions.stale:
            log.info("%d directory entries older than the version held: ignored", versions.stale)
        await repo.hold_directory_versions(
            {k: v for k, v in versions.held.items() if before.get(k) != v}
        )
        return current_entries, current_coupons

    async def _store_clicks(
        self,
        repo: AttributionRepository,
        batch: list[Received[Incoming]],
        windows: dict[str, Windows],
    ) -> list[StoredOrder]:
        """Store the batch's clicks; returns the decided orders that one of them may win
        (placed within the widest window of the clicks' stores after it)."""
        clicks = [(r.value, r.raw) for r in batch if isinstance(r.value, Click)]
        reach = max(
            (windows[s].widest for s in {c.store_id for c, _ in clicks}),
            default=self.window,
        )
        return await repo.insert_clicks(clicks, reach, self.click_cap)

    async def _store_new_orders(
        self,
        repo: AttributionRepository,
        batch: list[Received[Incoming]],
        progress: Mapping[int, tuple[int, int | None]],
        now: datetime,
    ) -> list[OrderKey]:
        """Store the batch's placed orders not seen before, each held (:func:`_hold`) while
        its visitor's clicks partition is behind; returns the new orders to decide now."""
        placed = [
            (r.value, _hold(progress, r.partition))
            for r in batch
            if isinstance(r.value, OrderPlaced)
        ]
        new_keys = await repo.new_orders(placed, now)
        new = [(o, h) for o, h in placed if (o.store_id, o.order_id) in new_keys]
        self._note_holds([h for _, h in new if h is not None], now)
        return [(o.store_id, o.order_id) for o, h in new if h is None]

    async def _decide(
        self,
        repo: AttributionRepository,
        windows: dict[str, Windows],
        policies: dict[str, Policies],
        candidates: list[StoredOrder],
        now: datetime,
    ) -> None:
        """Decide ``candidates`` (distinct orders) and write what changed: decisions and
        outbox rows, :attr:`chunk` orders at a time (one read of their visitors' clicks
        each) so that memory stays bounded."""
        for start in range(0, len(candidates), self.chunk):
            chunk = candidates[start : start + self.chunk]
            # a first decision is always made; a decision stays open to late clicks until
            # the order completes or is cancelled, or its grace is over
            decided_before = [o for o in chunk if o.revision >= 0]
            frozen = await repo.frozen(o.key for o in decided_before)
            frozen |= {
                o.key for o in decided_before if o.open_until is not None and now > o.open_until
            }
            open_orders = [o for o in chunk if o.key not in frozen]
            self.stats.late_after_freeze += len(chunk) - len(open_orders)
            if open_orders:
                await self._decide_open(repo, windows, policies, open_orders, now)

    async def _decide_open(
        self,
        repo: AttributionRepository,
        windows: dict[str, Windows],
        policies: dict[str, Policies],
        open_orders: list[StoredOrder],
        now: datetime,
    ) -> None:
        missing = {o.store_id for o in open_orders} - windows.keys()
        windows |= await repo.windows(missing, self.window)
        policies |= await repo.policies({o.store_id for o in open_orders} - policies.keys())
        refs = {o.key: order_ref(o) for o in open_orders}
        # the codes' histories, only for orders whose program ever had a coupon policy
        codes = await repo.coupons(
            (r.store_id, code)
            for r in refs.values()
            if (code := r.coupon_key) is not None and policies[r.store_id].changes
        )
        # what can decide each order (its latest eligible click) and what its explanation
        # shows (the visitor's latest clicks on every store, from two windows back to shortly
        # after): a bounded read whatever one visitor clicked
        wanted = [self._click_query(o, windows[o.store_id]) for o in open_orders]
        read = await repo.decision_clicks(wanted, EXPLAIN_SAMPLE)
        outbox: list[tuple[str, str, bytes]] = []
        decided: list[DecisionRow] = []
        for order in sorted(open_orders, key=lambda o: o.key):
            ref = refs[order.key]
            window = windows[order.store_id].at(order.placed_at)
            policy = policies[order.store_id].at(order.placed_at)
            coupon = coupon_for(ref, codes)
            decision, verdicts = explain(ref, read[order.key], window, policy, coupon)
            winner = decision.click.click_id if decision.click else None
            code = decision.coupon.code if decision.coupon else None
            now_decided = (winner, decision.affiliate_id, code)
            if order.revision >= 0 and now_decided == (
                order.click_id,
                order.affiliate_id,
                order.coupon_code,
            ):
                continue  # unchanged: nothing to say
            revision = order.revision + 1
            decided.append((order.key, revision, *now_decided))
            event = attribution_json(order, decision, revision, now, verdicts)
            key = f"{order.store_id}:{order.order_id}"
            outbox.append((f"{self.topic_prefix}{Topic.ATTRIBUTIONS}", key, event))
            self.stats.decisions += 1
            self.stats.corrections += revision > 0
        await repo.set_decisions(decided, now, self.grace)
        await OUTBOX.add(repo.session, outbox)

    @staticmethod
    def _click_query(order: StoredOrder, windows: Windows) -> ClickQuery:
        window = windows.at(order.placed_at)
        return ClickQuery(
            order.key,
            order.visitor_id,
            order.placed_at - window,
            order.placed_at,
            order.placed_at - 2 * windows.widest,
            order.placed_at + EXPLAIN_AFTER,
        )

    def _note_holds(self, holds: list[tuple[int, int]], now: datetime) -> None:
        if self._holds is None or not holds:
            return
        lowest, oldest = self._holds
        for partition, offset in holds:
            lowest[partition] = min(lowest.get(partition, offset), offset)
        self._holds = lowest, oldest if oldest is not None else now

    async def _release(
        self,
        repo: AttributionRepository,
        progress: dict[int, tuple[int, int | None]],
        now: datetime,
    ) -> AsyncIterator[list[StoredOrder]]:
        """Held orders now ready, in chunks of at most :attr:`chunk`: their clicks partition
        is read up to where it ended when the order was read, or they have waited
        ``max_hold``. Asks the database only when the summary of holds says something is
        ready. Each chunk must be decided before the next is asked for: a decided order is no
        longer held, which is how the next chunk moves on."""
        if self._holds is None or self._holds_for != progress.keys():
            self._holds = await repo.held_summary()
            self._holds_for = frozenset(progress)
        lowest, oldest = self._holds
        ready = {
            p: progress[p][0]
            for p, off in lowest.items()
            if p in progress and progress[p][0] >= off
        }
        aged = oldest is not None and oldest < now - self.max_hold
        if not ready and not aged:
            return
        self._holds = None  # summarise again next time
        held_before = now - self.max_hold if aged else None
        released: set[OrderKey] = set()
        while chunk := await repo.release_held(ready, held_before, self.chunk):
            if not {o.key for o in chunk} - released:
                # cannot happen (every released order is decided); never loop on it
                log.error("held orders %s released twice; left for the next batch", chunk[:3])
                return
            released.update(o.key for o in chunk)
            yield chunk

    async def _apply_window_changes(
        self,
        repo: AttributionRepository,
        windows: dict[str, Windows],
        entries: list[StoreEntry],
    ) -> list[tuple[str, datetime, str | None]]:
        """Record the window changes the directory entries carry; returns (store, effective
        time, None) of each change that alters the window in force."""
        changed: list[tuple[str, datetime, str | None]] = []
        for e in sorted(entries, key=lambda e: e.updated_at):
            days = e.attribution_window_days
            after = windows[e.store_id].with_change(
                e.updated_at, timedelta(days=days) if days is not None else None
            )
            if after is not None:
                windows[e.store_id] = after
                await repo.add_window(e.store_id, e.updated_at, days)
                changed.append((e.store_id, e.updated_at, None))
        return changed

    async def _apply_policy_changes(
        self,
        repo: AttributionRepository,
        policies: dict[str, Policies],
        entries: list[StoreEntry],
    ) -> list[tuple[str, datetime, str | None]]:
        """Record the coupon-policy changes the directory entries carry; returns (store,
        effective time, None) of each change that alters the policy in force."""
        changed: list[tuple[str, datetime, str | None]] = []
        for e in sorted(entries, key=lambda e: e.updated_at):
            after = policies[e.store_id].with_change(e.updated_at, e.coupon_policy)
            if after is not None:
                policies[e.store_id] = after
                await repo.add_policy(e.store_id, e.updated_at, e.coupon_policy.value)
                changed.append((e.store_id, e.updated_at, None))
        return changed

    async def _apply_coupon_changes(
        self, repo: AttributionRepository, entries: list[CouponEntry]
    ) -> list[tuple[str, datetime, str | None]]:
        """Record the codes' registrations and deletions (idempotent by store, code and
        time); returns (store, effective time, code) of each new one: the open orders placed
        since with that code are decided again."""
        changed: list[tuple[str, datetime, str | None]] = []
        for e in sorted(entries, key=lambda e: e.updated_at):
            code = coupon_key(e.code)
            version = CouponVersion(e.updated_at, e.affiliate_id, e.valid_from, e.valid_to)
            if await repo.add_coupon(e.store_id, code, version):
                changed.append((e.store_id, e.updated_at, code))
        return changed

    async def expire_clicks(self, session: AsyncSession, chunk: int = 10_000) -> int:
        """Delete clicks no order can use any more: older than twice the widest window (the
        explanation shows clicks up to a window before the window) plus the grace and a day.
        Returns how many were deleted; the caller commits (one chunk per transaction)."""
        repo = AttributionRepository(session)
        days = await repo.widest_window_days()
        widest = max(self.window, timedelta(days=days or 0))
        keep = 2 * widest + self.grace + timedelta(days=1)
        before = self.clock.now() - keep
        expired = await repo.expire_clicks(before, chunk)
        # the cap's counts go with the clicks of their day (a day before the oldest kept)
        await repo.forget_click_caps(before.date(), chunk)
        return expired
