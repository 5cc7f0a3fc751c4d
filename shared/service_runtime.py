"""Running a service's long-lived work (consumers, relays) inside its lifespan: start, watch,
restart what dies, stop gracefully; and the metrics they expose on ``GET /metrics``
(``prometheus_client``, :mod:`shared.metrics`), served on a port of its own
(:class:`MetricsListener`), never on the public one."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric as Family
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.config import Settings
from shared.http import NotReady
from shared.metrics import (
    Metric,
    RequestDurations,
    ServiceMetrics,
    batch_histogram,
    relabelled,
)
from shared.periodic import Periodic, Step, wait_or
from shared.retry import Backoff

log = logging.getLogger(__name__)

#: what a task reports about itself beyond running: None (fine) or why it is not ready
Health = Callable[[], str | None]
#: a task that ran this long before it died starts again with the shortest pause
HEALTHY_RUN_S = 60.0


@dataclass
class _Task:
    health: Health | None
    stopper: Callable[[], None] | None  # asks the work to return (None: given to stop())
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: int = 0
    restarting: bool = False  # waiting to start again after a failure
    task: asyncio.Task[None] = field(init=False)


class BackgroundTasks:
    """Named long-running coroutine functions of a service, supervised.

    ``start(name, work)`` runs ``work()``; when it raises, it is logged and started again
    after a pause (1 s, doubling up to ``restart_cap_s``, back to 1 s after a run of
    :data:`HEALTHY_RUN_S`) until :meth:`stop`: a service never keeps answering HTTP while its
    consumer is gone for good. Periodic work (:class:`~shared.periodic.Periodic`) is started
    with :meth:`every` or :meth:`start_periodic`."""

    def __init__(self, restart_first_s: float = 1.0, restart_cap_s: float = 30.0) -> None:
        self.tasks: dict[str, _Task] = {}
        self.restart_first_s = restart_first_s
        self.restart_cap_s = restart_cap_s

    def start(
        self,
        name: str,
        work: Callable[[], Awaitable[None]],
        *,
        health: Health | None = None,
        stop: Callable[[], None] | None = None,
    ) -> None:
        """Run ``work`` in the background (see the class); ``health`` adds its own verdict to
        :meth:`check` (e.g. a consumer that stopped a partition); ``stop`` is what
        :meth:`stop` calls to ask ``work`` to return, unless it is given a stopper itself."""
        entry = _Task(health, stop)
        entry.task = asyncio.create_task(self._supervise(name, work, entry), name=name)
        self.tasks[name] = entry

    def start_periodic(self, periodic: Periodic, *, health: Health | None = None) -> Periodic:
        """Run ``periodic`` supervised, as task ``periodic.name`` (:meth:`stop` stops it)."""
        self.start(periodic.name, periodic.run, health=health, stop=periodic.stop)
        return periodic

    def every(
        self,
        name: str,
        step: Step,
        *,
        interval_s: float,
        at_start: bool = True,
        final: bool = False,
        retry_first_s: float | None = None,
        retry_cap_s: float | None = None,
    ) -> Periodic:
        """Run ``step`` every ``interval_s`` as supervised task ``name``: a
        :class:`~shared.periodic.Periodic` (see it for the arguments), returned so that the
        caller can :meth:`~shared.periodic.Periodic.poke` it. :meth:`stop` stops it."""
        periodic = Periodic(
            name,
            step,
            interval_s=interval_s,
            at_start=at_start,
            final=final,
            retry_first_s=retry_first_s,
            retry_cap_s=retry_cap_s,
        )
        return self.start_periodic(periodic)

    async def _supervise(
        self, name: str, work: Callable[[], Awaitable[None]], entry: _Task
    ) -> None:
        backoff = Backoff(self.restart_first_s, self.restart_cap_s)
        while not entry.stopping.is_set():
            began = time.monotonic()
            try:
                await work()
                return  # it finished: it was asked to stop
            except Exception:
                if time.monotonic() - began > HEALTHY_RUN_S:
                    backoff.reset()
                delay = backoff.next()
                log.exception("background task %s died; starting it again in %.0fs", name, delay)
            entry.restarts += 1
            entry.restarting = True
            await wait_or(entry.stopping, delay)
            entry.restarting = False

    async def check(self) -> None:
        """Raises :class:`~shared.http.NotReady` (with a reason safe to show) if a task has
        ended, is waiting to start again, or reports itself unhealthy (readiness check)."""
        for name, entry in self.tasks.items():
            if entry.task.done():
                raise NotReady(f"{name} is not running")
            if entry.restarting:
                raise NotReady(f"{name} failed and is starting again ({entry.restarts} restarts)")
            reason = entry.health() if entry.health is not None else None
            if reason is not None:
                raise NotReady(reason)

    def restarts(self, name: str) -> int:
        entry = self.tasks.get(name)
        return entry.restarts if entry is not None else 0

    async def stop(
        self, name: str, stopper: Callable[[], None] | None = None, grace_s: float = 30.0
    ) -> None:
        """Ask task ``name`` to stop (``stopper``, else the ``stop`` it was started with),
        wait for it to finish its work, cancel it past ``grace_s``. A name never started is
        only asked (its ``stopper`` called)."""
        entry = self.tasks.get(name)
        stop = stopper or (entry.stopper if entry is not None else None)
        if stop is not None:
            stop()
        if entry is None:
            return
        entry.stopping.set()
        task = entry.task
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            log.error("%s did not stop within %.0fs; cancelling", name, grace_s)
            task.cancel()
        elif not task.cancelled() and task.exception() is not None:
            log.error("%s had ended with %r", name, task.exception())


class Counted(Protocol):
    """What a relay counts (:class:`shared.outbox.OutboxRelay`), and a consumer too."""

    @property
    def name(self) -> str: ...

    @property
    def letters(self) -> Mapping[str, int]: ...  # dead letters per error


class RelayStats(Counted, Protocol):
    @property
    def published(self) -> int: ...

    @property
    def backlog(self) -> int | None: ...  # rows not yet published, when last measured

    async def measure_backlog(self) -> None: ...


class ConsumerStats(Counted, Protocol):
    """What a consumer pipeline counts (:class:`shared.kafka.ConsumerPipeline`)."""

    @property
    def processed(self) -> int: ...

    @property
    def batches(self) -> int: ...

    @property
    def retries(self) -> int: ...

    @property
    def halted_partitions(self) -> int: ...

    @property
    def batch_seconds(self) -> Histogram: ...

    def positions(self) -> dict[tuple[str, int], tuple[int, int | None]]: ...


def runtime_families(
    consumers: Iterable[ConsumerStats], relays: Iterable[RelayStats], tasks: BackgroundTasks
) -> Iterator[Family]:
    """The consumers', relays' and tasks' metrics (names: :class:`~shared.metrics.Metric`)."""
    records = CounterMetricFamily(Metric.RECORDS, "Records a consumer applied", labels=["consumer"])
    batches = CounterMetricFamily(
        Metric.BATCHES, "Transactions a consumer committed", labels=["consumer"]
    )
    retries = CounterMetricFamily(
        Metric.RETRIES, "Batches retried after a transient failure", labels=["consumer"]
    )
    halted = GaugeMetricFamily(
        Metric.HALTED, "Partitions stopped by the dead-letter limit", labels=["consumer"]
    )
    where = ["consumer", "topic", "partition"]
    lag = GaugeMetricFamily(
        Metric.LAG, "Records between a partition's position and its last known end", labels=where
    )
    position = GaugeMetricFamily(Metric.POSITION, "Next offset to handle", labels=where)
    letters = CounterMetricFamily(
        Metric.DEAD_LETTERS,
        "Dead letters written, per consumer and error",
        labels=["consumer", "error"],
    )
    published = CounterMetricFamily(Metric.PUBLISHED, "Outbox rows published", labels=["consumer"])
    backlog = GaugeMetricFamily(
        Metric.OUTBOX_BACKLOG, "Outbox rows not yet published", labels=["consumer"]
    )
    histograms: list[Family] = []
    for c in consumers:
        records.add_metric([c.name], c.processed)
        batches.add_metric([c.name], c.batches)
        retries.add_metric([c.name], c.retries)
        halted.add_metric([c.name], c.halted_partitions)
        for (topic, partition), (offset, end) in sorted(c.positions().items()):
            position.add_metric([c.name, topic, str(partition)], offset)
            if end is not None:
                lag.add_metric([c.name, topic, str(partition)], max(end - offset, 0))
        for error, n in sorted(c.letters.items()):
            letters.add_metric([c.name, error], n)
        histograms += relabelled(c.batch_seconds, {"consumer": c.name})
    for r in relays:
        published.add_metric([r.name], r.published)
        if r.backlog is not None:
            backlog.add_metric([r.name], r.backlog)
        for error, n in sorted(r.letters.items()):
            letters.add_metric([r.name, error], n)
    yield from (records, batches, retries, halted, lag, position, letters, published, backlog)
    yield task_restarts(tasks)
    # declared even before a consumer exists: the name is in every scrape of the service
    yield from histograms or batch_histogram().collect()


