"""The commission service: program settings, the ledger consumer and the read APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric as Family
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.admin.endpoints import router as admin_router
from services.commission.admin.service import OUTBOX, AdminService
from services.commission.audit.endpoints import router as audit_router
from services.commission.audit.service import AuditService
from services.commission.camp.endpoints import router as camp_router
from services.commission.camp.service import CURSOR_PURPOSE as CAMP_CURSORS
from services.commission.camp.service import CampService
from services.commission.channel.endpoints import router as channel_router
from services.commission.channel.refresher import ProductRefresher
from services.commission.channel.service import ChannelService
from services.commission.core.errors import ProgramError
from services.commission.core.webhooks import Limits
from services.commission.finance.endpoints import router as finance_router
from services.commission.finance.service import FinanceService
from services.commission.orders.compaction import RollupCompactor
from services.commission.orders.consumer import CONSUMER as LEDGER_CONSUMER
from services.commission.orders.endpoints import router as orders_router
from services.commission.orders.service import OrderService
from services.commission.partners.endpoints import router as partners_router
from services.commission.partners.service import PartnerService
from services.commission.privacy.endpoints import router as privacy_router
from services.commission.privacy.service import PrivacyService
from services.commission.program.endpoints import router as program_router
from services.commission.program.service import ProgramService
from services.commission.reports.consumer import CONSUMER as REPORTS_CONSUMER
from services.commission.reports.endpoints import router as reports_router
from services.commission.reports.service import ReportService, TrafficService
from services.commission.webhooks.endpoints import router as webhooks_router
from services.commission.webhooks.service import WebhookService
from services.commission.webhooks.worker import DeliveryWorker
from shared import tracing
from shared.clock import Clock, SystemClock
from shared.config import Settings, get_settings
from shared.db import make_engine, make_sessions
from shared.docs import service_app
from shared.http import health_router, install_error_handlers, standard_checks
from shared.kafka import make_producer, service_pipeline
from shared.limits import install_limits
from shared.metrics import COMMITTED, LEDGER_POSTINGS, Metric, ServiceMetrics
from shared.outbox import service_relay
from shared.periodic import Periodic
from shared.privacy_store import AddressMinimisation
from shared.retention_store import RetentionJob
from shared.sealed import Sealer
from shared.service_runtime import BackgroundTasks, install_private_metrics, metrics_router
from shared.visitors import VisitorCookies

STATIC = Path(__file__).parent / "static"
#: the dashboard page's Content-Security-Policy: only this origin's files, never framed
DASHBOARD_CSP = "default-src 'self'; frame-ancestors 'none'"
#: orders announced per transaction by the lock announcer (commission.locked)
LOCK_BATCH = 1000


@dataclass(frozen=True)
class Modules:
    """The services of the modules, built once per app and shared by its routes and tasks."""

    programs: ProgramService
    admin: AdminService
    orders: OrderService
    finance: FinanceService
    reports: ReportService
    channel: ChannelService
    refresher: ProductRefresher
    webhooks: WebhookService
    webhook_worker: DeliveryWorker
    camp: CampService
    audit: AuditService
    privacy: PrivacyService
    partners: PartnerService

    @classmethod
    def wire(
        cls,
        settings: Settings,
        clock: Clock,
        sessions: async_sessionmaker[AsyncSession],
        api_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> Modules:
        """``sessions`` for the background work, ``api_sessions`` (bounded by the statement
        timeout) for what answers a request: the CSV exports read in sessions of their own."""
        api = api_sessions or sessions
        channel = ChannelService()
        programs = ProgramService(clock, settings.attribution_window_days, channel)
        admin = AdminService(
            settings.secret_key,
            settings.topic_prefix,
            clock,
            programs,
            timedelta(seconds=settings.secret_rotation_grace_s),
        )
        programs.directory = admin  # a change of membership or window reaches the tracker
        private = settings.webhooks_may_target_private
        webhooks = WebhookService(settings.secret_key, clock, allow_private=private)
        orders = OrderService(clock, settings.exit_policy, programs, webhooks=webhooks)
        return cls(
            programs=programs,
            admin=admin,
            orders=orders,
            finance=FinanceService(
                clock,
                orders,
                api,
                webhooks=webhooks,
                requires_lock=settings.payout_requires_lock,
            ),
            reports=ReportService(clock, orders, programs, api),
            channel=channel,
            refresher=ProductRefresher(
                sessions, clock, settings.product_refresh_interval_s, programs
            ),
            webhooks=webhooks,
            webhook_worker=DeliveryWorker(
                sessions,
                webhooks,
                clock=clock,
                allow_private=private,
                timeout_s=settings.webhook_timeout_s,
                interval_s=settings.webhook_interval_s,
                limits=Limits(
                    slots=settings.webhook_slots,
                    per_endpoint=settings.webhook_endpoint_concurrency,
                    per_owner=settings.webhook_owner_share,
                ),
                lease_s=settings.webhook_lease_s,
            ),
            camp=CampService(
                clock,
                VisitorCookies(settings.secret_key),
                Sealer(settings.secret_key, CAMP_CURSORS),
            ),
            audit=AuditService(clock, sessions),
            privacy=PrivacyService(settings.secret_key, settings.topic_prefix, clock),
            partners=PartnerService(programs, clock, admin),
        )


#: the background task of the rollups' compaction
COMPACTION = "rollup-compaction"


def schedule_compaction(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tasks: BackgroundTasks
) -> Periodic | None:
    """Fold the settlement and statement rollups' fresh rows every
    ``ALLIANCE_ROLLUP_COMPACT_INTERVAL_S`` as task :data:`COMPACTION` (none when 0): what keeps
    settlements and statements reading about a row per key without an operator. One replica
    at a time, safe beside the consumers (``orders/compaction.py``)."""
    if settings.rollup_compact_interval_s <= 0:
        return None
    compactor = RollupCompactor(sessions)
    compaction = Periodic(
        COMPACTION,
        lambda: compactor.run_once(lambda: compaction.stopping),
        interval_s=settings.rollup_compact_interval_s,
    )
    return tasks.start_periodic(compaction)


async def start_consumers(
    app: FastAPI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    modules: Modules,
    tasks: BackgroundTasks,
) -> Callable[[], Awaitable[None]]:
    """Start the ledger and reports consumers and the product refresher, supervised; returns
    what stops them (the batch in hand is finished and committed first)."""
    pipeline = service_pipeline(
        settings,
        LEDGER_CONSUMER,
        sessions=sessions,
        # an erased visitor's later decisions and placements: pseudonymised (docs/privacy.md)
        handle=modules.privacy.erased_visitors.before(modules.orders.handle_batch),
        producer=producer,
    )
    await pipeline.start()
    app.state.pipeline = pipeline
    tasks.start("consumer", pipeline.run, health=pipeline.halted)
    traffic = TrafficService(
        settings.attribution_window_days, modules.programs, settings.click_cap_per_day
    )
    reports = service_pipeline(
        settings,
        REPORTS_CONSUMER,
        sessions=sessions,
        # an erased visitor's later clicks and page views: dropped (docs/privacy.md)
        handle=modules.privacy.erased_visitors.before(traffic.handle_batch),
        producer=producer,
    )
    await reports.start()
    app.state.reports_pipeline = reports
    tasks.start("reports-consumer", reports.run, health=reports.halted)
    # what is stored stays valid across a restart: no re-ranking of every store at start
    refresher = modules.refresher
    tasks.every(
        "product-refresh", refresher.run_once, interval_s=refresher.interval_s, at_start=False
    )
    # orders past their locking date: a commission.locked event each, once
    orders = modules.orders

    async def announce_locks() -> int:
        total = 0
        while True:
            async with sessions() as session, session.begin():
                n = await orders.announce_locks(session, LOCK_BATCH)
            total += n
            if n < LOCK_BATCH:
                return total

    tasks.every("commission-locks", announce_locks, interval_s=settings.lock_sweep_interval_s)
    # the camp's visitor interests past its 90 days of history: forgotten hourly (bounded)
    clock = modules.camp.clock
    tasks.every(
        "camp-interests-forget",
        lambda: traffic.forget_interests(sessions, clock.now()),
        interval_s=3600,
    )
    # the closed days' traffic rows and sketches, one per partition, folded into one (hourly)
    tasks.every("traffic-fold", lambda: traffic.fold_shards(sessions, clock.now()), interval_s=3600)

    schedule_compaction(settings, sessions, tasks)

    # clients' addresses at rest cut once click quality no longer needs them (docs/privacy.md)
    if settings.privacy_minimise_interval_s > 0:
        tasks.start_periodic(
            AddressMinimisation(
                sessions,
                "commission",
                clock,
                timedelta(hours=settings.privacy_full_address_hours),
                settings.privacy_minimise_interval_s,
            ).periodic
        )

    # day partitions created ahead and dropped past their retention, idempotency records and
    # finished webhook deliveries expired (docs/retention.md); one replica at a time; by the
    # wall clock: it keeps the disk, whatever time a replay's clock says it is
    if settings.retention_interval_s > 0:
        tasks.start_periodic(
            RetentionJob(
                sessions, ("commission",), settings, SystemClock(), settings.retention_interval_s
            ).periodic
        )

    async def stop() -> None:
        await tasks.stop("retention")
        await tasks.stop("traffic-fold")
        await tasks.stop(COMPACTION)
        await tasks.stop("address-minimisation")
        await tasks.stop("commission-locks")
        await tasks.stop("camp-interests-forget")
        await tasks.stop("product-refresh")
        await tasks.stop("reports-consumer", reports.stop)
        await tasks.stop("consumer", pipeline.stop)

    return stop


def commission_families(worker: DeliveryWorker) -> Iterator[Family]:
    """The commission's own metrics: webhook attempts per outcome and their durations, the
    ledger postings this process committed."""
    yield from worker.outcomes.collect()
    yield from worker.attempt_seconds.collect()
    postings = CounterMetricFamily(Metric.LEDGER_POSTINGS, "Ledger postings committed")
    postings.add_metric([], COMMITTED[LEDGER_POSTINGS])
    yield postings


def mount_dashboard(app: FastAPI) -> None:
    """The seller dashboard: a static page over the report APIs (sign in with the key)."""

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page() -> FileResponse:
        """Its scripts and styles are files of this origin: the policy forbids inline script,
        other origins and framing (clickjacking), so an injected string cannot run."""
        return FileResponse(
            STATIC / "dashboard.html",
            media_type="text/html",
            headers={"Content-Security-Policy": DASHBOARD_CSP},
        )

    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")


def create_app(
    settings: Settings | None = None, clock: Clock | None = None, *, consume: bool = True
) -> FastAPI:
    settings = settings or get_settings()
    settings.check_production()  # before anything connects: no service on dev secrets
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)  # the consumers', relay's and workers' (no time limit)
    # every statement of an API request is cancelled past the statement timeout (503)
    api_sessions = make_sessions(engine, settings.statement_timeout_s)
    tasks = BackgroundTasks()
    modules = Modules.wire(settings, clock or SystemClock(), sessions, api_sessions)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = make_producer(settings.kafka, client_id="alliance-commission")
        await producer.start()
        app.state.producer = producer
        relay = service_relay(settings, sessions, producer, OUTBOX, "commission")
        app.state.relay = relay
        # supervised: a task that dies is started again (a consumer from its stored offsets)
        tasks.start("outbox-relay", relay.run)
        # postbacks and webhooks: deliveries claimed with SKIP LOCKED (workers may be many)
        worker = modules.webhook_worker
        app.state.webhook_worker = worker
        if settings.webhook_delivery:
            tasks.start("webhook-delivery", worker.run)
        stop_consumers = None
        if consume:
            stop_consumers = await start_consumers(
                app, settings, sessions, producer, modules, tasks
            )
        try:
            yield
        finally:
            if stop_consumers is not None:
                await stop_consumers()
            await tasks.stop("webhook-delivery", worker.stop)
            await worker.close()
            await tasks.stop("outbox-relay", relay.stop)
            await producer.stop()
            await engine.dispose()

    app = service_app("Alliance commission", lifespan)  # /docs from local assets, no CDN
    app.state.sessions = api_sessions
    app.state.settings = settings
    app.state.products = modules.refresher
    for name in (
        "admin",
        "programs",
        "orders",
        "channel",
        "finance",
        "reports",
        "webhooks",
        "camp",
        "audit",
        "privacy",
        "partners",
    ):
        setattr(app.state, name, getattr(modules, name))
    install_error_handlers(app, ProgramError)
    install_private_metrics(app, settings)  # /metrics on its own port, never public
    tracing.instrument(app, "commission")  # a span per request when traces are on
    install_limits(app, settings)  # outermost: a refused request costs nothing else

    app.include_router(health_router({**standard_checks(app, engine), "workers": tasks.check}))
    prometheus: ServiceMetrics = app.state.prometheus
    prometheus.add(lambda: commission_families(modules.webhook_worker))
    app.include_router(
        metrics_router(
            lambda: [
                getattr(app.state, name)
                for name in ("pipeline", "reports_pipeline")
                if hasattr(app.state, name)
            ],
            lambda: [app.state.relay] if hasattr(app.state, "relay") else [],
            tasks,
            prometheus,
        )
    )
    for module in (
        admin_router,
        program_router,
        orders_router,
        finance_router,
        reports_router,
        channel_router,
        webhooks_router,
        camp_router,
        audit_router,
        privacy_router,
        partners_router,
    ):
        app.include_router(module)
    mount_dashboard(app)
    return app
