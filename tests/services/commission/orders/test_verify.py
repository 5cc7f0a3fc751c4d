"""`alliance ledger verify` on the real database: clean after a scenario, loud when broken."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import insert

from services.commission import models as m
from services.commission.orders.verify import verify
from shared.config import Settings
from shared.db import make_engine, make_sessions
from tests.integration import test_scenarios_services as scenarios
from tests.scenarios import load, scenario_files

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[4]


async def replayed_refunds(settings: Settings) -> set[str]:
    """The worked example of cancellations, refunds and claw-backs replayed through the
    services (its figures checked on the way): its order ids."""
    path = next(p for p in scenario_files() if p.stem == "06-cancel-and-refunds")
    await scenarios.test_each_worked_example_matches_to_the_cent_through_the_services(
        settings, path
    )
    return {e["order_id"] for e in load(path)["events"] if "order_id" in e}


async def test_verify_passes_after_refunds_and_claw_backs_and_catches_a_broken_transaction(
    settings: Settings,
) -> None:
    orders = await replayed_refunds(settings)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            clean = await verify(session)
            assert clean.ok, clean
            assert clean.orders_checked == len(orders)
            txn = await session.execute(
                insert(m.ledger_transactions)
                .values(
                    key=f"broken-{uuid.uuid4().hex}",
                    kind="commission",
                    currency="USD",
                    occurred_at=sa_now(),
                )
                .returning(m.ledger_transactions.c.id)
            )
            txn_id = txn.scalar_one()
            await session.execute(
                insert(m.ledger_postings).values(
                    txn_id=txn_id, account="affiliate:x:earned", currency="USD", amount_minor=5
                )
            )
            broken = await verify(session)
            assert broken.transactions_unbalanced == [txn_id]
            assert broken.currencies_unbalanced == {"USD": 5}
            await session.rollback()
    finally:
        await engine.dispose()


def sa_now() -> object:
    from sqlalchemy import func

    return func.now()


async def test_the_verify_command_says_ok_and_exits_0_on_a_clean_ledger(
    settings: Settings,
) -> None:
    await replayed_refunds(settings)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "deploy.cli", "ledger", "verify"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"ALLIANCE_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ledger OK" in result.stdout


async def test_a_stale_settlement_summary_is_caught_and_summarise_restores_it(
    settings: Settings,
) -> None:
    from sqlalchemy import select, update

    from services.commission.orders.service import OrderService
    from shared.clock import SystemClock

    await replayed_refunds(settings)
    engine = make_engine(settings.database_url, pool_size=1)
    o = m.orders
    try:
        async with make_sessions(engine)() as session, session.begin():
            store_id, order_id, kept = (
                await session.execute(
                    select(o.c.store_id, o.c.order_id, o.c.commission_minor)
                    .where(o.c.chargeable.is_(True))
                    .order_by(o.c.order_id.desc())
                    .limit(1)
                )
            ).one()
            await session.execute(
                update(o)
                .where(o.c.store_id == store_id, o.c.order_id == order_id)
                .values(commission_minor=kept + 1)
            )
            assert (await verify(session)).summaries_stale == [(store_id, order_id)]
            await session.execute(
                update(o)
                .where(o.c.store_id == store_id, o.c.order_id == order_id)
                .values(chargeable=None, commission_minor=None)
            )
            service = OrderService(SystemClock())
            assert await service.summarise(session) == 1
            assert await service.summarise(session) == 0
            restored = await session.scalar(
                select(o.c.commission_minor).where(
                    o.c.store_id == store_id, o.c.order_id == order_id
                )
            )
            assert restored == kept
            assert (await verify(session)).ok
    finally:
        await engine.dispose()
