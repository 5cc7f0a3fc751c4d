"""Finance use cases: settlements, statements, the reconciliation, payouts, the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.audit.service import AuditTrail
from services.commission.core.commission import (
    AdjustmentAction,
    AdjustmentReason,
    OrderKey,
    lock_of,
)
from services.commission.core.errors import FxRateMissing, Locked
from services.commission.core.holds import Hold, HoldStatus, end
from services.commission.core.ledger import TxnKind, payout_txns
from services.commission.core.payouts import (
    DEFAULT_MINIMUM,
    ROUNDING,
    Balance,
    Carry,
    CarryWhy,
    PayableRule,
    PayeeTerms,
    PayoutPlan,
    balance,
    decide,
    pair,
    parse_rates,
    payout_txn,
)
from services.commission.core.reconciliation import DayFigures, Reconciliation
from services.commission.core.statements import StoreTotals, period_range, statement_totals
from services.commission.core.webhooks import WebhookEvent, hold_notice, payout_notice
from services.commission.csv_export import snapshot
from services.commission.errors import (
    IdempotencyKeyReused,
    NotARunPayout,
    NotFound,
    NothingToFile,
    PeriodNotOver,
)
from services.commission.finance.documents import (
    Payer,
    StoreLine,
    invoice_pdf,
    pain_001,
    payouts_csv,
)
from services.commission.finance.repository import FinanceRepository
from services.commission.orders.service import AdjustmentAsk, OrderService
from services.commission.webhooks.service import WebhookService
from shared.clock import Clock, SystemClock
from shared.money import ZERO, from_minor, to_minor

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


@dataclass(frozen=True)
class RunData:
    run: Any
    payouts: list[Any]
    carried: list[Any]


def rates_day(up_to: datetime) -> date:
    """The day whose rates a run converts at: its ``up_to``'s UTC day."""
    return up_to.astimezone(UTC).date()


def payout_detail(plan: PayoutPlan, settings: Any, day: date) -> dict[str, Any]:
    """What a run's payout records beyond its amount: the sources, each conversion's rate
    and rounding, the minimum, and the payee's bank details as they were when paid."""
    return {
        "currency": plan.currency,
        "amount": str(plan.amount),
        "source_amounts": {c: str(v) for c, v in plan.source_amounts.items()},
        "fx_rate": {pair(x.base, x.quote): str(x.rate) for x in plan.conversions} or None,
        "conversions": [
            {
                "pair": pair(x.base, x.quote),
                "rate": str(x.rate),
                "from": str(x.base_amount),
                "to": str(x.quote_amount),
            }
            for x in plan.conversions
        ],
        "rates_day": day.isoformat(),
        "rounding": ROUNDING,
        "minimum": str(plan.minimum),
        "payee": {
            "method": settings.method,
            "account_holder": settings.account_holder,
            "iban": settings.iban,
            "bic": settings.bic,
            "tax_id": settings.tax_id,
            "address": settings.address,
        },
    }


