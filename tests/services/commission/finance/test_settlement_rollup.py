"""Settlements and statements from the per-day rollups equal the scans they replace, to the
cent, for random histories written through the repositories' own write paths (placements,
decisions, summaries, terminal statuses, refunds, re-placements, deletions, postings of every
kind), over random ranges (whole days, partial days, one day, the defaults) (issue 20, item 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploy.migrations import upgrade
from deploy.stack import orchestrate, postgres
from services.commission.app import COMPACTION, schedule_compaction
from services.commission.core.commission import OrderStatus, Placement
from services.commission.core.ledger import (
    LedgerTxn,
    Posting,
    TxnKind,
    affiliate_account,
    store_account,
)
from services.commission.core.statements import HALF_HOUR, HOUR, spans, whole_days
from services.commission.finance.repository import FinanceRepository
from services.commission.orders.compaction import LOCK, RollupCompactor
from services.commission.orders.repository import ROLLUPS, LedgerRepository, OrderRepository
from services.commission.orders.verify import verify
from shared.config import Settings
from shared.db import make_engine, make_sessions, try_lock_key
from shared.service_runtime import BackgroundTasks

#: the settlement as it was computed before the rollup: a scan of the range's orders (the
#: reference the rollup must equal)
REFERENCE_SETTLEMENT = """
SELECT currency,
    coalesce(sum(sales_minor) FILTER (WHERE done), 0) AS sales,
    count(*) FILTER (WHERE done) AS completed,
    coalesce(sum(commission_minor) FILTER (WHERE done), 0) AS commission,
    coalesce(sum(reversed_minor) FILTER (WHERE done), 0) AS reversed,
    count(*) FILTER (WHERE NOT done) AS open,
    coalesce(sum(commission_minor - reversed_minor) FILTER (WHERE NOT done), 0) AS estimated
FROM (
    SELECT currency, sales_minor, commission_minor, reversed_minor, true AS done
    FROM commission.orders
    WHERE {who} = :who AND status = 'completed'
      AND status_at >= :start AND status_at < :end AND chargeable
    UNION ALL
    SELECT currency, sales_minor, commission_minor, reversed_minor, false AS done
    FROM commission.orders
    WHERE {who} = :who AND status = 'placed'
      AND placed_at >= :start AND placed_at < :end AND chargeable
) AS settling
GROUP BY currency
ORDER BY currency
"""

#: the statement as it was computed before the rollup: a scan of the month's postings
REFERENCE_STATEMENT = """
SELECT p.currency, t.kind, count(*), sum(p.amount_minor)
FROM commission.ledger_postings AS p
JOIN commission.ledger_transactions AS t ON t.id = p.txn_id
WHERE p.account = :account AND t.occurred_at >= :start AND t.occurred_at < :end
GROUP BY p.currency, t.kind
"""

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 6


def _at(rng: random.Random) -> datetime:
    """A time in the history's days, at a random second (edges and midnights included)."""
    if rng.random() < 0.1:
        return DAY0 + timedelta(days=rng.randrange(DAYS + 1))  # a midnight
    return DAY0 + timedelta(seconds=rng.randrange(DAYS * 86_400))


