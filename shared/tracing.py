"""Traces: OpenTelemetry, off unless the standard ``OTEL_*`` variables turn it on.

Off (the default), every hook of this module is one check of :data:`ENABLED` and nothing
else: no provider, no span, no header. On (:func:`configure`, called once per process by
``alliance <service>``):

- every HTTP request of the three apps is a ``SERVER`` span (:class:`TracedRequests`,
  :func:`redirect_span` for the tracker's fast redirect), continuing the caller's W3C
  ``traceparent`` when it sends one;
- every record a producer of the project sends carries the current context in its Kafka
  headers (``traceparent``, ``tracestate``: :func:`kafka_headers`, used by
  :class:`shared.kafka.TracedProducer`, the click batcher and the outbox relays, which keep
  the context of the transaction that wrote each row);
- every consumer batch is one ``CONSUMER`` span (:func:`batch_span`) linked to each record's
  producer context; its parent is the first of them, so one order's spans share one trace
  id from the storefront's request to the commission's ledger;
- log lines carry ``trace_id`` and ``span_id`` (:mod:`shared.logs`).

Exporter and sampling are the SDK's, configured by the standard variables:
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) with
``OTEL_EXPORTER_OTLP_HEADERS`` …, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG``. Tracing is on when
``OTEL_TRACES_EXPORTER`` names ``otlp`` or ``console``, or an OTLP endpoint is set, and
``OTEL_SDK_DISABLED`` is not ``true``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import logs

log = logging.getLogger(__name__)

#: traces are on in this process: the one thing a hot path checks
ENABLED = False
#: the instrumentation scope of the project's spans (one tracer per service:
#: ``alliance.<service>``)
SCOPE: Final = "alliance"
#: at most this many links on a batch span (a batch may hold thousands of records)
MAX_LINKS: Final = 128
#: the Kafka headers that carry the context (W3C Trace Context)
TRACE_HEADERS: Final[tuple[str, ...]] = ("traceparent", "tracestate")

#: what a hook returns when off (reusable: it does nothing)
NO_SPAN: Final = contextlib.nullcontext()
_provider: Any = None  # the SDK's TracerProvider when on
#: tracers by service, of the current provider (making one costs ~10 µs: not per request)
_tracers: dict[str, Tracer] = {}


def wanted(env: Mapping[str, str]) -> bool:
    """Whether ``env`` asks for traces (see the module's docstring)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    if "none" in exporters:
        return False
    return bool(exporters & {"otlp", "console"}) or bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Turn traces on for this process when ``env`` (the environment) asks for them, with the
    exporter it names; returns whether they are on. ``OTEL_SERVICE_NAME`` defaults to
    ``alliance-<service>``. Idempotent."""
    env = os.environ if env is None else env
    if ENABLED or not wanted(env):
        return ENABLED
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"alliance-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_TRACES_*
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    chosen: list[SpanExporter] = []
    if "console" in exporters:
        chosen.append(ConsoleSpanExporter())
    if "otlp" in exporters or not chosen:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        chosen.append(OTLPSpanExporter())  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
    for exporter in chosen:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the global one too, for any library's spans
    install(provider)
    log.info("traces on: %s", ", ".join(type(e).__name__ for e in chosen))
    return True


def install(provider: Any) -> None:
    """Turn traces on with ``provider`` (an SDK ``TracerProvider``: :func:`configure`'s, or a
    test's with an in-memory exporter)."""
    global ENABLED, _provider
    _provider = provider
    _tracers.clear()
    ENABLED = True
    logs.trace_ids = _current_ids


def uninstall() -> None:
    """Turn traces off again (tests): the hooks go back to checking a flag."""
    global ENABLED, _provider
    ENABLED = False
    _provider = None
    _tracers.clear()
    logs.trace_ids = None


def flush() -> None:
    """Export the spans still buffered, waiting at most 5 s (no-op when off)."""
    if _provider is not None and hasattr(_provider, "force_flush"):
        _provider.force_flush(5_000)


def shutdown() -> None:
    """Export the spans still buffered and stop the exporter (a service that stops): no-op
    when off."""
    if _provider is not None and hasattr(_provider, "shutdown"):
        _provider.shutdown()


def tracer(service: str) -> Tracer:
    """The tracer of ``service`` (``alliance.<service>``), made once per provider."""
    found = _tracers.get(service)
    if found is None:
        provider = _provider if _provider is not None else trace.get_tracer_provider()
        found = _tracers[service] = provider.get_tracer(f"{SCOPE}.{service}")
    return found


def _current_ids() -> tuple[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def current_traceparent() -> str | None:
    """The current context as a ``traceparent`` value (None when off or outside a span):
    what an outbox row keeps, so that its relay sends it on."""
    if not ENABLED:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def kafka_headers(traceparent: str | None = None) -> list[tuple[str, bytes]] | None:
    """The Kafka record headers that carry the current context (or ``traceparent``, when
    given); None when off or when there is no context to carry."""
    if not ENABLED:
        return None
    carrier: dict[str, str] = {}
    if traceparent is not None:
        carrier["traceparent"] = traceparent
    else:
        propagate.inject(carrier)
    headers = [(name, carrier[name].encode()) for name in TRACE_HEADERS if name in carrier]
    return headers or None


def context_of(headers: Iterable[tuple[str, bytes]] | None) -> Context | None:
    """The producer's context carried in a record's ``headers``, or None."""
    if not headers:
        return None
    carrier = {name: value.decode("latin-1") for name, value in headers if name in TRACE_HEADERS}
    if "traceparent" not in carrier:
        return None
    ctx = propagate.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def batch_span(
    service: str, consumer: str, headers: Sequence[Iterable[tuple[str, bytes]] | None]
) -> contextlib.AbstractContextManager[Any]:
    """The span of one consumer batch (``<consumer> process``, kind ``CONSUMER``), linked to
    the producer context of each record that carries one (up to :data:`MAX_LINKS`), child of
    the first of them; a no-op when off."""
    if not ENABLED:
        return NO_SPAN
    return _batch_span(service, consumer, headers)


@contextlib.contextmanager
def _batch_span(
    service: str, consumer: str, headers: Sequence[Iterable[tuple[str, bytes]] | None]
) -> Iterator[Any]:
    parent: Context | None = None
    links: list[Link] = []
    seen: set[int] = set()
    for h in headers:
        if len(links) == MAX_LINKS:  # the rest would not be linked: not even read
            break
        ctx = context_of(h)
        if ctx is None:
            continue
        span_context = trace.get_current_span(ctx).get_span_context()
        if span_context.span_id in seen:
            continue
        seen.add(span_context.span_id)
        parent = parent or ctx
        links.append(Link(span_context))
    with tracer(service).start_as_current_span(
        f"{consumer} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": consumer,
            "messaging.batch.message_count": len(headers),
        },
    ) as span:
        yield span


def span(
    service: str, name: str, **attributes: str | int
) -> contextlib.AbstractContextManager[Any]:
    """An internal span of ``service`` named ``name`` (a no-op when off)."""
    if not ENABLED:
        return NO_SPAN
    return tracer(service).start_as_current_span(name, attributes=attributes)


def _server_span(service: str, scope: Scope, name: str) -> contextlib.AbstractContextManager[Any]:
    carrier = {
        key.decode("latin-1"): value.decode("latin-1")
        for key, value in scope.get("headers") or []
        if key in (b"traceparent", b"tracestate")
    }
    return tracer(service).start_as_current_span(
        name,
        context=propagate.extract(carrier) if carrier else None,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": scope["method"], "url.scheme": scope["scheme"]},
    )


def redirect_span(service: str, scope: Scope) -> contextlib.AbstractContextManager[Any]:
    """The server span of the tracker's fast redirect (``GET /r/{code}``), which bypasses
    the app's middleware; a no-op when off."""
    if not ENABLED:
        return NO_SPAN
    return _server_span(service, scope, f"{scope['method']} /r/{{code}}")


def instrument(app: Any, service: str) -> None:
    """Give ``app`` (a FastAPI app) :class:`TracedRequests` when traces are on, and a
    lifespan that exports the buffered spans when it shuts down; off, it gets nothing at all
    (not even a pass-through layer). Call it after :func:`configure`, which
    ``alliance <service>`` runs before building its app."""
    if ENABLED:
        app.add_middleware(TracedRequests, service=service)
        inner = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app_: Any) -> AsyncIterator[Any]:
            try:
                async with inner(app_) as state:
                    yield state
            finally:
                # uvicorn ends the process by the signal that stopped it, past any atexit:
                # export what is buffered while the app shuts down
                flush()

        app.router.lifespan_context = lifespan


class TracedRequests:
    """ASGI middleware: each HTTP request a ``SERVER`` span named by its method and route
    template (``POST /v1/events``; never the raw path, which may hold ids), with its status.
    Off, it passes each request through after one flag check."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not ENABLED or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with _server_span(self.service, scope, scope["method"]) as current:
            status = 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    current.update_name(f"{scope['method']} {route}")
                    current.set_attribute("http.route", route)
                current.set_attribute("http.response.status_code", status)
                if status >= 500:
                    current.set_status(trace.StatusCode.ERROR)
