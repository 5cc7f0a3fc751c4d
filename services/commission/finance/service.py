"""Finance use cases: settlements, statements, the reconciliation, payouts, the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.core.commission import (
    AdjustmentAction,
    AdjustmentReason,
    OrderKey,
    lock_of,
)
from services.commission.core.errors import Locked
from services.commission.core.holds import Earned, Hold, HoldStatus, end, payable_split
from services.commission.core.ledger import payout_txns
from services.commission.core.reconciliation import DayFigures, Reconciliation
from services.commission.core.statements import StoreTotals, period_range, statement_totals
from services.commission.core.webhooks import WebhookEvent, hold_notice, payout_notice
from services.commission.csv_export import snapshot
from services.commission.errors import IdempotencyKeyReused, NotFound, PeriodNotOver
from services.commission.finance.repository import FinanceRepository
from services.commission.orders.service import AdjustmentAsk, OrderService
from services.commission.webhooks.service import WebhookService
from shared.clock import Clock, SystemClock
from shared.money import from_minor

#: orders read at a time by the reconciliation
CHUNK = 1000


@dataclass(frozen=True)
class StatementData:
    """A store's statement of a period: frozen (``closed_at``) or live."""

    start: datetime
    end: datetime
    totals: list[dict[str, Any]] | list[StoreTotals]
    closed_at: datetime | None = None
    closed_by: str | None = None