async def _history(session: AsyncSession, rng: random.Random, ns: str) -> None:
    """Orders of two stores and three affiliates (and none), in USD and EUR, changed in random
    order through every write path the consumer and the reconciliation use."""
    repo = OrderRepository(session)
    stores, affiliates = [f"{ns}s{i}" for i in range(2)], [f"{ns}a{i}" for i in range(3)]
    keys = [(rng.choice(stores), f"o{n}") for n in range(60)]
    keys = list(dict.fromkeys(keys))
    revision = dict.fromkeys(keys, 0)
    steps = [1, 3] + [rng.randrange(7) for _ in range(24)]  # placements and sums first
    for n, step in enumerate(steps):  # batches
        batch = keys if n < 2 else rng.sample(keys, rng.randrange(1, 20))
        if step == 0:
            await repo.ensure_orders(batch)
        elif step == 1:
            await repo.ensure_orders(batch)
            await repo.upsert_placed_many(
                [
                    {
                        "store_id": s,
                        "order_id": o,
                        "currency": rng.choice(["USD", "EUR"]),
                        "placed_at": _at(rng),
                        "items": [],
                    }
                    for s, o in batch
                ]
            )
        elif step == 2:
            await repo.ensure_orders(batch)
            rows = []
            for s, o in batch:
                revision[(s, o)] += 1
                aff = rng.choice([*affiliates, None])
                rows.append(
                    {
                        "b_store": s,
                        "b_oid": o,
                        "b_rev": revision[(s, o)],
                        "b_aff": aff,
                        "b_click": None,
                        "b_click_at": None,
                        "b_sub": None,
                        "b_expl": None,
                    }
                )
            await repo.set_attribution_many(rows)
        elif step == 3:
            await repo.ensure_orders(batch)
            summaries = []
            for key in batch:
                sales = rng.randrange(0, 10**6)
                commission = sales * rng.randrange(0, 30) // 100
                reversed_ = rng.choice([0, 0, commission // 2, commission])
                summaries.append((key, rng.random() < 0.8, sales, commission, reversed_))
            await repo.set_summaries(summaries)
        elif step == 4:
            await repo.ensure_orders(batch)
            statuses = [OrderStatus.COMPLETED, OrderStatus.COMPLETED, OrderStatus.CANCELLED]
            await repo.set_terminal_many([(k, rng.choice(statuses), _at(rng)) for k in batch])
        elif step == 5:
            await repo.ensure_orders(batch)
            await repo.lock_orders(batch)
            await repo.replace_placements(
                [(k, Placement(rng.choice(["USD", "EUR"]), _at(rng), ())) for k in batch]
            )
        else:
            gone = batch[:2]
            await session.execute(
                text("DELETE FROM commission.orders WHERE store_id = :s AND order_id = :o"),
                [{"s": s, "o": o} for s, o in gone],
            )


async def _postings(session: AsyncSession, rng: random.Random, ns: str) -> None:
    """Commissions, reversals and payouts of two stores' orders at random times, in batches."""
    ledger = LedgerRepository(session)
    stores, affiliates = [f"{ns}s{i}" for i in range(2)], [f"{ns}a{i}" for i in range(3)]
    for b in range(6):
        entries: list[tuple[LedgerTxn, str | None, str | None]] = []
        for n in range(rng.randrange(1, 15)):
            store, aff = rng.choice(stores), rng.choice(affiliates)
            currency = rng.choice(["USD", "EUR"])
            amount = Decimal(rng.randrange(1, 10**5)) / 100
            kind = rng.choice([TxnKind.COMMISSION, TxnKind.COMMISSION, TxnKind.REVERSAL])
            sign = 1 if kind == TxnKind.COMMISSION else -1
            postings = (
                Posting(store_account(store), -sign * amount),
                Posting(affiliate_account(aff), sign * amount),
            )
            entries.append(
                (LedgerTxn(f"{ns}{kind}:{b}:{n}", kind, f"o{n}", currency, postings), store, aff)
            )
        await ledger.post_many(entries, _at(rng))
        payout = Decimal(rng.randrange(1, 10**4)) / 100
        aff = rng.choice(affiliates)
        txn = LedgerTxn(
            f"{ns}payout:{b}",
            TxnKind.PAYOUT,
            None,
            "USD",
            (Posting(affiliate_account(aff), -payout), Posting("payouts:USD", payout)),
        )
        await ledger.post([txn], None, aff, _at(rng))


def _ranges(rng: random.Random) -> list[tuple[datetime, datetime]]:
    """Whole days, partial days at either edge or both, within one day, and the defaults."""
    out = [
        (DAY0, DAY0 + timedelta(days=DAYS)),
        (datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC)),
        (DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)),
    ]
    for _ in range(10):
        a, b = sorted([_at(rng), _at(rng)])
        if a < b:
            out.append((a, b))
    day, h, m = DAY0 + timedelta(days=2), timedelta(hours=1), timedelta(minutes=1)
    out += [
        (day + 3 * h, day + 20 * h),  # in one day, more than half of it
        (day + 3 * h, day + 9 * h),  # in one day, less than half
        (day + 5 * h, day + 44 * h),  # two partial days, no whole one
        (day - 22 * h, day + 47 * h),  # long partial days around a whole one
        (day + 3 * h + 10 * m, day + 9 * h + 50 * m),  # long pieces of hours at both edges
        (day + 3 * h + 40 * m, day + 9 * h + 20 * m),  # short pieces of hours at both edges
        (day + 3 * h + 10 * m, day + 3 * h + 50 * m),  # inside one hour, most of it
        (day + 3 * h + 10 * m, day + 3 * h + 20 * m),  # inside one hour, a little of it
        (day - 10 * m, day + 50 * m),  # across midnight, inside two hours
    ]
    return out


