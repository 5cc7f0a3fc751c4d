"""Prometheus metrics of a service process, through ``prometheus_client``.

One registry per service process (:class:`ServiceMetrics`, kept as ``app.state.prometheus``):
a process runs one app, and a test that builds several apps gets one registry each, so that
no series of one app shows up in another's ``/metrics``. Most values are read at scrape time
from the objects that already count them (consumer pipelines, relays, the webhook worker, the
tracker); what must be observed as it happens (durations) is a histogram held by the object
that times it, not registered anywhere, and folded into the app's registry with its labels
(:func:`relabelled`). The metric names are :class:`Metric`; docs/observability.md lists them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from enum import StrEnum

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
# no ``_created`` series beside every counter and histogram: twice the series for a start
# time that ``process_start_time_seconds``-style resets already tell (rate() handles resets)
disable_created_metrics()


class Metric(StrEnum):
    """Every metric name a service exports (the names as they appear in the scrape)."""

    RECORDS = "alliance_consumer_records_total"  # records applied, per consumer: rate = events/s
    BATCHES = "alliance_consumer_batches_total"  # transactions committed, per consumer
    RETRIES = "alliance_consumer_retries_total"  # batches retried after a transient failure
    BATCH_SECONDS = "alliance_consumer_batch_duration_seconds"  # one batch's transaction
    LAG = "alliance_consumer_lag"  # records between a partition's position and its end
    POSITION = "alliance_consumer_position"  # next offset to handle, per partition
    HALTED = "alliance_consumer_halted_partitions"  # partitions stopped by the DLQ limit
    DEAD_LETTERS = "alliance_dead_letters_total"  # letters written, per consumer and error
    PUBLISHED = "alliance_outbox_published_total"  # outbox rows published, per relay
    OUTBOX_BACKLOG = "alliance_outbox_backlog"  # outbox rows not yet published, per relay
    RESTARTS = "alliance_task_restarts_total"  # background tasks started again after dying
    WEBHOOKS = "alliance_webhook_deliveries_total"  # delivery attempts, per outcome
    WEBHOOK_SECONDS = "alliance_webhook_delivery_duration_seconds"  # one attempt, per outcome
    HTTP_SECONDS = "alliance_http_request_duration_seconds"  # per method, route template, status
    SPOOL_BYTES = "alliance_tracker_spool_bytes"  # clicks waiting in the tracker's spool
    SPOOL_LIMIT = (
        "alliance_tracker_spool_limit_bytes"  # the spool's bound (ALLIANCE_SPOOL_MAX_BYTES)
    )
    TRACKER = "alliance_tracker_total"  # the tracker's counters, per `what`
    LEDGER_POSTINGS = "alliance_ledger_postings_total"  # ledger postings committed


#: what the scrape shows of a metric besides its name: a counter's ``_total``, a
#: histogram's ``_bucket``, ``_count`` and ``_sum``
SAMPLE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
#: batch transactions take milliseconds to seconds (a broker or database stall: more)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: a webhook attempt ends by its deadline (``ALLIANCE_WEBHOOK_TIMEOUT_S``, 10 s by default)
WEBHOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: a route template that no route matched (404s): one series, whatever the path
UNMATCHED = "<unmatched>"
#: how long a scrape waits for one of its measurements (the outbox backlog's query)
REFRESH_TIMEOUT_S = 2.0


def batch_histogram() -> Histogram:
    """A consumer's batch durations (seconds), registered nowhere: see :func:`relabelled`."""
    return Histogram(
        Metric.BATCH_SECONDS,
        "Duration of one batch's transaction (handle and offsets, committed)",
        buckets=BATCH_BUCKETS,
        registry=None,
    )


