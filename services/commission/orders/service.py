"""Order use cases: apply order facts and attribution decisions (the consumer's batch), post
what each order owes to the ledger, and the reads of orders and their commission."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.applied import AppliedKey, decision_key, storefront_key
from services.commission.core.commission import (
    Adjustment,
    AdjustmentAction,
    AdjustmentLine,
    AdjustmentReason,
    LineItem,
    OrderCommission,
    OrderFacts,
    OrderKey,
    OrderStatus,
    Placement,
    check_adjustment,
    compute_order,
    placement_to_apply,
)
from services.commission.core.errors import ProgramError
from services.commission.core.holds import Hold
from services.commission.core.incentives import (
    MonthSale,
    TierProgress,
    month_allowance,
    month_end,
    month_of,
    month_start,
    tier_progress,
)
from services.commission.core.ledger import LedgerTxn, ledger_delta
from services.commission.core.program import ProgramHistory
from services.commission.core.reports import refund_reversals
from services.commission.core.webhooks import (
    Notice,
    WebhookEvent,
    attribution_key,
    ledger_notice,
    lock_notice,
    order_notice,
)
from services.commission.errors import IdempotencyKeyReused, NotFound
from services.commission.orders.repository import (
    LedgerRepository,
    MonthKey,
    OrderRepository,
    Summary,
    adjustment_of,
    items_json,
)
from services.commission.program.service import ProgramService
from services.commission.webhooks.service import WebhookService
from shared.clock import Clock, SystemClock
from shared.events import (
    Attribution,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderRefunded,
)
from shared.kafka import Received
from shared.money import ZERO, from_minor, to_minor
from shared.policy import ExitPolicy

Incoming = Attribution | OrderPlaced | OrderCompleted | OrderCancelled | OrderRefunded


def order_key(event: Incoming) -> OrderKey:
    return (event.store_id, event.order_id)


def effective_at(event: OrderCompleted | OrderCancelled) -> datetime:
    """When a terminal status counts from: for a completion, the later of its event time and
    its arrival at the tracker, so that a backdated completion cannot skip the holding period
    (the refund window) nor land in a settlement period already past; a cancellation (which
    pays nothing) at its event time."""
    if isinstance(event, OrderCancelled) or event.received_at is None:
        return event.occurred_at
    return max(event.occurred_at, event.received_at)


def encode_explanation(event: Attribution) -> bytes:
    """What the explain API shows of a decision: all of it but the order itself."""
    return event.__pydantic_serializer__.to_json(event, exclude={"order"})


def idempotency_key(event: Incoming) -> AppliedKey:
    """A decision's key in the decisions' namespace (from its store, order and revision), a
    storefront event's in the storefront's (its id is unique per store): no id a store chooses
    can take a decision's slot (:mod:`services.commission.core.applied`)."""
    if isinstance(event, Attribution):
        return decision_key(event.store_id, event.order_id, event.revision)
    return storefront_key(event.store_id, event.event_id)


def placement_of(event: OrderPlaced | Attribution) -> Placement:
    """The placement an order event states; of a decision, the placement attribution decided
    from (the ``order`` it carries): the one placement commission computes from."""
    placed = event.order if isinstance(event, Attribution) else event
    return Placement(
        placed.currency, placed.occurred_at, tuple(line_items(placed)), placed.new_buyer
    )


def line_items(event: OrderPlaced) -> list[LineItem]:
    return [
        LineItem(i.product_id, i.category_id, i.quantity, i.unit_price, i.shipping_fee, i.title)
        for i in event.items
    ]


def order_lines(facts: OrderFacts, c: OrderCommission) -> list[dict[str, Any]]:
    """The order's lines as the reports keep them (amounts in minor units)."""
    return [
        {
            "order_id": facts.order_id,
            "line_no": n,
            "store_id": facts.store_id,
            "product_id": line.product_id,
            "category_id": line.category_id,
            "title": line.title,
            "quantity": line.quantity,
            "currency": facts.currency,
            "placed_at": facts.placed_at,
            "affiliate_id": facts.affiliate_id,
            "chargeable": c.chargeable,
            "status": facts.status.value,
            "sales_minor": to_minor(item.base, facts.currency),
            "commission_minor": to_minor(item.commission, facts.currency),
            "reversed_minor": to_minor(item.reversed, facts.currency),
        }
        for n, (line, item) in enumerate(zip(facts.items, c.items, strict=True))
    ]