def _plain(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(int(v) if isinstance(v, Decimal) else v for v in r) for r in rows]


@contextlib.asynccontextmanager
async def _sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database_url, pool_size=1)
    try:
        yield make_sessions(engine)
    finally:
        await engine.dispose()


async def _settlements_agree(session: AsyncSession, rng: random.Random, ns: str) -> int:
    """Compare every subject's settlement over random ranges with the reference; returns how
    many were not empty."""
    finance = FinanceRepository(session)
    subjects = [("store_id", f"{ns}s{i}") for i in range(2)]
    subjects += [("affiliate_id", f"{ns}a{i}") for i in range(3)]
    settled = 0
    for who, value in subjects:
        for start, end in _ranges(rng):
            want = await session.execute(
                text(REFERENCE_SETTLEMENT.format(who=who)),
                {"who": value, "start": start, "end": end},
            )
            got = await finance.settlement_totals(
                store_id=value if who == "store_id" else None,
                affiliate_id=value if who == "affiliate_id" else None,
                start=start,
                end=end,
            )
            assert _plain(got) == _plain(list(want)), (who, value, start, end)
            settled += bool(got)
    return settled


async def _statements_agree(session: AsyncSession, ns: str) -> None:
    finance = FinanceRepository(session)
    for store in (f"{ns}s0", f"{ns}s1"):
        for first in range(DAYS + 1):
            for last in range(first + 1, DAYS + 2):
                start, end = DAY0 + timedelta(days=first), DAY0 + timedelta(days=last)
                want = await session.execute(
                    text(REFERENCE_STATEMENT),
                    {"account": store_account(store), "start": start, "end": end},
                )
                got = await finance.store_postings_by_kind(store, start.date(), end.date())
                assert sorted(got) == sorted(_plain(list(want))), (store, start, end)


@pytest.mark.integration
class TestRollupEqualsTheScan:
    @pytest.mark.parametrize("seed", range(6))
    async def test_settlement_from_the_rollup_equals_the_order_scan(
        self, database_url: str, seed: int
    ) -> None:
        rng, ns = random.Random(seed), f"r{uuid.uuid4().hex[:6]}"
        async with _sessions(database_url) as sessions:
            async with sessions() as session, session.begin():
                await _history(session, rng, ns)
            async with sessions() as session, session.begin():
                assert await _settlements_agree(session, rng, ns) > 0  # something settles
                assert (await verify(session)).rollups_stale == []

    @pytest.mark.parametrize("seed", range(4))
    async def test_statement_from_the_rollup_equals_the_posting_scan(
        self, database_url: str, seed: int
    ) -> None:
        rng, ns = random.Random(100 + seed), f"r{uuid.uuid4().hex[:6]}"
        async with _sessions(database_url) as sessions:
            async with sessions() as session, session.begin():
                await _postings(session, rng, ns)
            async with sessions() as session, session.begin():
                await _statements_agree(session, ns)
                assert (await verify(session)).rollups_stale == []


