"""The tracker: the HTTP edge (links, click redirect, storefront events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.tracker.endpoints import router
from services.tracker.links import LinkSigner
from services.tracker.service import TrackerService
from shared.clock import Clock, SystemClock
from shared.config import Settings, get_settings
from shared.http import health_router, install_error_handlers, standard_checks
from shared.kafka import make_producer


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    signer = LinkSigner.from_config(settings.link_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = make_producer(settings.kafka_bootstrap, client_id="alliance-tracker")
        await producer.start()
        app.state.producer = producer
        app.state.tracker = TrackerService(settings, signer, producer, clock or SystemClock())
        try:
            yield
        finally:
            await producer.stop()  # flushes whatever is still in flight

    app = FastAPI(title="Alliance tracker", version="1", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health_router(standard_checks(app)))
    app.include_router(router)
    return app