def task_restarts(tasks: BackgroundTasks) -> Family:
    """How often each background task was started again after it died."""
    restarts = CounterMetricFamily(
        Metric.RESTARTS, "Background tasks started again after they died", labels=["task"]
    )
    for name in tasks.tasks:
        restarts.add_metric([name], tasks.restarts(name))
    return restarts


def metrics_router(
    consumers: Callable[[], Iterable[ConsumerStats]],
    relays: Callable[[], Iterable[RelayStats]],
    tasks: BackgroundTasks,
    metrics: ServiceMetrics | None = None,
) -> APIRouter:
    """``GET /metrics``: ``metrics`` (the app's registry, :func:`install_private_metrics`)
    with the service's consumers, relays and tasks added (the callables give what runs now:
    they are created in the lifespan). A scrape measures the relays' backlogs first."""
    metrics = metrics or ServiceMetrics()
    metrics.add(lambda: runtime_families(consumers(), relays(), tasks))

    async def measure() -> None:
        for relay in relays():
            await relay.measure_backlog()

    metrics.before_scrape(measure)
    return scrape_router(metrics)


def scrape_router(metrics: ServiceMetrics) -> APIRouter:
    """``GET /metrics``: the Prometheus text of ``metrics``."""
    router = APIRouter(tags=["health"])

    @router.get("/metrics", response_class=PlainTextResponse, summary="Metrics (Prometheus)")
    async def scrape() -> Response:
        """Consumers (records, batches and their durations, retries, lag and position per
        partition, dead letters, stopped partitions), outbox relays (published, backlog),
        task restarts, HTTP request durations; and what the service adds
        (docs/observability.md)."""
        return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