#: per rollup: its rows and its sums over the keys of a namespace
SUMS = {
    "settlement_days": "sum(orders), sum(sales_minor), sum(commission_minor), "
    "sum(reversed_minor) FROM commission.settlement_days WHERE subject_id LIKE :ns",
    "settlement_hours": "sum(orders), sum(sales_minor), sum(commission_minor), "
    "sum(reversed_minor) FROM commission.settlement_hours WHERE subject_id LIKE :ns",
    "statement_days": "sum(postings), sum(amount_minor) FROM commission.statement_days "
    "WHERE account LIKE 'store:' || :ns",
}


async def _rollup_state(session: AsyncSession, ns: str) -> dict[str, tuple[Any, ...]]:
    """Per rollup: (rows, fresh rows, its sums) of the namespace's keys."""
    out = {}
    for table, sums in SUMS.items():
        row = await session.execute(
            text(f"SELECT count(*), count(*) FILTER (WHERE NOT folded), {sums}"),
            {"ns": f"{ns}%"},
        )
        out[table] = tuple(row.one())
    return out


@pytest.mark.integration
class TestCompaction:
    async def test_compacting_folds_rows_and_changes_no_settlement_or_statement(
        self, database_url: str
    ) -> None:
        rng, ns = random.Random(7), f"r{uuid.uuid4().hex[:6]}"
        async with _sessions(database_url) as sessions:
            for _ in range(3):  # three transactions: keys with several rows each
                async with sessions() as session, session.begin():
                    await _history(session, rng, ns)
                    await _postings(session, rng, ns)
            async with sessions() as session:
                before = await _rollup_state(session, ns)
            assert all(state[1] > 0 for state in before.values())  # fresh rows to fold
            removed = await RollupCompactor(sessions, batch=7).run_once()
            assert removed is not None
            assert removed > 0
            async with sessions() as session:
                after = await _rollup_state(session, ns)
                fresh = await LedgerRepository(session).fresh_rollup_rows()
            assert fresh == 0
            for table in SUMS:
                assert after[table][2:] == before[table][2:], table  # sums unchanged
                assert after[table][0] < before[table][0], table  # fewer rows
            async with sessions() as session, session.begin():
                assert await _settlements_agree(session, random.Random(8), ns) > 0
                await _statements_agree(session, ns)
                assert (await verify(session)).rollups_stale == []
            assert await RollupCompactor(sessions).run_once() == 0  # idempotent

    async def test_compaction_beside_writers_and_another_fold_changes_no_sum(
        self, database_url: str
    ) -> None:
        """Writers append while two replicas' compactors run, and two folds run at once
        without the lock (what the lock only saves work on): every key still sums to what
        the orders and postings sum to."""
        rng, ns = random.Random(9), f"r{uuid.uuid4().hex[:6]}"
        async with _sessions(database_url) as sessions:
            writing = True

            async def write() -> None:
                nonlocal writing
                try:
                    for _ in range(6):
                        async with sessions() as session, session.begin():
                            await _history(session, rng, ns)
                            await _postings(session, rng, ns)
                finally:
                    writing = False

            async def compact() -> None:
                compactor = RollupCompactor(sessions, batch=5)
                while writing:
                    await compactor.run_once()
                    await asyncio.sleep(0)

            async def fold_unlocked() -> None:
                while writing:
                    for rollup in ROLLUPS:
                        async with sessions() as session, session.begin():
                            await LedgerRepository(session).fold_rollup(rollup, 3)

            await asyncio.gather(write(), compact(), compact(), fold_unlocked(), fold_unlocked())
            async with sessions() as session, session.begin():
                assert (await verify(session)).rollups_stale == []
                assert await _settlements_agree(session, random.Random(10), ns) > 0
                await _statements_agree(session, ns)

    async def test_the_service_schedules_the_compaction_and_it_folds_without_an_operator(
        self, database_url: str
    ) -> None:
        rng, ns = random.Random(12), f"r{uuid.uuid4().hex[:6]}"
        settings = Settings(database_url=database_url, rollup_compact_interval_s=0.2)
        assert (
            schedule_compaction(
                settings.model_copy(update={"rollup_compact_interval_s": 0}),
                async_sessionmaker(),
                BackgroundTasks(),
            )
            is None
        )  # off
        tasks = BackgroundTasks()
        async with _sessions(database_url) as sessions:
            assert schedule_compaction(settings, sessions, tasks) is not None
            try:
                for _ in range(2):  # written while it runs, as by the consumer
                    async with sessions() as session, session.begin():
                        await _history(session, rng, ns)
                        await _postings(session, rng, ns)
                for _ in range(300):
                    async with sessions() as session:
                        state = await _rollup_state(session, ns)
                    if all(fresh == 0 for _, fresh, *_ in state.values()):
                        break
                    await asyncio.sleep(0.1)
                assert all(fresh == 0 for _, fresh, *_ in state.values()), state
            finally:
                await tasks.stop(COMPACTION)
            async with sessions() as session, session.begin():
                assert (await verify(session)).rollups_stale == []
                assert await _settlements_agree(session, random.Random(13), ns) > 0

    async def test_a_replica_finding_the_lock_held_leaves_the_round_to_its_holder(
        self, database_url: str
    ) -> None:
        rng, ns = random.Random(11), f"r{uuid.uuid4().hex[:6]}"
        async with _sessions(database_url) as sessions:
            async with sessions() as session, session.begin():
                await _history(session, rng, ns)
            async with sessions() as holder, holder.begin():
                assert await try_lock_key(holder, *LOCK)
                assert await RollupCompactor(sessions).run_once() is None
                async with sessions() as session:
                    assert (await _rollup_state(session, ns))["settlement_days"][1] > 0


