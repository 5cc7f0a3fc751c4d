"""The attribution service: the click/order join, with health endpoints over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from services.attribution.consumer import CONSUMER
from services.attribution.expiry import ClickExpiry
from services.attribution.privacy import Erasures
from services.attribution.service import OUTBOX, AttributionService
from shared import tracing
from shared.clock import Clock, SystemClock
from shared.config import Settings, get_settings
from shared.db import make_engine, make_sessions
from shared.docs import service_app
from shared.events import Topic
from shared.http import health_router, install_error_handlers, standard_checks
from shared.kafka import make_producer, service_pipeline
from shared.limits import install_limits
from shared.outbox import service_relay
from shared.privacy_store import AddressMinimisation
from shared.retention_store import RetentionJob
from shared.service_runtime import BackgroundTasks, install_private_metrics, metrics_router


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_production()  # before anything connects: no service on dev secrets
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    tasks = BackgroundTasks()
    service = AttributionService.configured(settings, clock or SystemClock())

    erasures = Erasures(settings.secret_key, service.clock)
    expiry = ClickExpiry(sessions, service, settings.click_expiry_interval_s)
    # clients' addresses at rest cut once click quality no longer needs them (docs/privacy.md)
    minimise = AddressMinimisation(
        sessions,
        "attribution",
        service.clock,
        timedelta(hours=settings.privacy_full_address_hours),
        settings.privacy_minimise_interval_s,
    )

    # the clicks' day partitions: created ahead, dropped whole past ALLIANCE_RETENTION_CLICKS_DAYS;
    # by the wall clock: it keeps the disk, whatever time a replay's clock says it is
    retention = RetentionJob(
        sessions, ("attribution",), settings, SystemClock(), settings.retention_interval_s
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = make_producer(settings.kafka, client_id="alliance-attribution")
        await producer.start()
        relay = service_relay(settings, sessions, producer, OUTBOX, "attribution")
        pipeline = service_pipeline(
            settings,
            CONSUMER,
            sessions=sessions,
            # erasures applied and erased visitors' events screened first (docs/privacy.md)
            handle=erasures.before(service.handle_batch),
            producer=producer,
            after_commit=relay.poke,  # publish the decisions as soon as they are committed
        )
        clicks_topic = settings.topic(Topic.CLICKS)
        service.click_progress = lambda: pipeline.progress(clicks_topic)
        await pipeline.start()
        app.state.producer, app.state.pipeline, app.state.relay = producer, pipeline, relay
        # supervised: a task that dies is started again (the consumer from its stored offsets)
        tasks.start("consumer", pipeline.run, health=pipeline.halted)
        tasks.start("outbox-relay", relay.run, stop=relay.stop)
        if settings.click_expiry_interval_s > 0:
            tasks.start_periodic(expiry.periodic)
        if settings.privacy_minimise_interval_s > 0:
            tasks.start_periodic(minimise.periodic)
        if settings.retention_interval_s > 0:
            tasks.start_periodic(retention.periodic)
        try:
            yield
        finally:
            # Finish the batch in hand and commit it, then publish what it decided.
            await tasks.stop("consumer", pipeline.stop)
            await tasks.stop("outbox-relay")
            await tasks.stop("click-expiry")
            await tasks.stop("address-minimisation")
            await tasks.stop("retention")
            await producer.stop()
            await engine.dispose()

    app = service_app("Alliance attribution", lifespan)  # /docs from local assets, no CDN
    app.state.service = service
    install_error_handlers(app)
    install_private_metrics(app, settings)  # /metrics on its own port, never public
    tracing.instrument(app, "attribution")  # a span per request when traces are on
    install_limits(app, settings)  # only health here: the public quota
    app.include_router(health_router({**standard_checks(app, engine), "workers": tasks.check}))
    app.include_router(
        metrics_router(
            lambda: [app.state.pipeline] if hasattr(app.state, "pipeline") else [],
            lambda: [app.state.relay] if hasattr(app.state, "relay") else [],
            tasks,
            app.state.prometheus,
        )
    )
    return app
