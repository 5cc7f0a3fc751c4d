"""The commission service: program settings, the ledger consumer and the read APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from services.commission.channel import router as channel_router
from services.commission.consumer import make_pipeline
from services.commission.core import ProgramError
from services.commission.endpoints import router
from services.commission.principals import OUTBOX, AdminService
from services.commission.products import ProductRefresher
from services.commission.report_endpoints import router as reports_router
from services.commission.service import CommissionService
from services.commission.traffic import TrafficService
from services.commission.traffic import make_pipeline as make_reports_pipeline
from shared.clock import Clock, SystemClock
from shared.config import Settings, get_settings
from shared.db import make_engine, make_sessions
from shared.docs import service_app
from shared.http import health_router, install_error_handlers, standard_checks
from shared.kafka import make_producer
from shared.outbox import service_relay
from shared.service_runtime import BackgroundTasks, metrics_router

STATIC = Path(__file__).parent / "static"
#: the dashboard page's Content-Security-Policy: only this origin's files, never framed
DASHBOARD_CSP = "default-src 'self'; frame-ancestors 'none'"


def create_app(
    settings: Settings | None = None, clock: Clock | None = None, *, consume: bool = True
) -> FastAPI:
    settings = settings or get_settings()
    settings.check_production()  # before anything connects: no service on dev secrets
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    tasks = BackgroundTasks()
    service = CommissionService(clock or SystemClock(), settings.exit_policy)
    refresher = ProductRefresher(sessions, service.clock, settings.product_refresh_interval_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = make_producer(settings.kafka_bootstrap, client_id="alliance-commission")
        await producer.start()
        app.state.producer = producer
        relay = service_relay(settings, sessions, producer, OUTBOX, "commission")
        app.state.relay = relay
        # supervised: a task that dies is started again (a consumer from its stored offsets)
        tasks.start("outbox-relay", relay.run)
        pipeline = reports = None
        if consume:
            pipeline = make_pipeline(settings, sessions, producer, service)
            await pipeline.start()
            app.state.pipeline = pipeline
            tasks.start("consumer", pipeline.run, health=pipeline.halted)
            traffic = TrafficService(settings.attribution_window_days)
            reports = make_reports_pipeline(settings, sessions, producer, traffic)
            await reports.start()
            app.state.reports_pipeline = reports
            tasks.start("reports-consumer", reports.run, health=reports.halted)
            tasks.start("product-refresh", refresher.run)
        try:
            yield
        finally:
            if reports is not None:
                await tasks.stop("product-refresh", refresher.stop)
                await tasks.stop("reports-consumer", reports.stop)
            if pipeline is not None:
                await tasks.stop("consumer", pipeline.stop)
            await tasks.stop("outbox-relay", relay.stop)
            await producer.stop()
            await engine.dispose()

    app = service_app("Alliance commission", lifespan)  # /docs from local assets, no CDN
    app.state.sessions = sessions
    app.state.service = service
    app.state.settings = settings
    app.state.products = refresher
    app.state.admin = AdminService(
        settings.secret_key, settings.topic_prefix, settings.attribution_window_days
    )
    install_error_handlers(app, ProgramError)

    app.include_router(health_router({**standard_checks(app, engine), "workers": tasks.check}))
    app.include_router(
        metrics_router(
            lambda: [
                getattr(app.state, name)
                for name in ("pipeline", "reports_pipeline")
                if hasattr(app.state, name)
            ],
            lambda: [app.state.relay] if hasattr(app.state, "relay") else [],
            tasks,
        )
    )
    app.include_router(router)
    app.include_router(reports_router)
    app.include_router(channel_router)

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page() -> FileResponse:
        """The seller dashboard (a static page over the report APIs; sign in with the key).
        Its scripts and styles are files of this origin: the policy forbids inline script,
        other origins and framing (clickjacking), so an injected string cannot run."""
        return FileResponse(
            STATIC / "dashboard.html",
            media_type="text/html",
            headers={"Content-Security-Policy": DASHBOARD_CSP},
        )

    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
    return app
