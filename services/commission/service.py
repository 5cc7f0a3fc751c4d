"""Commission use cases: apply order facts and decisions, post the ledger, run programs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core import (
    ExitPolicy,
    LineItem,
    OpKind,
    OrderCommission,
    OrderFacts,
    OrderKey,
    OrderStatus,
    ProgramError,
    ProgramHistory,
    ProgramOp,
    ProgramState,
    compute_order,
    ledger_delta,
    payout_txns,
)
from services.commission.products import refresh_store
from services.commission.repository import CommissionRepository, Summary, items_json
from shared.clock import Clock
from shared.events import (
    Attribution,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderRefunded,
)
from shared.http import NotFound
from shared.kafka import Received
from shared.money import ZERO, from_minor, to_minor

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


def idempotency_key(event: Incoming) -> str:
    """Event ids are unique per store (storefronts choose them), so the key names the store."""
    return f"{event.store_id}/{event.event_id}"


def line_items(event: OrderPlaced) -> list[LineItem]:
    return [
        LineItem(i.product_id, i.category_id, i.quantity, i.unit_price, i.shipping_fee, i.title)
        for i in event.items
    ]


def state_json(state: ProgramState) -> dict[str, Any]:
    return {
        "joined": state.joined,
        "joined_at": state.joined_at.isoformat() if state.joined_at else None,
        "exited_at": state.exited_at.isoformat() if state.exited_at else None,
        "default_rate": str(state.default_rate),
        "category_rates": {k: str(v) for k, v in sorted(state.category_rates.items())},
        "main_products": {
            k: (str(v) if v is not None else None) for k, v in sorted(state.main_products.items())
        },
        "window_days": state.window_days,
    }


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


@dataclass
class CommissionService:
    clock: Clock
    policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM
    late_corrections_ignored: int = 0

    # -- the consumer's batch ---------------------------------------------------------------

    async def handle_batch(self, session: AsyncSession, batch: list[Received[Incoming]]) -> None:
        """Apply new events (idempotent by store + event id) with one statement per kind of
        fact, then post what each touched order owes. The facts commute (first placement and
        first terminal status win, the highest revision wins, refunds are a set), so their
        order inside a batch does not matter."""
        repo = CommissionRepository(session)
        fresh = await repo.claim_events([(idempotency_key(r.value), r.topic) for r in batch])
        events: list[Incoming] = []
        for rec in batch:
            key = idempotency_key(rec.value)
            if key in fresh:
                fresh.discard(key)  # a duplicate inside the batch applies once
                events.append(rec.value)
        if not events:
            return
        # An order's attribution (keyed by order) and its storefront events (keyed by visitor)
        # may be in two workers' batches at once: lock the orders' rows (sorted, so two batches
        # never deadlock) before reading or writing any of their facts.
        await repo.ensure_orders(order_key(e) for e in events)
        await repo.lock_orders(order_key(e) for e in events)
        placed = [
            e.order if isinstance(e, Attribution) else e
            for e in events
            if isinstance(e, Attribution | OrderPlaced)
        ]
        await repo.upsert_placed_many(
            [
                {
                    "order_id": p.order_id,
                    "store_id": p.store_id,
                    "currency": p.currency,
                    "placed_at": p.occurred_at,
                    "items": items_json(line_items(p)),
                }
                for p in placed
            ]
        )
        decisions = [e for e in events if isinstance(e, Attribution)]
        await repo.set_attribution_many(
            [
                {
                    "b_store": e.store_id,
                    "b_oid": e.order_id,
                    "b_rev": e.revision,
                    "b_aff": e.affiliate_id,
                    "b_click": e.click_id,
                    "b_click_at": e.click_at,
                    "b_sub": e.sub_id,
                    "b_expl": orjson.loads(encode_explanation(e)),
                }
                for e in decisions
            ]
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
        await repo.add_refunds_many(
            [
                {
                    "store_id": e.store_id,
                    "order_id": e.order_id,
                    "refund_id": e.refund_id,
                    "occurred_at": e.occurred_at,
                    "items": [
                        {"product_id": i.product_id, "amount": str(i.amount)} for i in e.items
                    ],
                }
                for e in events
                if isinstance(e, OrderRefunded)
            ]
        )
        await self.reconcile(repo, {order_key(e) for e in events})

    async def reconcile(self, repo: CommissionRepository, keys: set[OrderKey]) -> int:
        """Post every transaction the orders owe and have not posted. Idempotent."""
        facts = await repo.order_facts(keys)
        if not facts:
            return 0
        programs = await repo.programs({f.store_id for f in facts.values()})
        posted = await repo.posted(facts)
        entries = []
        summaries = []
        lines: list[dict[str, Any]] = []
        for key in sorted(facts):
            f = facts[key]
            for txn in ledger_delta(f, programs[f.store_id], posted[key], self.policy):
                entries.append((txn, f.store_id, f.affiliate_id))
            result = compute_order(f, programs[f.store_id], self.policy)
            summaries.append(summary(f, result))
            lines += order_lines(f, result)
        await repo.set_summaries(summaries)
        await repo.set_lines(lines)
        return await repo.post_many(entries, self.clock.now())

    # -- reads ------------------------------------------------------------------------------

    async def order_commission(
        self, session: AsyncSession, store_id: str, order_id: str
    ) -> tuple[Any, OrderCommission | None]:
        repo = CommissionRepository(session)
        key = (store_id, order_id)
        # The row and the facts are two reads (READ COMMITTED): a consumer may commit between
        # them. Read until they agree, so that a view never shows, say, no affiliate beside a
        # payable commission.
        for _ in range(5):
            row = await repo.order_row(store_id, order_id)
            if row is None:
                raise NotFound("order", store_id=store_id, order_id=order_id)
            facts = (await repo.order_facts([key])).get(key)
            if facts is None:
                return row, None
            again = await repo.order_row(store_id, order_id)
            if again == row:
                break
        assert facts is not None
        program = (await repo.programs([facts.store_id]))[facts.store_id]
        return row, compute_order(facts, program, self.policy)

    async def settlement(
        self,
        session: AsyncSession,
        start: datetime,
        end: datetime,
        *,
        store_id: str | None = None,
        affiliate_id: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Per currency: affiliate sales, orders completed, commission payable (gross), reversed
        and net of the chargeable orders completed in [start, end); the estimated commission of
        those placed in it and not completed, apart."""
        rows = await CommissionRepository(session).settlement_totals(
            store_id=store_id, affiliate_id=affiliate_id, start=start, end=end
        )
        return {
            r.currency: {
                "affiliate_sales": from_minor(r.sales, r.currency),
                "orders_completed": r.completed,
                "commission_payable": from_minor(r.commission, r.currency),
                "reversed": from_minor(r.reversed, r.currency),
                "net": from_minor(r.commission - r.reversed, r.currency),
                "orders_open": r.open,
                "estimated": from_minor(r.estimated, r.currency),
            }
            for r in rows
        }

    async def summarise(self, session: AsyncSession, limit: int = 1000) -> int:
        """Compute the summary of up to ``limit`` orders that have none (orders stored before
        the rollup existed); returns how many. Run until 0: ``alliance ledger summarise``."""
        repo = CommissionRepository(session)
        ids = await repo.unsummarised(limit)
        await repo.lock_orders(ids)  # as the consumer does: no write from a stale read
        facts = await repo.order_facts(ids)
        programs = await repo.programs({f.store_id for f in facts.values()})
        results = [(f, compute_order(f, programs[f.store_id], self.policy)) for f in facts.values()]
        await repo.set_summaries([summary(f, r) for f, r in results])
        await repo.set_lines([line for f, r in results for line in order_lines(f, r)])
        return len(ids)

    async def reconciliation(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> dict[tuple[str, str], dict[str, Decimal]]:
        """Per (UTC day, currency): commission estimated at placement (gross, chargeable orders
        placed that day), what became payable (commission posted), what was cancelled (gross
        commission of orders cancelled that day) and what was reversed (reversals posted), and
        the estimate of that day's orders still open. For a day's placements: estimated =
        payable_of_day_orders + cancelled_of_day_orders + still_open (``unexplained`` is what
        is not, and is zero when the books agree)."""
        repo = CommissionRepository(session)
        out: dict[tuple[str, str], dict[str, Decimal]] = {}
        keys = (
            "estimated_at_placement",
            "became_payable",
            "cancelled",
            "reversed",
            "day_orders_payable",
            "day_orders_cancelled",
            "day_orders_open",
        )

        def row(day: str, currency: str) -> dict[str, Decimal]:
            return out.setdefault((day, currency), dict.fromkeys(keys, ZERO))

        ids = await repo.orders_touching(start, end)
        for chunk in (ids[i : i + 1000] for i in range(0, len(ids), 1000)):
            facts = await repo.order_facts(chunk)
            programs = await repo.programs({f.store_id for f in facts.values()})
            for f in facts.values():
                gross = compute_order(
                    replace(f, status=OrderStatus.PLACED, refunds=()),
                    programs[f.store_id],
                    self.policy,
                )
                if not gross.chargeable:
                    continue
                placed_day = f.placed_at.astimezone(UTC).strftime("%Y-%m-%d")
                if start <= f.placed_at < end:
                    r = row(placed_day, f.currency)
                    r["estimated_at_placement"] += gross.commission
                    key = {
                        OrderStatus.COMPLETED: "day_orders_payable",
                        OrderStatus.CANCELLED: "day_orders_cancelled",
                    }.get(f.status, "day_orders_open")
                    r[key] += gross.commission
                done_at = f.status_at
                if f.status is OrderStatus.CANCELLED and done_at and start <= done_at < end:
                    cancelled_day = done_at.astimezone(UTC).strftime("%Y-%m-%d")
                    row(cancelled_day, f.currency)["cancelled"] += gross.commission
        for day, currency, kind, minor in await repo.affiliate_postings_by_day(start, end):
            r = row(day, currency)
            if kind == "commission":
                r["became_payable"] += from_minor(minor, currency)
            else:
                r["reversed"] += -from_minor(minor, currency)
        return dict(sorted(out.items()))

    async def pay(
        self,
        session: AsyncSession,
        key: str,
        affiliate_id: str,
        up_to: datetime,
        holding: timedelta,
    ) -> tuple[Any, bool]:
        """Pay the affiliate's net payable balance up to ``up_to`` (commission whose order
        completed at least ``holding`` ago), once per idempotency ``key``. Returns the payout
        row and whether it was created now."""
        repo = CommissionRepository(session)
        await repo.lock(f"payout:{affiliate_id}")  # one payout at a time per affiliate
        existing = await repo.payout_by_key(key)
        if existing is not None:
            if existing.affiliate_id != affiliate_id or existing.up_to != up_to:
                raise ProgramError("idempotency_key_reused", "this key was used for another payout")
            return existing, False
        now = self.clock.now()
        minor = await repo.payable_minor(affiliate_id, up_to, now - holding)
        balances = {c: from_minor(v, c) for c, v in minor.items()}
        txns = payout_txns(f"payout:{key}", affiliate_id, balances)  # raises when nothing to pay
        await repo.post(txns, store_id=None, affiliate_id=affiliate_id, at=now)
        amounts = {t.currency: str(-t.amount) for t in txns}
        payout_id = await repo.add_payout(key, affiliate_id, up_to, amounts, now)
        return await repo.payout(payout_id), True

    # -- program ----------------------------------------------------------------------------

    async def change_program(
        self,
        session: AsyncSession,
        store_id: str,
        kind: OpKind,
        actor: str,
        key: str | None = None,
        rate: Decimal | None = None,
        days: int | None = None,
    ) -> ProgramState:
        """Apply one program operation now (the service's clock) and record it."""
        repo = CommissionRepository(session)
        await repo.lock(store_id)
        history = (await repo.programs([store_id]))[store_id]
        op = ProgramOp(kind, self.clock.now(), key, rate, days)
        before = history.current()
        after_history = history.append(op)  # raises ProgramError when the rules refuse
        after = after_history.current()
        await repo.add_program_op(store_id, op, actor, state_json(before), state_json(after))
        # the product channel shows the rates in force now, and only stores in the program
        await refresh_store(session, store_id, after, op.at)
        return after

    async def program(self, session: AsyncSession, store_id: str) -> ProgramHistory:
        return (await CommissionRepository(session).programs([store_id]))[store_id]
