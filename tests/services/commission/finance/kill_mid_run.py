"""A payout run in a process of its own that kills itself (SIGKILL: no clean-up, no
rollback of its own) in the middle of an affiliate's step, after the step's payout is
posted and before it commits: what a crash or an OOM kill does to a run.

``python -m tests.services.commission.finance.kill_mid_run DATABASE_URL KEY UP_TO
HOLDING_DAYS NOW KILL_AT_STEP``"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime, timedelta

from services.commission.finance.service import FinanceService
from shared.clock import FixedClock
from shared.db import make_engine, make_sessions


async def main(url: str, key: str, up_to: str, holding: str, now: str, kill_at: str) -> None:
    engine = make_engine(url, pool_size=2)
    steps: list[str] = []

    async def die_in_step(affiliate_id: str) -> None:
        steps.append(affiliate_id)
        print(f"step {len(steps)}: {affiliate_id}", flush=True)  # noqa: T201
        if len(steps) == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)

    finance = FinanceService(
        clock=FixedClock(datetime.fromisoformat(now)),
        sessions=make_sessions(engine),
        step_hook=die_in_step,
    )
    await finance.run_payouts(
        key,
        datetime.fromisoformat(up_to),
        None,
        timedelta(days=int(holding)),
        "finance:kill-test",
    )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
