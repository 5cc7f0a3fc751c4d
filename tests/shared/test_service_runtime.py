"""A service's background work: a task that dies is started again with a pause, readiness
says so meanwhile, and one that was asked to stop stays stopped."""

from __future__ import annotations

import asyncio

import pytest

from shared.http import NotReady
from shared.service_runtime import BackgroundTasks


class Flaky:
    """Dies ``failures`` times, then runs until stopped."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        self.runs += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the consumer's task died")
        await self.stopping.wait()

    def stop(self) -> None:
        self.stopping.set()


async def reason(tasks: BackgroundTasks) -> str | None:
    try:
        await tasks.check()
    except NotReady as exc:
        return str(exc)
    return None


class TestSupervision:
    @pytest.mark.allow_logged_errors  # each death is logged with its traceback
    async def test_a_task_that_dies_is_started_again_and_readiness_says_so_meanwhile(
        self,
    ) -> None:
        tasks = BackgroundTasks(restart_first_s=0.2, restart_cap_s=0.4)
        work = Flaky(failures=2)
        tasks.start("consumer", work.run)
        await asyncio.sleep(0.05)
        assert await reason(tasks) == "consumer failed and is starting again (1 restarts)"
        for _ in range(100):
            if work.runs == 3:
                break
            await asyncio.sleep(0.05)
        assert work.runs == 3
        assert tasks.restarts("consumer") == 2
        assert await reason(tasks) is None
        await tasks.stop("consumer", work.stop, grace_s=5)
        assert tasks.tasks["consumer"].task.done()

    async def test_a_task_that_is_asked_to_stop_is_not_started_again(self) -> None:
        tasks = BackgroundTasks(restart_first_s=0.05)
        work = Flaky(failures=0)
        tasks.start("relay", work.run)
        await asyncio.sleep(0.05)
        await tasks.stop("relay", work.stop, grace_s=5)
        await asyncio.sleep(0.2)
        assert work.runs == 1
        assert await reason(tasks) == "relay is not running"

    async def test_a_task_reports_its_own_trouble_to_readiness(self) -> None:
        tasks = BackgroundTasks()
        work = Flaky(failures=0)
        halted: list[str] = []
        tasks.start("consumer", work.run, health=lambda: halted[0] if halted else None)
        await asyncio.sleep(0.05)
        assert await reason(tasks) is None
        halted.append("consumer attribution stopped orders[2] at offset 51: …")
        assert await reason(tasks) == "consumer attribution stopped orders[2] at offset 51: …"
        await tasks.stop("consumer", work.stop, grace_s=5)
