"""Work a service repeats: a named step run every interval (sooner when poked), whose failures
are logged and retried after a pause, until the service stops.

One runner for every such loop (the outbox relay, click expiry, the product refresher, the
tracker's spool drainer, snapshot writer and sweeper), so that each says only *what* it does
and *how often*. A :class:`~shared.service_runtime.BackgroundTasks` supervises it like any
other background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shared.retry import Backoff, describe, is_transient

log = logging.getLogger(__name__)

#: one turn of a periodic task; what it returns is not used
Step = Callable[[], Awaitable[object]]


async def wait_or(event: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``event`` is set meanwhile (never raises a timeout).
    Returns whether the event is set: the way every loop here sleeps, so that it can be
    stopped at once."""
    if not event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(seconds, 0.0))
    return event.is_set()


class Periodic:
    """Runs ``step`` every ``interval_s`` until :meth:`stop`; :meth:`poke` runs it sooner.

    Contract:

    - The first step runs at once, or one interval after :meth:`run` began when not
      ``at_start`` (what the last run left is still good after a restart).
    - After a step that succeeded, the next one runs ``interval_s`` later, or as soon as
      :meth:`poke` is called. A poke that arrives while a step runs is never lost: it makes
      the next step run without waiting.
    - A step that raises is logged — a warning when the failure is transient
      (:func:`~shared.retry.is_transient`: the database or the broker away), an error with
      its traceback otherwise (a bug, or data that will fail the same way) — and tried again
      after a pause that starts at ``retry_first_s`` and doubles up to ``retry_cap_s`` (both
      default to ``interval_s``: a failed step is simply tried again next time), back to the
      first after a success. A poke cuts a pause short. :meth:`run` never raises what the
      step raised.
    - :meth:`stop` lets the step under way finish (a step that needs to end early reads
      :attr:`stopping`), then :meth:`run` returns; with ``final``, after one last step
      (e.g. publish what is left), whose failure is logged as a warning.
    - :meth:`run` may be called again after it returned or was cancelled (a supervisor
      restarting it), as long as :meth:`stop` was not called.
    """

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        interval_s: float,
        at_start: bool = True,
        final: bool = False,
        retry_first_s: float | None = None,
        retry_cap_s: float | None = None,
    ) -> None:
        self.name = name
        self.step = step
        self.interval_s = interval_s
        self.at_start = at_start
        self.final = final
        first = interval_s if retry_first_s is None else retry_first_s
        self.backoff = Backoff(
            first, max(first, interval_s if retry_cap_s is None else retry_cap_s)
        )
        self.steps = 0  # steps that succeeded
        self.failures = 0  # steps that raised
        self._wake = asyncio.Event()  # poked, or stopping
        self._stopping = asyncio.Event()

    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called: a long step should return early."""
        return self._stopping.is_set()

    def poke(self) -> None:
        """Run the next step now (or right after the one under way). Never blocks."""
        self._wake.set()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the step under way (and the ``final`` one)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """The loop (see the class)."""
        if not self.at_start:
            await self._pause(self.interval_s)
        while not self._stopping.is_set():
            # Clear before the step: a poke that arrives during it (e.g. a commit after the
            # step read what there was) must wake the next round, not be wiped by a late clear.
            self._wake.clear()
            pause = self.interval_s
            try:
                await self.step()
            except Exception as exc:
                pause = self.backoff.next()
                self._failed(exc, pause)
            else:
                self.steps += 1
                self.backoff.reset()
            await self._pause(pause)
        if self.final:
            try:
                await self.step()
            except Exception:
                log.warning("%s: the last run before stopping failed", self.name, exc_info=True)

    async def _pause(self, seconds: float) -> None:
        await wait_or(self._wake, seconds)

    def _failed(self, exc: Exception, pause: float) -> None:
        self.failures += 1
        if is_transient(exc):
            log.warning(
                "%s failed (%s); trying again in %.1fs", self.name, describe(exc, 300), pause
            )
        else:
            log.exception("%s failed; trying again in %.1fs", self.name, pause)