@pytest.mark.integration
class TestVerifyFindsAStaleRollup:
    async def test_a_rollup_row_that_no_order_explains_fails_verify(
        self, database_url: str
    ) -> None:
        async with _sessions(database_url) as sessions, sessions() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO commission.settlement_days (subject, subject_id, currency,"
                    " day, done, orders, sales_minor, commission_minor, reversed_minor)"
                    " VALUES ('store', 'ghost', 'USD', '2026-03-01', true, 1, 100, 6, 0)"
                )
            )
            await session.execute(
                text(
                    "INSERT INTO commission.statement_days (account, currency, kind, day,"
                    " postings, amount_minor) VALUES"
                    " ('store:ghost:commission', 'USD', 'commission', '2026-03-01', 1, -6)"
                )
            )
            result = await verify(session)
            assert not result.ok
            assert len(result.rollups_stale) == 2


#: tz-aware UTC instants of a century
TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


class TestDaysOfARange:
    @given(
        TIMES,
        st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=70)),
    )
    def test_whole_days_are_the_midnight_bounded_days_inside_the_range(
        self, start: datetime, length: timedelta
    ) -> None:
        end = start + length
        lo, hi = whole_days(start, end)
        assert start <= lo <= hi <= end
        inside = [
            d
            for n in range(72)
            if start
            <= (d := datetime.combine(start.date() + timedelta(days=n), datetime.min.time(), UTC))
            and d + timedelta(days=1) <= end
        ]
        if inside:
            assert (lo, hi) == (inside[0], inside[-1] + timedelta(days=1))
        else:
            assert lo == hi == end
        assert isinstance(lo.date(), date)

    @given(
        TIMES,
        st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=5)),
        st.lists(st.integers(min_value=-86_400, max_value=6 * 86_400), max_size=40),
    )
    def test_spans_count_every_instant_of_the_range_once_and_scan_at_most_two_hours(
        self, start: datetime, length: timedelta, probes: list[int]
    ) -> None:
        end = start + length
        plan = spans(start, end)
        assert all(b - a <= HALF_HOUR and a < b for a, b, _ in plan.scans)
        assert len(plan.scans) <= 4  # at most two hours of rows, whatever the range
        assert all(a < b and a.minute == a.second == a.microsecond == 0 for a, b in plan.hours)
        assert all(b.minute == b.second == b.microsecond == 0 for _, b in plan.hours)
        assert sum(((b - a) for a, b in plan.hours), timedelta()) <= 48 * HOUR
        assert plan.first <= plan.last
        edges = [start, end, *(t for a, b, _ in plan.scans for t in (a, b))]
        edges += [t for a, b in plan.hours for t in (a, b)]
        instants = [start + timedelta(seconds=p) for p in probes] + edges
        instants += [t - timedelta(microseconds=1) for t in edges]
        for t in instants:
            counted = int(plan.first <= t.date() < plan.last)
            counted += sum(1 for a, b in plan.hours if a <= t < b)
            counted += sum(sign for a, b, sign in plan.scans if a <= t < b)
            assert counted == int(start <= t < end), t


