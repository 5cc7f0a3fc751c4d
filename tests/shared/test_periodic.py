"""The one runner of periodic work: a step every interval, sooner when poked, failures logged
(warning when transient, error otherwise) and retried after a doubling pause, a clean stop
that lets the step under way finish (and runs a last one when asked)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import pytest

from shared.periodic import Periodic, wait_or
from shared.service_runtime import BackgroundTasks


class Steps:
    """A step that records when it ran, raises what ``failures`` holds first, and may wait
    on a ``gate`` (to hold a step under way)."""

    def __init__(self, failures: Sequence[Exception] = ()) -> None:
        self.failures = list(failures)
        self.at: list[float] = []
        self.finished = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self) -> None:
        self.at.append(time.monotonic())
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.finished += 1

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.at, self.at[1:], strict=False)]


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.005)


async def stopped(periodic: Periodic, task: asyncio.Task[None]) -> None:
    periodic.stop()
    await asyncio.wait_for(task, 5)


class TestInterval:
    async def test_the_first_step_runs_at_once_then_one_every_interval(self) -> None:
        steps = Steps()
        periodic = Periodic("work", steps, interval_s=0.05)
        began = time.monotonic()
        task = asyncio.create_task(periodic.run())
        await until(lambda: len(steps.at) >= 4)
        await stopped(periodic, task)
        assert steps.at[0] - began < 0.05
        assert all(gap >= 0.045 for gap in steps.gaps)  # never sooner than the interval

    async def test_not_at_start_waits_one_interval_before_the_first_step(self) -> None:
        steps = Steps()
        periodic = Periodic("work", steps, interval_s=0.2, at_start=False)
        began = time.monotonic()
        task = asyncio.create_task(periodic.run())
        await until(lambda: len(steps.at) >= 1)
        await stopped(periodic, task)
        assert steps.at[0] - began >= 0.19

    async def test_stopped_within_the_first_interval_it_never_runs_the_step(self) -> None:
        steps = Steps()
        periodic = Periodic("work", steps, interval_s=30, at_start=False)
        task = asyncio.create_task(periodic.run())
        await asyncio.sleep(0.02)
        await stopped(periodic, task)
        assert steps.at == []


class TestPoke:
    async def test_a_poke_runs_the_step_without_waiting_for_the_interval(self) -> None:
        steps = Steps()
        periodic = Periodic("work", steps, interval_s=30)
        task = asyncio.create_task(periodic.run())
        await until(lambda: steps.finished == 1)
        periodic.poke()
        await until(lambda: steps.finished == 2, within_s=2)  # the interval is 30 s
        await stopped(periodic, task)

    async def test_a_poke_during_a_step_runs_the_next_one_right_after(self) -> None:
        steps = Steps()
        steps.gate = gate = asyncio.Event()
        periodic = Periodic("work", steps, interval_s=30)
        task = asyncio.create_task(periodic.run())
        await asyncio.wait_for(steps.entered.wait(), 5)
        periodic.poke()  # e.g. a commit after the step read what there was
        steps.gate = None
        gate.set()
        await until(lambda: steps.finished == 2, within_s=2)
        await stopped(periodic, task)

    async def test_pokes_before_a_step_make_one_step_not_many(self) -> None:
        steps = Steps()
        periodic = Periodic("work", steps, interval_s=30, at_start=False)
        task = asyncio.create_task(periodic.run())
        for _ in range(5):
            periodic.poke()
        await until(lambda: steps.finished == 1)
        await asyncio.sleep(0.05)
        assert steps.finished == 1
        await stopped(periodic, task)


class TestFailure:
    async def test_a_transient_failure_is_a_warning_and_retried_after_a_doubling_pause(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        lost = [ConnectionRefusedError(111, "Connect call failed") for _ in range(3)]
        steps = Steps(failures=lost)
        periodic = Periodic("work", steps, interval_s=30, retry_first_s=0.05, retry_cap_s=0.1)
        task = asyncio.create_task(periodic.run())
        await until(lambda: steps.finished == 1)  # the interval is 30 s: only retries get here
        await stopped(periodic, task)
        gaps = steps.gaps
        assert gaps[0] >= 0.045  # first
        assert gaps[1] >= 0.095  # doubled
        assert gaps[2] >= 0.095  # capped
        assert gaps[2] < 1.0
        assert (periodic.failures, periodic.steps) == (3, 1)
        failed = [r for r in caplog.records if r.name == "shared.periodic"]
        assert [r.levelno for r in failed] == [logging.WARNING] * 3
        assert failed[0].getMessage() == (
            "work failed (ConnectionRefusedError: [Errno 111] Connect call failed); "
            "trying again in 0.1s"
        )

    @pytest.mark.allow_logged_errors  # the failure is logged with its traceback
    async def test_any_other_failure_is_an_error_with_its_traceback_and_retried_too(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        steps = Steps(failures=[ValueError("a bug")])
        periodic = Periodic("work", steps, interval_s=30, retry_first_s=0.01)
        task = asyncio.create_task(periodic.run())
        await until(lambda: steps.finished == 1)
        await stopped(periodic, task)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert [r.getMessage() for r in errors] == ["work failed; trying again in 0.0s"]
        assert errors[0].exc_info is not None

    async def test_a_success_sets_the_pause_back_to_the_first(self) -> None:
        steps = Steps(failures=[TimeoutError(), TimeoutError()])
        periodic = Periodic("work", steps, interval_s=30, retry_first_s=0.05, retry_cap_s=1)
        task = asyncio.create_task(periodic.run())
        await until(lambda: steps.finished == 1)
        assert periodic.backoff.next() == 0.05  # reset by the success
        await stopped(periodic, task)

    async def test_without_retry_settings_a_failed_step_is_tried_again_next_interval(
        self,
    ) -> None:
        steps = Steps(failures=[OSError("disk full")])
        periodic = Periodic("work", steps, interval_s=0.1)
        task = asyncio.create_task(periodic.run())
        await until(lambda: steps.finished == 1)
        await stopped(periodic, task)
        assert steps.gaps[0] >= 0.095

    async def test_a_poke_cuts_a_failure_s_pause_short(self) -> None:
        steps = Steps(failures=[TimeoutError()])
        periodic = Periodic("work", steps, interval_s=30)  # the retry pause is 30 s too
        task = asyncio.create_task(periodic.run())
        await until(lambda: periodic.failures == 1)
        periodic.poke()
        await until(lambda: steps.finished == 1, within_s=2)
        await stopped(periodic, task)


class TestStop:
    async def test_stop_lets_the_step_under_way_finish_then_run_returns(self) -> None:
        steps = Steps()
        steps.gate = gate = asyncio.Event()
        periodic = Periodic("work", steps, interval_s=30)
        task = asyncio.create_task(periodic.run())
        await asyncio.wait_for(steps.entered.wait(), 5)
        periodic.stop()
        assert periodic.stopping
        await asyncio.sleep(0.02)
        assert not task.done()  # the step is not cancelled
        gate.set()
        await asyncio.wait_for(task, 5)
        assert (steps.finished, len(steps.at)) == (1, 1)

    async def test_stop_ends_the_wait_for_the_next_interval_at_once(self) -> None:
        steps = Steps()
        periodic = Periodic("work", steps, interval_s=30)
        task = asyncio.create_task(periodic.run())
        await until(lambda: steps.finished == 1)
        began = time.monotonic()
        await stopped(periodic, task)
        assert time.monotonic() - began < 1

    async def test_final_runs_one_last_step_after_stop(self) -> None:
        steps = Steps()
        periodic = Periodic("work", steps, interval_s=30, final=True)
        task = asyncio.create_task(periodic.run())
        await until(lambda: steps.finished == 1)
        await stopped(periodic, task)
        assert steps.finished == 2

    async def test_a_failed_last_step_is_a_warning_and_run_still_returns(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        steps = Steps()
        periodic = Periodic("work", steps, interval_s=30, final=True)
        task = asyncio.create_task(periodic.run())
        await until(lambda: steps.finished == 1)
        steps.failures.append(RuntimeError("the broker went away"))
        await stopped(periodic, task)
        assert "work: the last run before stopping failed" in caplog.text

    async def test_run_never_raises_what_the_step_raised(self) -> None:
        steps = Steps(failures=[ConnectionResetError()] * 3)
        periodic = Periodic("work", steps, interval_s=30, retry_first_s=0.01)
        task = asyncio.create_task(periodic.run())
        await until(lambda: steps.finished == 1)
        await stopped(periodic, task)
        assert task.exception() is None


class TestSupervised:
    async def test_every_runs_a_step_as_a_named_task_that_stop_stops(self) -> None:
        tasks = BackgroundTasks()
        steps = Steps()
        periodic = tasks.every("refresh", steps, interval_s=30)
        await until(lambda: steps.finished == 1)
        periodic.poke()
        await until(lambda: steps.finished == 2)
        await tasks.check()  # running: ready
        await tasks.stop("refresh", grace_s=5)
        assert tasks.tasks["refresh"].task.done()
        assert periodic.stopping

    async def test_stop_with_its_own_stopper_overrides_the_registered_one(self) -> None:
        tasks = BackgroundTasks()
        stopping = asyncio.Event()
        called: list[str] = []

        def stop() -> None:
            called.append("given")
            stopping.set()

        async def loop() -> None:
            await stopping.wait()

        tasks.start("loop", loop, stop=lambda: called.append("registered"))
        await tasks.stop("loop", stop, grace_s=5)
        assert called == ["given"]


class TestWaitOr:
    async def test_returns_as_soon_as_the_event_is_set(self) -> None:
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(0.02, event.set)
        began = time.monotonic()
        assert await wait_or(event, 30) is True
        assert time.monotonic() - began < 1

    async def test_returns_false_after_the_time_without_raising(self) -> None:
        assert await wait_or(asyncio.Event(), 0.01) is False
        assert await wait_or(asyncio.Event(), -1) is False
