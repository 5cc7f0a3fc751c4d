"""The tracker: the HTTP edge (links, click redirect, storefront events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from services.tracker.directory import Directory, DirectoryFeed
from services.tracker.endpoints import router
from services.tracker.fastpath import TrackerApp
from services.tracker.links import LinkSigner
from services.tracker.service import TrackerService
from services.tracker.spool import ClickSpool, run_drainer
from shared.clock import Clock, SystemClock
from shared.config import Settings, get_settings
from shared.docs import install_docs
from shared.http import health_router, install_error_handlers, standard_checks
from shared.kafka import make_producer
from shared.service_runtime import BackgroundTasks


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_production()  # before anything connects: no service on dev secrets
    signer = LinkSigner.from_config(settings.link_keys)
    clock = clock or SystemClock()
    tasks = BackgroundTasks()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = make_producer(
            settings.kafka_bootstrap, linger_ms=1, client_id="alliance-tracker"
        )
        await producer.start()
        directory = Directory()
        feed = DirectoryFeed(
            settings.kafka_bootstrap,
            settings.topic_prefix,
            directory,
            timedelta(hours=settings.dedup_horizon_hours),
        )
        await feed.start(clock.now())
        spool = ClickSpool(settings.spool_path, settings.spool_max_bytes)
        service = TrackerService(settings, signer, producer, clock, directory, spool)
        app.state.producer, app.state.tracker = producer, service
        draining = asyncio.Event()
        tasks.start("directory-feed", feed.run())
        tasks.start("spool-drainer", run_drainer(spool, service.send_spooled, draining))
        try:
            yield
        finally:
            await tasks.stop("spool-drainer", draining.set)
            await tasks.stop("directory-feed", feed.stop)
            await producer.stop()  # flushes whatever is still in flight

    app = TrackerApp(
        title="Alliance tracker",
        version="1",
        lifespan=lifespan,
        description="Affiliate links, the click redirect and signed storefront events.",
        docs_url=None,  # install_docs: Swagger UI from the package, no CDN
        redoc_url=None,
    )
    install_docs(app)
    install_error_handlers(app)
    app.include_router(health_router({**standard_checks(app), "workers": tasks.check}))
    app.include_router(router)
    return app
