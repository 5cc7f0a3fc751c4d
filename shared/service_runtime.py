"""Running a service's long-lived work (consumers, relays) inside its lifespan: start, watch,
restart what dies, stop gracefully; and the counters they expose on ``GET /metrics``, served
on a port of its own (:class:`MetricsListener`), never on the public one."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.config import Settings
from shared.http import NotReady
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


class Metric(StrEnum):
    """Metric names of the consumers' ``GET /metrics`` (Prometheus text format)."""

    RECORDS = "alliance_consumer_records_total"  # records applied, per consumer
    BATCHES = "alliance_consumer_batches_total"  # transactions committed, per consumer
    RETRIES = "alliance_consumer_retries_total"  # batches retried after a transient failure
    DEAD_LETTERS = "alliance_dead_letters_total"  # letters written, per consumer and error
    HALTED = "alliance_consumer_halted_partitions"  # partitions stopped by the DLQ limit
    PUBLISHED = "alliance_outbox_published_total"  # outbox rows published, per relay
    RESTARTS = "alliance_task_restarts_total"  # background tasks started again after dying


class Counted(Protocol):
    """What a relay counts (:class:`shared.outbox.OutboxRelay`), and a consumer too."""

    @property
    def name(self) -> str: ...

    @property
    def letters(self) -> Mapping[str, int]: ...  # dead letters per error


class RelayStats(Counted, Protocol):
    @property
    def published(self) -> int: ...


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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def metrics_text(
    consumers: Iterable[ConsumerStats], relays: Iterable[RelayStats], tasks: BackgroundTasks
) -> str:
    """The counters in Prometheus text format."""
    helps = {
        Metric.RECORDS: ("counter", "Records a consumer applied"),
        Metric.BATCHES: ("counter", "Transactions a consumer committed"),
        Metric.RETRIES: ("counter", "Batches retried after a transient failure"),
        Metric.DEAD_LETTERS: ("counter", "Dead letters written, per consumer and error"),
        Metric.HALTED: ("gauge", "Partitions stopped by the dead-letter limit"),
        Metric.PUBLISHED: ("counter", "Outbox rows published"),
        Metric.RESTARTS: ("counter", "Background tasks started again after they died"),
    }
    samples: dict[Metric, list[str]] = {m: [] for m in Metric}
    for c in consumers:
        who = f'consumer="{_label(c.name)}"'
        samples[Metric.RECORDS].append(f"{Metric.RECORDS}{{{who}}} {c.processed}")
        samples[Metric.BATCHES].append(f"{Metric.BATCHES}{{{who}}} {c.batches}")
        samples[Metric.RETRIES].append(f"{Metric.RETRIES}{{{who}}} {c.retries}")
        samples[Metric.HALTED].append(f"{Metric.HALTED}{{{who}}} {c.halted_partitions}")
        for error, n in sorted(c.letters.items()):
            samples[Metric.DEAD_LETTERS].append(
                f'{Metric.DEAD_LETTERS}{{{who},error="{_label(error)}"}} {n}'
            )
    for r in relays:
        who = f'consumer="{_label(r.name)}"'
        samples[Metric.PUBLISHED].append(f"{Metric.PUBLISHED}{{{who}}} {r.published}")
        for error, n in sorted(r.letters.items()):
            samples[Metric.DEAD_LETTERS].append(
                f'{Metric.DEAD_LETTERS}{{{who},error="{_label(error)}"}} {n}'
            )
    for name in tasks.tasks:
        samples[Metric.RESTARTS].append(
            f'{Metric.RESTARTS}{{task="{_label(name)}"}} {tasks.restarts(name)}'
        )
    lines: list[str] = []
    for metric, (kind, text) in helps.items():
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}", *samples[metric]]
    return "\n".join(lines) + "\n"


def metrics_router(
    consumers: Callable[[], Iterable[ConsumerStats]],
    relays: Callable[[], Iterable[RelayStats]],
    tasks: BackgroundTasks,
) -> APIRouter:
    """``GET /metrics``: the service's consumers, relays and tasks (the callables give what
    runs now: they are created in the lifespan)."""
    router = APIRouter(tags=["health"])

    @router.get("/metrics", response_class=PlainTextResponse, summary="Counters (Prometheus)")
    async def metrics() -> str:
        """Records applied, batches, retries, dead letters per consumer and error, partitions
        stopped by the dead-letter limit, outbox rows published, task restarts."""
        return metrics_text(consumers(), relays(), tasks)

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
    """Keep the app's ``/metrics`` off the public port (:class:`PrivateMetrics`) and return
    the app of the metrics port (:class:`MetricsListener`), kept as ``app.state.metrics``."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    app.add_middleware(PrivateMetrics, separate=settings.metrics_port is not None, token=token)
    listener = MetricsListener(app, token)
    app.state.metrics = listener
    return listener
