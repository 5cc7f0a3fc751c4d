"""The tracker: the HTTP edge (links, click redirect, storefront events).

It starts whether or not Kafka answers: the directory and catalog come from the local
snapshot until the feed has caught up, clicks go to the spool until a producer is connected,
and storefront events are answered ``503`` with ``Retry-After`` meanwhile. ``/readyz`` says
so (``kafka``, ``directory``); ``/r/{code}`` keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric as Family

from services.tracker.directory import RETRY_S, Directory, DirectoryFeed, EventIds
from services.tracker.endpoints import SIGNED_PATHS, router
from services.tracker.errors import Unavailable
from services.tracker.fastpath import TrackerApp
from services.tracker.links import LinkSigner
from services.tracker.service import TrackerService
from services.tracker.snapshot import Snapshot, snapshot_writer
from services.tracker.spool import ClickSpool, spool_drainer
from shared import tracing
from shared.clock import Clock, SystemClock
from shared.config import Settings, get_settings
from shared.docs import install_docs
from shared.http import Check, error_body, health_router, install_error_handlers
from shared.kafka import make_producer
from shared.limits import install_limits
from shared.metrics import Metric, ServiceMetrics
from shared.periodic import Periodic, wait_or
from shared.retry import Backoff
from shared.service_runtime import (
    BackgroundTasks,
    install_private_metrics,
    scrape_router,
    task_restarts,
)

log = logging.getLogger(__name__)

#: how long start-up waits for Kafka (the first producer connection, the first catch-up of
#: the directory) before it serves from the snapshot and goes on trying in the background
STARTUP_WAIT_S = 10.0
#: one attempt to connect a producer; a refused connection fails at once
CONNECT_TIMEOUT_S = 5.0
#: how long shutdown waits for the producer to flush
STOP_FLUSH_S = 5.0


async def connect_producer(
    settings: Settings,
    stopping: asyncio.Event,
    attempted: asyncio.Event,
    ready: Callable[[AIOKafkaProducer], None],
) -> None:
    """Start a producer, retrying with backoff until Kafka answers, then hand it to ``ready``.
    ``attempted`` is set after the first attempt, whatever its outcome. Never raises for an
    unreachable broker; returns early on ``stopping``."""
    backoff = Backoff(*RETRY_S)
    while not stopping.is_set():
        producer = make_producer(settings.kafka, linger_ms=1, client_id="alliance-tracker")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await producer.start()
        except Exception as exc:  # the broker is down or unreachable
            with contextlib.suppress(Exception):
                await producer.stop()
            attempted.set()
            delay = backoff.next()
            log.warning(
                "Kafka unreachable (%s): clicks go to the spool, events are answered 503; "
                "retrying in %.1fs",
                type(exc).__name__,
                delay,
            )
            await wait_or(stopping, delay)
            continue
        ready(producer)
        attempted.set()
        return


async def stop_producer(producer: AIOKafkaProducer) -> None:
    """Flush what is in flight and close, for at most :data:`STOP_FLUSH_S`: with the broker
    down an idempotent producer would retry for ever. What it drops loses nothing: a click
    not acknowledged in time is in the spool too, an event not acknowledged was answered 503
    (or not at all) and its storefront retries it."""
    try:
        async with asyncio.timeout(STOP_FLUSH_S):
            await producer.stop()
    except TimeoutError:
        log.warning("Kafka producer not flushed within %.0fs; its sends are dropped", STOP_FLUSH_S)


def memory_sweeper(service: TrackerService, clock: Clock) -> Periodic:
    """Sweeps the tracker's memories on a timer (:meth:`TrackerService.sweep`)."""

    async def sweep() -> None:
        service.sweep(clock.now().timestamp())

    every_s = service.settings.tracker_sweep_interval_s
    return Periodic("sweeper", sweep, interval_s=every_s, at_start=False)


