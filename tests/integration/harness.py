"""Running the three services in-process against the real stack, talking HTTP to them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx
from fastapi import FastAPI

from shared.clock import Clock
from shared.config import Settings

T = TypeVar("T")


@dataclass
class Services:
    tracker: httpx.AsyncClient
    attribution: httpx.AsyncClient
    commission: httpx.AsyncClient
    apps: dict[str, FastAPI]


@asynccontextmanager
async def running(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Services]:
    """The three apps with their lifespans (consumers included) and an HTTP client each."""
    from services.attribution.app import create_app as attribution_app
    from services.commission.app import create_app as commission_app
    from services.tracker.app import create_app as tracker_app

    apps = {
        "tracker": tracker_app(settings, clock),
        "attribution": attribution_app(settings, clock),
        "commission": commission_app(settings, clock),
    }
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.test"
                )
            )
        yield Services(clients["tracker"], clients["attribution"], clients["commission"], apps)


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 30.0) -> T:
    """Poll ``probe`` until it returns something other than None (the pipeline is async)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.1)