def webhook_metrics() -> tuple[Counter, Histogram]:
    """The webhook worker's attempts per outcome and their durations, registered nowhere."""
    deliveries = Counter(
        Metric.WEBHOOKS, "Webhook delivery attempts, per outcome", ["outcome"], registry=None
    )
    seconds = Histogram(
        Metric.WEBHOOK_SECONDS,
        "Duration of one webhook delivery attempt, per outcome",
        ["outcome"],
        buckets=WEBHOOK_BUCKETS,
        registry=None,
    )
    return deliveries, seconds


def relabelled(metric: Collector, labels: Mapping[str, str]) -> Iterator[Family]:
    """``metric``'s families with ``labels`` added to every sample (a consumer's name)."""
    for family in metric.collect():
        out = Family(family.name, family.documentation, family.type, family.unit)
        for s in family.samples:
            out.add_sample(s.name, {**labels, **s.labels}, s.value, s.timestamp, s.exemplar)
        yield out


def merged(families: Iterable[Family]) -> list[Family]:
    """One family per name (the same metric of several consumers, each with its labels)."""
    by_name: dict[str, Family] = {}
    for family in families:
        into = by_name.setdefault(
            family.name, Family(family.name, family.documentation, family.type, family.unit)
        )
        into.samples.extend(family.samples)
    return list(by_name.values())


class Collect:
    """A collector of families computed at scrape time by ``produce`` (never raises: a
    failure is logged and the families are left out of that scrape)."""

    def __init__(self, produce: Callable[[], Iterable[Family]]) -> None:
        self.produce = produce

    def collect(self) -> Iterable[Family]:
        try:
            return merged(self.produce())
        except Exception:
            log.exception("collecting metrics failed")
            return []


class ServiceMetrics:
    """A service process's registry (see the module): the HTTP request durations, the
    collectors of its parts (:meth:`add`), and the measurements a scrape awaits first
    (:meth:`before_scrape`: the outbox backlog is a query)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_seconds = Histogram(
            Metric.HTTP_SECONDS,
            "Duration of an HTTP request, per method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._refreshers: list[Callable[[], Awaitable[None]]] = []

    def add(self, produce: Callable[[], Iterable[Family]]) -> None:
        """Collect what ``produce`` returns at every scrape."""
        self.registry.register(Collect(produce))

    def before_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Await ``refresh`` before each scrape (at most :data:`REFRESH_TIMEOUT_S`)."""
        self._refreshers.append(refresh)

    async def render(self) -> bytes:
        """The Prometheus text of the registry, after the refreshers (one that fails or
        times out leaves its last value, logged)."""
        for refresh in self._refreshers:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    await refresh()
            except Exception as exc:
                log.warning("a metrics measurement failed: %r", exc)
        return generate_latest(self.registry)

    def exported(self) -> set[str]:
        """Every sample name a scrape can show (with the suffixes of counters and
        histograms): what alert rules and dashboards may use."""
        names: set[str] = set()
        for family in self.registry.collect():
            names.add(family.name)
            names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES)
        return names


class RequestDurations:
    """ASGI middleware: every HTTP request's duration into
    :attr:`ServiceMetrics.http_seconds`, labelled by the route's template (``/links/{code}``,
    never the raw path: one series per route, whatever the ids) and the answer's status."""

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # raised before an answer: what the server answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.histogram.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )


#: the counts of a session's transaction, added to :data:`COMMITTED` when it commits
_PENDING = "alliance.metrics.pending"
#: process-wide counts of what committed transactions wrote (:func:`count_on_commit`)
COMMITTED: Tally[str] = Tally()
#: the ledger postings written, in :data:`COMMITTED`
LEDGER_POSTINGS = "ledger_postings"


def count_on_commit(session: AsyncSession, what: str, n: int) -> None:
    """Count ``n`` of ``what`` in :data:`COMMITTED` once ``session``'s transaction commits
    (dropped if it rolls back: a batch retried is not counted twice)."""
    pending: Tally[str] = session.sync_session.info.setdefault(_PENDING, Tally())
    pending[what] += n


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        COMMITTED.update(pending)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)