def summary(facts: OrderFacts, c: OrderCommission) -> Summary:
    """What the settlement rollup keeps of an order's commission (minor units)."""
    return (
        facts.key,
        c.chargeable,
        to_minor(c.sales, c.currency),
        to_minor(c.commission, c.currency),
        to_minor(c.reversed, c.currency),
    )


def _placement(p: OrderPlaced) -> dict[str, Any]:
    return {
        "order_id": p.order_id,
        "store_id": p.store_id,
        "currency": p.currency,
        "placed_at": p.occurred_at,
        "items": items_json(line_items(p)),
        "new_buyer": p.new_buyer,
    }


def _decision(e: Attribution) -> dict[str, Any]:
    return {
        "b_store": e.store_id,
        "b_oid": e.order_id,
        "b_rev": e.revision,
        "b_aff": e.affiliate_id,
        "b_click": e.click_id,
        "b_click_at": e.click_at,
        "b_sub": e.sub_id,
        "b_expl": encode_explanation(e).decode(),  # JSON text: stored as it is
    }


def _newest(decisions: Iterable[Attribution]) -> dict[OrderKey, Attribution]:
    """Each order's decision of the highest revision (of equals, the first)."""
    newest: dict[OrderKey, Attribution] = {}
    for e in decisions:
        if order_key(e) not in newest or e.revision > newest[order_key(e)].revision:
            newest[order_key(e)] = e
    return newest


def _refund(e: OrderRefunded) -> dict[str, Any]:
    return {
        "store_id": e.store_id,
        "order_id": e.order_id,
        "refund_id": e.refund_id,
        "occurred_at": e.occurred_at,
        "items": [{"product_id": i.product_id, "amount": str(i.amount)} for i in e.items],
        # the later of its time and its arrival: a backdated refund cannot beat the lock
        "reported_at": e.occurred_at
        if e.received_at is None
        else max(e.occurred_at, e.received_at),
    }


@dataclass(frozen=True, slots=True)
class AdjustmentAsk:
    """An adjustment as asked for (HTTP): what an Idempotency-Key stands for."""

    order_id: str
    action: AdjustmentAction
    reason: AdjustmentReason
    lines: tuple[AdjustmentLine, ...] = ()
    note: str | None = None

    def same_as(self, row: Any) -> bool:
        """Whether a stored adjustment is this one (a replay of its key)."""
        stored = adjustment_of(row)
        return (
            row.order_id == self.order_id
            and (stored.action, stored.reason, stored.note) == (self.action, self.reason, self.note)
            and [(x.product_id, x.amount) for x in stored.lines]
            == [(x.product_id, x.amount) for x in self.lines]
        )


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One item of a batch of adjustments: the adjustment row (accepted now or before, by its
    key), or the refusal's status and code."""

    index: int
    order_id: str
    status: int
    row: Any = None
    code: str | None = None
    message: str | None = None


#: the most orders of one affiliate-month a tier standing reads
MAX_TIER_ORDERS: Final = 100_000