def next_payout_view(bal: Balance, decided: PayoutPlan | Carry | None) -> dict[str, Any] | None:
    """The affiliate's next payout as its earnings show it."""
    if decided is None:
        return None
    held = {w: {c: str(v) for c, v in per.items()} for w, per in bal.held.items()}
    payable = {c: str(v) for c, v in bal.payable.items()}
    if isinstance(decided, PayoutPlan):
        return {
            "will_pay": True,
            "currency": decided.currency,
            "amount": str(decided.amount),
            "why_not": None,
            "minimum": str(decided.minimum),
            "payable": payable,
            "held_back": held,
        }
    return {
        "will_pay": False,
        "currency": decided.currency,
        "amount": None if decided.balance is None else str(decided.balance),
        "why_not": decided.why.value,
        "minimum": None if decided.minimum is None else str(decided.minimum),
        "payable": payable,
        "held_back": held,
    }


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
    #: called at the end of each affiliate's step of a payout run, before its commit (tests
    #: inject a failure there to prove that a run resumes without paying anyone twice)
    step_hook: Callable[[str], Awaitable[None]] | None = None
    #: payouts pay only commission whose order's locking date has passed
    #: (``ALLIANCE_PAYOUT_REQUIRES_LOCK``; docs/program-controls.md)
    requires_lock: bool = False

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
        rule = PayableRule(holding, requires_lock=requires_lock or self.requires_lock)
        bal = await self._balance(repo, affiliate_id, up_to, now, rule)
        # raises when nothing is positive
        txns = payout_txns(f"payout:{key}", affiliate_id, bal.payable)
        await self.orders.post(session, txns, store_id=None, affiliate_id=affiliate_id, at=now)
        amounts = {t.currency: str(-t.amount) for t in txns}
        payout_id = await repo.add_payout(key, affiliate_id, up_to, amounts, now)
        if self.webhooks is not None:  # in the payout's transaction
            notice = payout_notice(key, payout_id, affiliate_id, amounts, up_to, now)
            await self.webhooks.notify(session, [notice])
        return await repo.payout(payout_id), True

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

    # -- payout runs ---------------------------------------------------------------------------

    async def _balance(
        self,
        repo: FinanceRepository,
        affiliate_id: str,
        up_to: datetime,
        now: datetime,
        rule: PayableRule,
    ) -> Balance:
        """The affiliate's balance by :func:`~services.commission.core.payouts.held_why`: its
        active holds and, with ``rule.requires_lock``, each order's locking date (the lock
        period in force at the order's placement) join the rule."""
        earnings = await repo.earnings(affiliate_id, up_to)
        holds = tuple(await self.orders.holds(repo.session, [affiliate_id]))
        if rule.requires_lock:
            stores = {e.store_id for e in earnings}
            programs = await self.orders.programs.histories(repo.session, stores)
            earnings = [
                e
                if e.completed_at is None or e.placed_at is None
                else replace(e, locks_at=lock_of(e.placed_at, e.completed_at, programs[e.store_id]))
                for e in earnings
            ]
        rule = replace(rule, holds=holds, affiliate_id=affiliate_id)
        return balance(earnings, await repo.paid(affiliate_id), now, rule)

    async def put_payout_settings(
        self, session: AsyncSession, affiliate_id: str, values: dict[str, Any]
    ) -> Any:
        """Record the affiliate's payout settings (replacing any); returns them as stored."""
        repo = FinanceRepository(session)
        await repo.put_payout_settings(
            {**values, "affiliate_id": affiliate_id, "updated_at": self.clock.now()}
        )
        return (await repo.payout_settings([affiliate_id]))[affiliate_id]

    async def payout_settings(self, session: AsyncSession, affiliate_id: str) -> Any:
        return (await FinanceRepository(session).payout_settings([affiliate_id])).get(affiliate_id)

    async def put_minimum(self, session: AsyncSession, currency: str, minimum: Decimal) -> None:
        await FinanceRepository(session).put_minimum(
            currency, to_minor(minimum, currency), self.clock.now()
        )

    async def minimums(self, session: AsyncSession) -> dict[str, Decimal]:
        """The platform minimum of every currency finance set (others: the default)."""
        rows = await FinanceRepository(session).minimums()
        return {c: from_minor(v, c) for c, v in sorted(rows.items())}

    async def put_rates(
        self, session: AsyncSession, day: date, raw: dict[str, Decimal]
    ) -> dict[str, Decimal]:
        """Record the day's rates (:class:`InvalidFxRate` for a bad pair or rate); returns every
        rate of the day."""
        repo = FinanceRepository(session)
        await repo.put_rates(day, parse_rates(raw), self.clock.now())
        return {pair(b, q): r for (b, q), r in sorted((await repo.rates(day)).items())}

    async def rates(self, session: AsyncSession, day: date) -> dict[str, Decimal]:
        rows = await FinanceRepository(session).rates(day)
        return {pair(b, q): r for (b, q), r in sorted(rows.items())}

    async def _decision(
        self,
        repo: FinanceRepository,
        affiliate_id: str,
        up_to: datetime,
        now: datetime,
        rule: PayableRule,
        currency: str | None,
    ) -> tuple[Balance, PayoutPlan | Carry | None, Any]:
        """The affiliate's balance, what a run would do with it, and its payout settings. A
        run in one currency leaves out every affiliate paid in another (or not set up)."""
        settings = (await repo.payout_settings([affiliate_id])).get(affiliate_id)
        if currency is not None and (settings is None or settings.currency != currency):
            return Balance(), None, settings
        bal = await self._balance(repo, affiliate_id, up_to, now, rule)
        terms = None
        platform = DEFAULT_MINIMUM
        if settings is not None:
            terms = PayeeTerms(
                settings.currency, from_minor(settings.minimum_minor, settings.currency)
            )
            minimums = await repo.minimums()
            if settings.currency in minimums:
                platform = from_minor(minimums[settings.currency], settings.currency)
        rates = await repo.rates(rates_day(up_to))
        return bal, decide(bal, terms, platform, rates), settings

    async def run_payouts(
        self,
        key: str,
        up_to: datetime,
        currency: str | None,
        holding: timedelta,
        actor: str,
        audit: Callable[[AsyncSession], AuditTrail] | None = None,
    ) -> tuple[int, bool]:
        """Make (or resume) the payout run of idempotency ``key``: every affiliate credited up
        to ``up_to`` is paid or carried forward, each in a transaction of its own that also
        records that its step is done, so a run that stopped half-way (a crash, a lost
        connection) resumes when the same key is posted again and pays nobody twice. A new run
        whose payouts need a rate nobody recorded is refused whole (``fx_rate_missing``).
        Returns the run's id and whether it was created now."""
        assert self.sessions is not None, "a payout run needs the app's sessions"
        rule = PayableRule(holding, requires_lock=self.requires_lock)
        async with self.sessions() as session, session.begin():
            repo = FinanceRepository(session)
            row = await repo.run_by_key(key)
            if row is None:
                now = self.clock.now()
                affiliates = await repo.earning_affiliates(up_to)
                missing: set[str] = set()
                for affiliate_id in affiliates:
                    _, decided, _ = await self._decision(
                        repo, affiliate_id, up_to, now, rule, currency
                    )
                    if isinstance(decided, Carry) and decided.why is CarryWhy.FX_RATE_MISSING:
                        missing.update(decided.missing_rates)
                if missing:
                    raise FxRateMissing(day=rates_day(up_to).isoformat(), pairs=sorted(missing))
                run_id = await repo.add_run(key, up_to, currency, now, actor)
                created = run_id is not None
                if run_id is None:  # another request made it first
                    row = await repo.run_by_key(key)
                elif audit is not None:
                    after = {"id": run_id, "up_to": up_to.isoformat(), "currency": currency}
                    await audit(session).record(
                        "payout_run.create",
                        f"payout_run:{run_id}",
                        tenant=None,
                        before=None,
                        after={**after, "idempotency_key": key},
                    )
            else:
                created = False
            if row is not None:
                if row.up_to != up_to or row.currency != currency:
                    raise IdempotencyKeyReused("this key was used for another payout run")
                run_id = row.id
        assert run_id is not None
        run = await self._run_row(run_id)
        async with self.sessions() as session, session.begin():
            affiliates = await FinanceRepository(session).earning_affiliates(up_to)
        for affiliate_id in affiliates:
            async with self.sessions() as session, session.begin():
                await self._run_step(session, run, affiliate_id, rule)
        async with self.sessions() as session, session.begin():
            await FinanceRepository(session).finish_run(run_id, self.clock.now())
        return run_id, created

    async def _run_row(self, run_id: int) -> Any:
        assert self.sessions is not None
        async with self.sessions() as session, session.begin():
            return await FinanceRepository(session).run(run_id)

    async def _run_step(
        self, session: AsyncSession, run: Any, affiliate_id: str, rule: PayableRule
    ) -> None:
        """One affiliate's step of a run, in the caller's transaction: nothing when done
        already; else its payout (ledger transaction, payout row, webhook) or its carried
        row. The run's start time is its ``now``: a resumed run decides as it first would."""
        repo = FinanceRepository(session)
        await repo.lock_payouts(affiliate_id)  # one payout at a time per affiliate
        if await repo.run_has(run.id, affiliate_id):
            return
        bal, decided, settings = await self._decision(
            repo, affiliate_id, run.up_to, run.created_at, rule, run.currency
        )
        if decided is None:
            return
        if isinstance(decided, Carry):
            detail = {
                "payable": {c: str(v) for c, v in bal.payable.items()},
                "held": {w: {c: str(v) for c, v in per.items()} for w, per in bal.held.items()},
                "minimum": None if decided.minimum is None else str(decided.minimum),
                "missing_rates": list(decided.missing_rates),
            }
            shown = None if decided.balance is None else str(decided.balance)
            await repo.add_carried(
                run.id, affiliate_id, decided.why.value, decided.currency, shown, detail
            )
        else:
            await self._pay_planned(session, run, affiliate_id, decided, settings)
        if self.step_hook is not None:  # tests: a failure between the effects and the commit
            await self.step_hook(affiliate_id)

    async def _pay_planned(
        self, session: AsyncSession, run: Any, affiliate_id: str, plan: PayoutPlan, settings: Any
    ) -> None:
        repo = FinanceRepository(session)
        now = self.clock.now()
        key = f"run:{run.id}:{affiliate_id}"
        txn = payout_txn(f"payout:{key}", affiliate_id, plan)
        await self.orders.post(session, [txn], store_id=None, affiliate_id=affiliate_id, at=now)
        detail = payout_detail(plan, settings, rates_day(run.up_to))
        amounts = {plan.currency: str(plan.amount)}
        payout_id = await repo.add_payout(
            key, affiliate_id, run.up_to, amounts, now, run_id=run.id, detail=detail
        )
        if self.webhooks is not None:  # in the payout's transaction
            notice = payout_notice(
                key, payout_id, affiliate_id, amounts, run.up_to, now, run_id=run.id, detail=detail
            )
            await self.webhooks.notify(session, [notice])

    async def run_view(self, session: AsyncSession, run_id: int) -> RunData | None:
        """The run with its payouts and its affiliates carried forward (None: no such run)."""
        repo = FinanceRepository(session)
        run = await repo.run(run_id)
        if run is None:
            return None
        return RunData(run, await repo.run_payouts(run_id), await repo.run_carried(run_id))

    async def payment_file(
        self, session: AsyncSession, run_id: int, fmt: str, payer: Payer
    ) -> tuple[bytes, str] | None:
        """The run's payment file and its media type: ``pain.001`` (its EUR bank transfers;
        :class:`NothingToFile` when it has none) or ``csv`` (every payout). None: no such run."""
        data = await self.run_view(session, run_id)
        if data is None:
            return None
        if fmt == "csv":
            return payouts_csv(data.payouts).encode(), "text/csv"
        eur = [p for p in data.payouts if p.detail["currency"] == "EUR"]
        if not eur:
            raise NothingToFile()
        execution = max(data.run.created_at, self.clock.now()).date()
        return pain_001(payer, eur, execution), "application/xml"

    async def invoice(self, session: AsyncSession, payout: Any, payer: Payer) -> bytes:
        """The self-billing invoice of a run's payout (:class:`NotARunPayout` for a single
        payout: it records no payee details)."""
        if payout.run_id is None or payout.detail is None:
            raise NotARunPayout()
        repo = FinanceRepository(session)
        previous = await repo.previous_payout(payout.affiliate_id, payout.id)
        start = None if previous is None else previous.up_to
        lines: dict[tuple[str, str], StoreLine] = {}
        for r in await repo.earnings_by_store(payout.affiliate_id, start, payout.up_to):
            key = (r.store_id, r.currency)
            line = lines.get(key) or StoreLine(r.store_id, r.currency, 0, ZERO, 0, ZERO)
            amount = from_minor(int(r.minor), r.currency)
            if r.kind == TxnKind.COMMISSION.value:
                line = replace(line, orders=line.orders + r.n, commission=line.commission + amount)
            else:
                line = replace(line, refunds=line.refunds + r.n, reversed=line.reversed - amount)
            lines[key] = line
        return invoice_pdf(payer, payout, start, list(lines.values()), self.clock.now())

    async def next_payout(
        self, session: AsyncSession, affiliate_id: str, holding: timedelta
    ) -> dict[str, Any] | None:
        """What a run made now would do for the affiliate, and why anything is held back."""
        now = self.clock.now()
        repo = FinanceRepository(session)
        bal, decided, _ = await self._decision(
            repo,
            affiliate_id,
            now,
            now,
            PayableRule(holding, requires_lock=self.requires_lock),
            None,
        )
        return next_payout_view(bal, decided)

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