@pytest.mark.integration
class TestBackfill:
    async def test_the_migration_sums_the_orders_and_postings_stored_before_it(
        self, stack_settings: Settings
    ) -> None:
        stack = orchestrate.Stack.from_settings(stack_settings)
        name = f"t_backfill_{uuid.uuid4().hex[:10]}"
        await postgres.create_database(stack.postgres, name)
        url = stack.database_url(name)
        try:
            await asyncio.to_thread(upgrade, url, "8d2f4a6b1c93")  # the revision before
            async with _sessions(url) as sessions:
                async with sessions() as session, session.begin():
                    await session.execute(text(BEFORE_ORDERS))
                    await session.execute(text(BEFORE_POSTINGS))
                await asyncio.to_thread(upgrade, url)
                async with sessions() as session, session.begin():
                    count = "SELECT count(*) FROM commission.{}"
                    assert (await session.execute(text(count.format("settlement_days")))).scalar()
                    assert (await session.execute(text(count.format("statement_days")))).scalar()
                    assert await LedgerRepository(session).stale_rollups() == []
        finally:
            await postgres.drop_database(stack.postgres, name)


#: orders of two stores before the rollups existed: completed, placed, cancelled, not
#: chargeable, over several days
BEFORE_ORDERS = """
INSERT INTO commission.orders (store_id, order_id, currency, placed_at, status, status_at,
    affiliate_id, chargeable, sales_minor, commission_minor, reversed_minor)
SELECT 's' || (g % 2), 'o' || g, CASE WHEN g % 5 = 0 THEN 'EUR' ELSE 'USD' END,
    TIMESTAMPTZ '2026-03-01 00:00Z' + g * INTERVAL '7 hours',
    (ARRAY['completed', 'placed', 'cancelled'])[1 + g % 3],
    CASE WHEN g % 3 <> 1 THEN TIMESTAMPTZ '2026-03-02 00:00Z' + g * INTERVAL '5 hours' END,
    'a' || (g % 3), g % 7 <> 0, 1000 + g, 60 + g, g % 4
FROM generate_series(1, 60) AS g
"""
#: a commission per order, on its store's and its affiliate's accounts
BEFORE_POSTINGS = """
WITH t AS (
    INSERT INTO commission.ledger_transactions (key, kind, order_id, store_id, affiliate_id,
        currency, occurred_at)
    SELECT 'commission:' || store_id || ':' || order_id, 'commission', order_id, store_id,
        affiliate_id, currency, status_at
    FROM commission.orders WHERE status = 'completed'
    RETURNING id, store_id, affiliate_id, currency
)
INSERT INTO commission.ledger_postings (txn_id, account, currency, amount_minor)
SELECT id, side.account, currency, side.amount
FROM t CROSS JOIN LATERAL (VALUES ('store:' || store_id || ':' || 'commission', -60),
                                  ('affiliate:' || affiliate_id || ':' || 'earned', 60))
    AS side(account, amount)
"""