#: the path of the Prometheus text, on the metrics listener (or the public port in development)
METRICS_PATH = "/metrics"
#: set in a request's scope by :class:`MetricsListener`: it came in on the private port
_VIA_LISTENER = "alliance.metrics_listener"


def _bearer_matches(scope: Scope, token: str) -> bool:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), token.encode()
            )
    return False


class PrivateMetrics:
    """ASGI middleware of every service's public app: ``/metrics`` is not served on the
    public port when a separate listener is configured (``ALLIANCE_METRICS_PORT``: 404, as
    if it did not exist), and answers only the metrics token when one is set
    (``ALLIANCE_METRICS_TOKEN``: 401). A request that came through the
    :class:`MetricsListener` passed these checks there."""

    def __init__(self, app: ASGIApp, *, separate: bool, token: str | None) -> None:
        self.app = app
        self.separate = separate
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        public = scope["type"] == "http" and not scope.get(_VIA_LISTENER)
        if public and scope["path"].rstrip("/") == METRICS_PATH:
            if self.separate:
                await PlainTextResponse("not found\n", 404)(scope, receive, send)
                return
            if self.token is not None and not _bearer_matches(scope, self.token):
                await _unauthorized(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _unauthorized(scope: Scope, receive: Receive, send: Send) -> None:
    response = PlainTextResponse(
        "unauthorized\n", 401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
    )
    await response(scope, receive, send)


class MetricsListener:
    """The ASGI app of the separate metrics port (``ALLIANCE_METRICS_HOST``:
    ``ALLIANCE_METRICS_PORT``): ``GET /metrics`` of the service's app, with the metrics token
    when one is set (401 otherwise), and nothing else (404). Served without a lifespan: the
    public server runs the app's."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan, no websocket: the public server owns the app's lifespan
        if scope["path"].rstrip("/") != METRICS_PATH or scope["method"] not in ("GET", "HEAD"):
            await PlainTextResponse("not found\n", 404)(scope, receive, send)
            return
        if self.token is not None and not _bearer_matches(scope, self.token):
            await _unauthorized(scope, receive, send)
            return
        await self.app({**scope, _VIA_LISTENER: True}, receive, send)


def install_private_metrics(app: FastAPI, settings: Settings) -> MetricsListener:
    """Give the app its registry (:class:`~shared.metrics.ServiceMetrics`, kept as
    ``app.state.prometheus``) with every request's duration in it
    (:class:`~shared.metrics.RequestDurations`); keep the app's ``/metrics`` off the public
    port (:class:`PrivateMetrics`) and return the app of the metrics port
    (:class:`MetricsListener`), kept as ``app.state.metrics``."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    prometheus = ServiceMetrics()
    app.state.prometheus = prometheus
    app.add_middleware(RequestDurations, histogram=prometheus.http_seconds)
    app.add_middleware(PrivateMetrics, separate=settings.metrics_port is not None, token=token)
    listener = MetricsListener(app, token)
    app.state.metrics = listener
    return listener