@dataclass
class FinanceService:
    clock: Clock = field(default_factory=SystemClock)
    orders: OrderService = field(default_factory=OrderService)
    #: where a CSV export reads from (a transaction of its own: the response outlives the
    #: request's)
    sessions: async_sessionmaker[AsyncSession] | None = None
    #: postings read at a time by a CSV export
    export_page: int = 5000
    #: where payouts' webhook events are written (None: none are)
    webhooks: WebhookService | None = None

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
        rows = await FinanceRepository(session).settlement_totals(
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

    async def reconciliation(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> list[tuple[str, str, DayFigures]]:
        """Per (UTC day, currency), in that order: the figures of
        :class:`~services.commission.core.reconciliation.Reconciliation`."""
        repo = FinanceRepository(session)
        books = Reconciliation(start, end, self.orders.policy)
        ids = await repo.orders_touching(start, end)
        for chunk in (ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)):
            for facts, program in await self.orders.with_programs(session, chunk):
                books.add_order(facts, program)
        for day, currency, kind, minor in await repo.affiliate_postings_by_day(start, end):
            books.add_postings(day, currency, kind, from_minor(minor, currency))
        return books.rows()

    async def statement(self, session: AsyncSession, store_id: str, period: str) -> StatementData:
        """The statement as closed, else live from the postings of the period."""
        start, end = period_range(period)
        repo = FinanceRepository(session)
        row = await repo.statement(store_id, period)
        if row is not None:
            return StatementData(start, end, list(row.totals), row.closed_at, row.closed_by)
        postings = await repo.store_postings_by_kind(store_id, start.date(), end.date())
        return StatementData(start, end, statement_totals(postings))

    async def close_statement(
        self,
        session: AsyncSession,
        store_id: str,
        period: str,
        actor: str,
        frozen: list[dict[str, Any]],
    ) -> None:
        """Freeze a month's statement with the ``frozen`` totals, once the month is over
        (else :class:`PeriodNotOver`); the first close stands."""
        _, end = period_range(period)
        now = self.clock.now()
        if now < end:
            raise PeriodNotOver(ends_at=end.isoformat())
        await FinanceRepository(session).close_statement(store_id, period, now, actor, frozen)

    async def pay(
        self,
        session: AsyncSession,
        key: str,
        affiliate_id: str,
        up_to: datetime,
        holding: timedelta,
        requires_lock: bool = False,
    ) -> tuple[Any, bool]:
        """Pay the affiliate's net payable balance up to ``up_to`` (commission whose order
        completed at least ``holding`` ago; with ``requires_lock``, only that of orders whose
        locking date has passed), once per idempotency ``key``. Returns the payout row and
        whether it was created now."""
        repo = FinanceRepository(session)
        await repo.lock_payouts(affiliate_id)  # one payout at a time per affiliate
        existing = await repo.payout_by_key(key)
        if existing is not None:
            if existing.affiliate_id != affiliate_id or existing.up_to != up_to:
                raise IdempotencyKeyReused()
            return existing, False
        now = self.clock.now()
        holds = await self.orders.holds(session, [affiliate_id])
        if requires_lock or holds:
            minor = await self._per_order_minor(
                session, affiliate_id, up_to, now - holding, now, requires_lock, holds
            )
        else:
            minor = await repo.payable_minor(affiliate_id, up_to, now - holding)
        balances = {c: from_minor(v, c) for c, v in minor.items()}
        txns = payout_txns(f"payout:{key}", affiliate_id, balances)  # raises when nothing to pay
        await self.orders.post(session, txns, store_id=None, affiliate_id=affiliate_id, at=now)
        amounts = {t.currency: str(-t.amount) for t in txns}
        payout_id = await repo.add_payout(key, affiliate_id, up_to, amounts, now)
        if self.webhooks is not None:  # in the payout's transaction
            notice = payout_notice(key, payout_id, affiliate_id, amounts, up_to, now)
            await self.webhooks.notify(session, [notice])
        return await repo.payout(payout_id), True

    async def _per_order_minor(
        self,
        session: AsyncSession,
        affiliate_id: str,
        up_to: datetime,
        completed_before: datetime,
        now: datetime,
        requires_lock: bool,
        holds: list[Hold],
    ) -> dict[str, int]:
        """As :meth:`FinanceRepository.payable_minor`, order by order: without the orders an
        active hold holds, and with ``requires_lock`` of the orders locked at ``now`` only
        (the lock period in force at each order's placement, :func:`lock_of`)."""
        repo = FinanceRepository(session)
        rows = await repo.earned_by_order(affiliate_id, up_to, completed_before)
        programs = await self.orders.programs.histories(session, {r.store_id for r in rows})
        earned = [
            Earned(
                r.store_id,
                r.currency,
                int(r.minor),
                lock_of(r.placed_at, r.status_at, programs[r.store_id]),
            )
            for r in rows
        ]
        out, _ = payable_split(earned, holds, affiliate_id, now, requires_lock=requires_lock)
        for currency, minor in (await repo.paid_minor(affiliate_id)).items():
            out[currency] = out.get(currency, 0) + minor  # payouts are negative here
        return out

    # -- holds ------------------------------------------------------------------------------

    async def place_hold(
        self,
        session: AsyncSession,
        affiliate_id: str,
        store_id: str | None,
        reason: str,
        note: str | None,
        actor: str,
    ) -> Any:
        """Hold the affiliate's commissions on the store (None: every store) from now on:
        posted but not payable until released; ``commission.held`` in the same transaction."""
        row = await FinanceRepository(session).add_hold(
            affiliate_id, store_id, reason, note, self.clock.now(), actor
        )
        await self._hold_event(session, WebhookEvent.COMMISSION_HELD, row)
        return row

    async def end_hold(
        self, session: AsyncSession, hold_id: int, status: HoldStatus, actor: str
    ) -> tuple[Any, list[OrderKey], list[OrderKey]]:
        """Release (payable again, nothing lost) or void the hold (each held order not locked
        yet declined with reason ``fraud``, an adjustment of its own; the locked ones are
        listed and unchanged). Returns the hold, the orders reversed and the orders locked.
        404 no such hold, 409 ``hold_not_active`` when it ended already."""
        repo = FinanceRepository(session)
        row = await repo.hold(hold_id, for_update=True)
        if row is None:
            raise NotFound("hold", hold_id=str(hold_id))
        current = Hold(
            row.id, row.affiliate_id, row.store_id, HoldStatus(row.status), row.created_at
        )
        end(current, status)  # raises HoldNotActive
        reversed_: list[OrderKey] = []
        locked: list[OrderKey] = []
        if status is HoldStatus.VOIDED:
            for store, order in await repo.held_orders(row.affiliate_id, row.store_id):
                ask = AdjustmentAsk(
                    order,
                    AdjustmentAction.DECLINE,
                    AdjustmentReason.FRAUD,
                    note=f"hold {hold_id} voided",
                )
                try:
                    async with session.begin_nested():
                        await self.orders.adjust(
                            session, store, ask, f"hold-{hold_id}-void-{order}", actor
                        )
                    reversed_.append((store, order))
                except Locked:
                    locked.append((store, order))
        ended = await repo.end_hold(hold_id, status.value, self.clock.now(), actor)
        await self._hold_event(session, WebhookEvent.COMMISSION_RELEASED, ended)
        return ended, reversed_, locked

    async def _hold_event(self, session: AsyncSession, kind: WebhookEvent, row: Any) -> None:
        if self.webhooks is not None:
            notice = hold_notice(
                kind,
                row.id,
                row.affiliate_id,
                row.store_id,
                row.reason,
                row.note,
                row.status,
                self.clock.now(),
            )
            await self.webhooks.notify(session, [notice])

    async def list_holds(
        self, session: AsyncSession, affiliate_id: str | None, status: str | None
    ) -> list[Any]:
        return await FinanceRepository(session).list_holds(affiliate_id, status)

    async def payout(self, session: AsyncSession, payout_id: int) -> Any:
        return await FinanceRepository(session).payout(payout_id)

    async def ledger(
        self,
        session: AsyncSession,
        *,
        account: str | None,
        start: datetime | None,
        end: datetime | None,
        after: int,
        limit: int,
    ) -> list[Any]:
        """Postings in id order after posting id ``after`` (keyset pagination)."""
        return await FinanceRepository(session).ledger(
            account=account, start=start, end=end, after=after, limit=limit
        )

    async def ledger_pages(
        self,
        *,
        account: str | None,
        start: datetime | None,
        end: datetime | None,
        after: int,
    ) -> AsyncIterator[list[Any]]:
        """Every matching posting after ``after``, a page at a time, from one snapshot."""
        assert self.sessions is not None, "a CSV export needs the app's sessions"
        async with snapshot(self.sessions) as session:
            while page := await self.ledger(
                session, account=account, start=start, end=end, after=after, limit=self.export_page
            ):
                yield page
                after = page[-1].posting_id