async def _wait_all(events: list[asyncio.Event], at_most_s: float) -> None:
    """Wait until every event is set, at most ``at_most_s`` seconds."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=at_most_s)
    finally:
        for wait in waits:
            wait.cancel()


async def unavailable(_: Request, exc: Exception) -> JSONResponse:
    """:class:`Unavailable` answered ``503`` with ``Retry-After``."""
    assert isinstance(exc, Unavailable)
    return JSONResponse(
        error_body(exc.code, exc.message, **exc.details),
        status_code=503,
        headers={"Retry-After": str(exc.details["retry_after_s"])},
    )


def readiness_checks(app: FastAPI, tasks: BackgroundTasks) -> dict[str, Check]:
    """``/readyz`` of the tracker: Kafka reached (a producer connected and answering), the
    directory caught up with the topics (not serving the snapshot), the background tasks."""

    async def kafka() -> None:
        producer = app.state.tracker.producer
        if producer is None:
            raise RuntimeError("no connection to Kafka since start (retrying)")
        await producer.client.fetch_all_metadata()

    async def directory() -> None:
        if not app.state.tracker.directory.caught_up:
            raise RuntimeError("the directory has not caught up (serving the snapshot)")

    return {"kafka": kafka, "directory": directory, "workers": tasks.check}


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_production()  # before anything connects: no service on dev secrets
    signer = LinkSigner.from_config(settings.link_keys)
    clock = clock or SystemClock()
    tasks = BackgroundTasks()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        horizon = timedelta(hours=settings.dedup_horizon_hours)
        directory = Directory(event_ids=EventIds(horizon.total_seconds(), settings.dedup_max_ids))
        snapshot = Snapshot(settings.tracker_snapshot_path)
        snapshot.load(directory)
        feed = DirectoryFeed(settings.kafka, settings.topic_prefix, directory, horizon, clock)
        spool = ClickSpool(settings.spool_path, settings.spool_max_bytes)
        service = TrackerService(settings, signer, None, clock, directory, spool)
        app.state.producer, app.state.tracker = None, service
        stopping = asyncio.Event()

        def connected(producer: AIOKafkaProducer) -> None:
            service.producer = app.state.producer = producer

        producer_attempted = asyncio.Event()
        # not one of the background tasks: it ends once connected, which is no failure
        connecting = asyncio.ensure_future(
            connect_producer(settings, stopping, producer_attempted, connected)
        )
        tasks.start("directory-feed", feed.run, stop=feed.stop)
        # Kafka answering: start once connected and caught up, as always. Kafka away: serve
        # at once from the snapshot (redirects into the spool); catch up when it is back.
        await _wait_all([producer_attempted, feed.attempted], STARTUP_WAIT_S)
        tasks.start_periodic(spool_drainer(spool, service.send_spooled))
        tasks.start_periodic(
            snapshot_writer(snapshot, directory, settings.tracker_snapshot_interval_s)
        )
        tasks.start_periodic(memory_sweeper(service, clock))
        try:
            yield
        finally:
            stopping.set()
            connecting.cancel()
            await tasks.stop("spool-drainer")
            await tasks.stop("sweeper")
            await tasks.stop("directory-feed")
            await tasks.stop("snapshot")
            if service.producer is not None:
                await stop_producer(service.producer)

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
    install_private_metrics(app, settings)  # /metrics on its own port, never public
    tracing.instrument(app, "tracker")  # a span per request when traces are on
    prometheus: ServiceMetrics = app.state.prometheus
    prometheus.add(lambda: tracker_families(getattr(app.state, "tracker", None), tasks))
    # outermost; the click redirect's fast path charges the same limiter (redirect quota)
    install_limits(app, settings, store_paths=SIGNED_PATHS, redirect_prefix="/r/")

    app.add_exception_handler(Unavailable, unavailable)
    # the directory's state is the process's own: checked on every call, like the workers
    app.include_router(health_router(readiness_checks(app, tasks), live=("directory", "workers")))
    app.include_router(router)
    app.include_router(scrape_router(prometheus))
    return app


def tracker_families(service: TrackerService | None, tasks: BackgroundTasks) -> Iterator[Family]:
    """The tracker's metrics: the spool's depth, its counters (clicks, events, what was
    spooled, refused or lost, per ``what``), its tasks' restarts (none before it starts)."""
    spool = GaugeMetricFamily(Metric.SPOOL_BYTES, "Bytes of clicks waiting in the local spool")
    limit = GaugeMetricFamily(Metric.SPOOL_LIMIT, "Bound of the click spool (full: clicks refused)")
    counters = CounterMetricFamily(Metric.TRACKER, "Counters of the tracker", labels=["what"])
    if service is not None:
        spool.add_metric([], service.spool.depth_bytes)
        limit.add_metric([], service.spool.max_bytes)
        for what, n in sorted(service.metrics.items()):
            counters.add_metric([what], n)
    yield from (spool, limit, counters)
    yield task_restarts(tasks)