@dataclass
class OrderService:
    clock: Clock = field(default_factory=SystemClock)
    policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM
    programs: ProgramService = field(default_factory=ProgramService)
    late_corrections_ignored: int = 0
    #: where the orders' webhook events are written (None: none are)
    webhooks: WebhookService | None = None

    # -- the consumer's batch ---------------------------------------------------------------

    async def handle_batch(self, session: AsyncSession, batch: list[Received[Incoming]]) -> None:
        """Apply new events (idempotent by :func:`idempotency_key`) with one statement per kind of
        fact, then post what each touched order owes. The facts commute (the placement a
        decision carries wins, else the first; the first terminal status wins, the highest
        revision wins, refunds are a set), so their order inside a batch does not matter."""
        repo = OrderRepository(session)
        events = await self._fresh(repo, batch)
        if not events:
            return
        # An order's attribution (keyed by order) and its storefront events (keyed by visitor)
        # may be in two workers' batches at once: lock the orders' rows (sorted, so two batches
        # never deadlock) before reading or writing any of their facts.
        # The placements (an attribution carries its order's) are stored with the rows:
        # the rows written are locked already, the others are locked next.
        keys = {order_key(e) for e in events}
        placing = [e for e in events if isinstance(e, Attribution | OrderPlaced)]
        last = {order_key(e): e for e in placing}  # the placement stored of several: the last
        # a new row takes its newest decision at once when it takes that decision's placement
        newest = _newest([e for e in events if isinstance(e, Attribution)])
        with_decision = {k: _decision(e) for k, e in newest.items() if last.get(k) is e}
        written = await repo.ensure_orders(
            keys,
            [_placement(e.order if isinstance(e, Attribution) else e) for e in placing],
            with_decision,
        )
        await repo.lock_orders(keys - written.keys())
        # the event whose placement each written row now holds
        stored = {k: e for k, e in last.items() if k in written}
        applied = {k for k, inserted in written.items() if inserted and k in with_decision}
        await self._apply_facts(repo, events, stored, applied)
        # decisions naming an affiliate: an ``order.attributed`` each, if it was applied
        decided = {
            order_key(e): e.revision
            for e in events
            if isinstance(e, Attribution) and e.affiliate_id is not None
        }
        await self.reconcile(session, {order_key(e) for e in events}, decided)

    async def _fresh(
        self, repo: OrderRepository, batch: list[Received[Incoming]]
    ) -> list[Incoming]:
        """The batch's events not applied before, each once (a duplicate inside the batch
        too)."""
        keys = [idempotency_key(r.value) for r in batch]
        fresh = await repo.claim_events([(k, r.topic) for k, r in zip(keys, batch, strict=True)])
        events: list[Incoming] = []
        for key, rec in zip(keys, batch, strict=True):
            if key in fresh:
                fresh.discard(key)
                events.append(rec.value)
        return events

    async def _apply_facts(
        self,
        repo: OrderRepository,
        events: list[Incoming],
        stored: Mapping[OrderKey, Incoming],
        applied: set[OrderKey],
    ) -> None:
        """One statement per kind of fact: decisions (each order's placement the one its
        decision was made from), terminal statuses, refunds; the placements are stored with
        the orders' rows, and so are the decisions of ``applied``, the rows inserted now
        (:meth:`OrderRepository.ensure_orders`)."""
        decisions = [e for e in events if isinstance(e, Attribution)]
        await self._take_decided_placements(repo, decisions, stored)
        await repo.set_attribution_many(
            [_decision(e) for e in decisions if order_key(e) not in applied]
        )
        corrections = [e for e in decisions if e.revision > 0]
        if corrections:
            held = await repo.revisions(order_key(e) for e in corrections)
            self.late_corrections_ignored += sum(
                1 for e in corrections if held.get(order_key(e), -1) < e.revision
            )
        await repo.set_terminal_many(
            [
                (
                    order_key(e),
                    OrderStatus.COMPLETED
                    if isinstance(e, OrderCompleted)
                    else OrderStatus.CANCELLED,
                    effective_at(e),
                )
                for e in events
                if isinstance(e, OrderCompleted | OrderCancelled)
            ]
        )
        await repo.add_refunds_many([_refund(e) for e in events if isinstance(e, OrderRefunded)])

    @staticmethod
    async def _take_decided_placements(
        repo: OrderRepository, decisions: list[Attribution], stored: Mapping[OrderKey, Incoming]
    ) -> None:
        """Before the decisions are applied: each order's placement becomes the one its
        newest decision was made from (:func:`placement_to_apply`). An order whose row this
        batch just wrote with that very decision's placement (``stored``: key → the event
        whose placement it holds) holds it already: nothing to read or rewrite."""
        newest = _newest(decisions)
        held = await repo.held_placements(k for k, e in newest.items() if stored.get(k) is not e)
        await repo.replace_placements(
            [
                (key, p)
                for key, e in sorted(newest.items())
                if key in held
                and (p := placement_to_apply(held[key], e.revision, placement_of(e))) is not None
            ]
        )

    async def reconcile(
        self,
        session: AsyncSession,
        keys: set[OrderKey],
        decided: Mapping[OrderKey, int] | None = None,
    ) -> int:
        """Post every transaction the orders owe and have not posted, and keep their rollups
        (summary, lines) current; write the webhook events of the postings made now and of
        the ``decided`` attributions (order → revision) that were applied, in the same
        transaction. Idempotent."""
        repo = OrderRepository(session)
        facts = await repo.order_facts(keys)
        if not facts:
            return 0
        programs = await self.programs.histories(session, {f.store_id for f in facts.values()})
        ledger = LedgerRepository(session)
        # only an order that completed with an affiliate may owe a posting (ledger_delta)
        posted = await ledger.posted(
            k for k, f in facts.items() if f.status is OrderStatus.COMPLETED and f.affiliate_id
        )
        await self.take_month_rooms(repo, facts, programs, posted)
        entries = []
        summaries = []
        lines: list[dict[str, Any]] = []
        results: dict[OrderKey, OrderCommission] = {}
        for key in sorted(facts):
            f = facts[key]
            program = programs[f.store_id]
            result = compute_order(f, program, self.policy)
            unrefunded = None if f.refunds else result
            for txn in ledger_delta(f, program, posted.get(key, {}), self.policy, unrefunded):
                entries.append((txn, f.store_id, f.affiliate_id))
            results[key] = result
            summaries.append(summary(f, result))
            lines += order_lines(f, result)
        await repo.set_summaries(summaries)
        await repo.set_lines(lines)
        now = self.clock.now()
        new = await ledger.post_new(entries, now)
        if self.webhooks is not None:
            await self._notify(session, facts, results, decided or {}, entries, new, now)
        return len(new)

    async def take_month_rooms(
        self,
        repo: OrderRepository,
        facts: dict[OrderKey, OrderFacts],
        programs: Mapping[str, ProgramHistory],
        posted: Mapping[OrderKey, Mapping[str, Decimal]],
    ) -> None:
        """The per-affiliate-month cap: each order whose completion is posted now (completed,
        attributed, nothing posted yet) under a program with a month cap in its currency (the
        one in force at placement) takes its commission, at most what is left of its month's
        room (:func:`month_allowance`), in (completion time, order id) order within the batch;
        the rooms are row-locked in key order, so concurrent workers take them one after the
        other and what was posted is never changed. ``facts`` are updated in place."""
        claims: list[tuple[OrderKey, MonthKey, Decimal, Decimal]] = []
        for key, f in sorted(facts.items(), key=lambda kv: (kv[1].status_at, kv[0])):
            if (
                f.status is not OrderStatus.COMPLETED
                or f.affiliate_id is None
                or f.status_at is None
                or f.month_allowance is not None
                or posted.get(key)
            ):
                continue
            program = programs[f.store_id]
            per_month = program.state_at(f.placed_at).incentives.caps.per_affiliate_month
            if f.currency not in per_month:
                continue
            gross = compute_order(f, program, self.policy, refunds=(), adjustments=()).commission
            month = (f.store_id, f.affiliate_id, month_of(f.status_at), f.currency)
            claims.append((key, month, per_month[f.currency], gross))
        if not claims:
            return
        rooms = await repo.lock_month_rooms(month for _, month, _, _ in claims)
        used = {k: from_minor(v, k[3]) for k, v in rooms.items()}
        allowances: dict[OrderKey, int] = {}
        for key, month, cap, gross in claims:
            allowance = month_allowance(gross, cap, used[month]) or ZERO
            used[month] += allowance
            facts[key] = replace(facts[key], month_allowance=allowance)
            allowances[key] = to_minor(allowance, month[3])
        await repo.take_month_rooms({k: to_minor(v, k[3]) for k, v in used.items()}, allowances)

    async def _notify(
        self,
        session: AsyncSession,
        facts: Mapping[OrderKey, OrderFacts],
        results: Mapping[OrderKey, OrderCommission],
        decided: Mapping[OrderKey, int],
        entries: list[tuple[LedgerTxn, str, str | None]],
        new: set[str],
        now: datetime,
    ) -> None:
        """The webhook events of this reconciliation, each order's in the order they happened
        (its attribution, then its postings in posting order). One query when no endpoint
        would receive them."""
        assert self.webhooks is not None
        decided = {k: r for k, r in decided.items() if k in facts and facts[k].affiliate_id}
        touched = set(decided) | {
            (store_id, txn.order_id)
            for txn, store_id, _ in entries
            if txn.key in new and txn.order_id is not None and (store_id, txn.order_id) in facts
        }
        if not touched:
            return
        endpoints = await self.webhooks.receivers(
            session,
            {a for k in touched if (a := facts[k].affiliate_id) is not None},
            {store_id for store_id, _ in touched},
        )
        if not endpoints:
            return
        # one read: which decisions were applied (the highest revision; nothing is posted
        # for a stale one) and the sub_id of each order's winning link
        held = await OrderRepository(session).decisions(touched)
        decided = {k: r for k, r in decided.items() if k in held and held[k][0] == r}
        sub_ids = {k: sub_id for k, (_, sub_id) in held.items()}
        posted: dict[OrderKey, list[LedgerTxn]] = {}
        for txn, store_id, _ in entries:  # in posting order
            if txn.key in new and txn.order_id is not None:
                posted.setdefault((store_id, txn.order_id), []).append(txn)
        notices: list[Notice] = []
        for key in sorted(touched):
            f = facts[key]
            if key in decided:
                notices.append(
                    order_notice(
                        WebhookEvent.ORDER_ATTRIBUTED,
                        attribution_key(f.store_id, f.order_id, decided[key]),
                        f,
                        results[key].commission,
                        now,
                        sub_id=sub_ids.get(key),
                    )
                )
            notices += [
                ledger_notice(txn, f, now, sub_ids.get(key), results[key].locks_at)
                for txn in posted.get(key, [])
            ]
        await self.webhooks.notify(session, notices, endpoints)

    async def summarise(self, session: AsyncSession, limit: int = 1000) -> int:
        """Compute the summary of up to ``limit`` orders that have none (orders stored before
        the rollup existed); returns how many. Run until 0: ``alliance ledger summarise``."""
        repo = OrderRepository(session)
        ids = await repo.unsummarised(limit)
        await repo.lock_orders(ids)  # as the consumer does: no write from a stale read
        results = [
            (f, compute_order(f, p, self.policy)) for f, p in await self.with_programs(session, ids)
        ]
        await repo.set_summaries([summary(f, r) for f, r in results])
        await repo.set_lines([line for f, r in results for line in order_lines(f, r)])
        return len(ids)

    # -- reads ------------------------------------------------------------------------------

    async def tier_progress(
        self, session: AsyncSession, store_id: str, affiliate_id: str, month: str
    ) -> list[TierProgress]:
        """The affiliate's standing in each currency of the store's tiers for ``month``: the
        tiers in force at the month's end, over its chargeable orders completed in the month
        (the core's :func:`tier_progress`; at most :data:`MAX_TIER_ORDERS` orders read)."""
        end = month_end(month)
        keys = await OrderRepository(session).completed_between(
            store_id, affiliate_id, month_start(month), end, MAX_TIER_ORDERS
        )
        program = await self.programs.history(session, store_id)
        incentives = program.state_at(end - timedelta(microseconds=1)).incentives
        sales: dict[str, list[MonthSale]] = {}
        paid: dict[str, Decimal] = {}
        for facts, history in await self.with_programs(session, keys):
            result = compute_order(facts, history, self.policy)
            if not result.chargeable or result.declined:
                continue
            refunded = sum((i.amount for r in facts.refunds for i in r.items), ZERO)
            assert facts.status_at is not None  # completed
            sales.setdefault(facts.currency, []).append(
                MonthSale(facts.order_id, facts.status_at, result.sales, refunded, result.locks_at)
            )
            paid[facts.currency] = paid.get(facts.currency, ZERO) + result.commission
        now = self.clock.now()
        return [
            tier_progress(
                cur,
                tiers,
                sales.get(cur, []),
                month,
                now,
                paid.get(cur, ZERO),
                incentives.caps.per_affiliate_month.get(cur),
            )
            for cur, tiers in sorted(incentives.tiers.items())
        ]

    async def with_programs(
        self, session: AsyncSession, keys: Iterable[OrderKey]
    ) -> list[tuple[OrderFacts, ProgramHistory]]:
        """The facts of the orders whose placement is known, each with its store's program,
        in the order of ``keys``."""
        keys = list(keys)
        facts = await OrderRepository(session).order_facts(keys)
        programs = await self.programs.histories(session, {f.store_id for f in facts.values()})
        return [(facts[k], programs[k[0]]) for k in keys if k in facts]

    async def order_commission(
        self, session: AsyncSession, store_id: str, order_id: str
    ) -> tuple[Any, OrderFacts | None, OrderCommission | None]:
        """The order's row, facts and commission (None until its placement is known), from one
        snapshot of the row and the facts; :class:`NotFound` when there is no such order."""
        found = await OrderRepository(session).order_with_facts(store_id, order_id)
        if found is None:
            raise NotFound("order", store_id=store_id, order_id=order_id)
        row, facts = found
        if facts is None:
            return row, None, None
        program = await self.programs.history(session, store_id)
        return row, facts, compute_order(facts, program, self.policy)

    async def order_row(self, session: AsyncSession, store_id: str, order_id: str) -> Any:
        return await OrderRepository(session).order_row(store_id, order_id)

    async def affiliate_orders(
        self,
        session: AsyncSession,
        affiliate_id: str,
        *,
        start: datetime,
        end: datetime,
        status: str | None,
        after: OrderKey | None,
        limit: int,
    ) -> list[tuple[OrderFacts, OrderCommission]]:
        """The affiliate's orders placed in [start, end) by (store, order) after ``after``,
        each with its commission."""
        keys = await OrderRepository(session).affiliate_order_ids(
            affiliate_id, start=start, end=end, status=status, after=after, limit=limit
        )
        return [
            (f, compute_order(f, p, self.policy))
            for f, p in await self.with_programs(session, keys)
        ]

    async def refund_reversals(
        self, session: AsyncSession, store_id: str, order_ids: set[str]
    ) -> dict[tuple[str, str, int], Decimal]:
        """(order, refund, item position) → commission reversed, for the given orders of the
        store."""
        return (await self.refund_outcomes(session, store_id, order_ids))[0]

    async def refund_outcomes(
        self, session: AsyncSession, store_id: str, order_ids: set[str]
    ) -> tuple[dict[tuple[str, str, int], Decimal], set[tuple[str, str]]]:
        """:meth:`refund_reversals`, and the (order, refund) pairs whose reversal the lock
        skipped (reported at or after the order's locking date: they reverse nothing)."""
        amounts: dict[tuple[str, str, int], Decimal] = {}
        skipped: set[tuple[str, str]] = set()
        for f, p in await self.with_programs(session, [(store_id, o) for o in order_ids]):
            for (refund_id, n), amount in refund_reversals(f, p, self.policy).items():
                amounts[(f.order_id, refund_id, n)] = amount
            locked = compute_order(f, p, self.policy).refunds_skipped
            skipped |= {(f.order_id, r) for r in locked}
        return amounts, skipped

    # -- the locking date ---------------------------------------------------------------------

    async def announce_locks(self, session: AsyncSession, limit: int = 1000) -> int:
        """Write a ``commission.locked`` event for up to ``limit`` orders locked now (the
        service's clock) and not announced yet, and mark them, in the caller's transaction:
        each order's lock is announced once (its event id comes from the order). Returns how
        many were announced; run until it returns less than ``limit``."""
        now = self.clock.now()
        repo = OrderRepository(session)
        keys = await repo.unannounced_locks(now, limit)
        if not keys:
            return 0
        announced: list[tuple[OrderKey, datetime]] = []
        notices: list[Notice] = []
        held = await repo.decisions(keys)
        for facts, program in await self.with_programs(session, keys):
            result = compute_order(facts, program, self.policy)
            if result.locks_at is None or not result.locked(now):
                continue  # the core decides: the query only narrows
            announced.append((facts.key, result.locks_at))
            sub_id = held.get(facts.key, (0, None))[1]
            notices.append(lock_notice(facts, result.net, result.locks_at, now, sub_id))
        if self.webhooks is not None and notices:
            await self.webhooks.notify(session, notices)
        await repo.mark_announced(announced, now)
        return len(announced)

    # -- adjustments --------------------------------------------------------------------------

    async def adjust(
        self, session: AsyncSession, store_id: str, ask: AdjustmentAsk, key: str, actor: str
    ) -> tuple[Any, bool]:
        """Accept a reason-coded adjustment of the store's order once per (store, ``key``):
        checked by the core's rules (:func:`check_adjustment`: 409 ``locked``, 422 amounts and
        products), appended, and the order reconciled in the same transaction (its
        adjustment transaction posted if the order completed, else its estimate changed).
        Returns the adjustment's row and whether it was accepted now; a replay of the key
        returns the first answer, another request with it is 409 ``idempotency_key_reused``.
        404 when the store has no such order (another store's order is no order of this)."""
        repo = OrderRepository(session)
        okey = (store_id, ask.order_id)
        # the store's keys are checked one request at a time (one coarse lock per store: a
        # key names one adjustment whatever the order), then the order as the consumer locks it
        await repo.lock_adjustments(store_id)
        await repo.lock_orders([okey])
        existing = await repo.adjustment_by_key(store_id, key)
        if existing is not None:
            if not ask.same_as(existing):
                raise IdempotencyKeyReused("this key was used for another adjustment")
            return existing, False
        facts = (await repo.order_facts([okey])).get(okey)
        if facts is None:
            raise NotFound("order", store_id=store_id, order_id=ask.order_id)
        program = await self.programs.history(session, store_id)
        now = self.clock.now()
        if facts.adjustments:  # times never go back within an order (a clock's skew)
            now = max(now, facts.adjustments[-1].at)
        seq = max((a.seq for a in facts.adjustments), default=0) + 1
        adjustment = check_adjustment(
            facts,
            program,
            Adjustment(seq, now, ask.action, ask.reason, ask.lines, ask.note),
        )
        row = await repo.add_adjustment(store_id, ask.order_id, adjustment, key, actor)
        await self.reconcile(session, {okey})
        return row, True

    async def adjust_batch(
        self,
        session: AsyncSession,
        store_id: str,
        asks: list[AdjustmentAsk],
        key: str,
        actor: str,
    ) -> list[ItemOutcome]:
        """Each item as :meth:`adjust`, keyed ``<key>/<index>``, in a savepoint of its own: a
        refused item changes nothing and the others stand. Replaying the batch's key replays
        every item (the accepted ones answer as before)."""
        # every order of the batch locked at once, in key order as the consumer locks them (a
        # batch locking them in its items' order could deadlock with a consumer's batch)
        repo = OrderRepository(session)
        await repo.lock_adjustments(store_id)
        await repo.lock_orders((store_id, ask.order_id) for ask in asks)
        out: list[ItemOutcome] = []
        for n, ask in enumerate(asks):
            try:
                async with session.begin_nested():
                    row, created = await self.adjust(session, store_id, ask, f"{key}/{n}", actor)
                out.append(ItemOutcome(n, ask.order_id, 201 if created else 200, row))
            except (ProgramError, NotFound, IdempotencyKeyReused) as err:
                status = err.status_code
                code = err.code
                message = getattr(err, "message", None) or str(err)
                out.append(ItemOutcome(n, ask.order_id, status, None, code, message))
        return out

    async def holds(self, session: AsyncSession, affiliate_ids: Iterable[str]) -> list[Hold]:
        """The affiliates' active holds."""
        return await OrderRepository(session).holds(affiliate_ids)

    async def adjustment_rows(
        self, session: AsyncSession, keys: Iterable[OrderKey]
    ) -> dict[OrderKey, list[Any]]:
        """The orders' adjustments as stored (reason, note, actor), in the order accepted."""
        return await OrderRepository(session).adjustment_rows(keys)

    # -- the ledger -------------------------------------------------------------------------

    async def post(
        self,
        session: AsyncSession,
        txns: list[LedgerTxn],
        *,
        store_id: str | None,
        affiliate_id: str | None,
        at: datetime,
    ) -> int:
        """Post transactions whose key is new; returns how many were posted."""
        return await LedgerRepository(session).post(txns, store_id, affiliate_id, at)
