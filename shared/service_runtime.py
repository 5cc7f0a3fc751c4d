"""Running a consumer inside a service's lifespan: start, watch, stop gracefully."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class BackgroundTasks:
    """Named long-running coroutines of a service. A task that dies takes readiness with it."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, coro: Awaitable[None]) -> None:
        async def _run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s died", name)
                raise

        self.tasks[name] = asyncio.create_task(_run(), name=name)

    async def check(self) -> None:
        """Raises if any task has ended (readiness check)."""
        for name, task in self.tasks.items():
            if task.done():
                raise RuntimeError(f"{name} is not running")

    async def stop(self, name: str, stopper: Callable[[], None], grace_s: float = 30.0) -> None:
        """Ask task ``name`` to stop, wait for it to finish its work, cancel it past ``grace_s``."""
        task = self.tasks.get(name)
        stopper()
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            log.error("%s did not stop within %.0fs; cancelling", name, grace_s)
            task.cancel()
        elif not task.cancelled() and task.exception() is not None:
            log.error("%s had ended with %r", name, task.exception())
