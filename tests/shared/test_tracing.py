"""shared/tracing.py: off by default and free then; on, the context crosses Kafka headers and
outbox rows, a consumer batch continues and links its records' traces, requests get spans."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import tracing
from shared.logs import JsonFormatter, Redactor


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Traces on, into memory, for one test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()


def hex_trace(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


class TestOffByDefault:
    @pytest.mark.parametrize(
        ("env", "on"),
        [
            ({}, False),
            ({"OTEL_SERVICE_NAME": "x"}, False),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
            ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
            ({"OTEL_TRACES_EXPORTER": "console"}, True),
            ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h"}, False),
            ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ],
    )
    def test_the_standard_variables_decide(self, env: dict[str, str], on: bool) -> None:
        assert tracing.wanted(env) is on

    def test_configure_without_variables_leaves_it_off(self) -> None:
        assert tracing.configure("tracker", {}) is False
        assert not tracing.ENABLED

    def test_the_hooks_do_nothing(self) -> None:
        assert tracing.kafka_headers() is None
        assert tracing.current_traceparent() is None
        assert tracing.batch_span("s", "c", [[("traceparent", b"x")]]) is tracing.NO_SPAN
        assert tracing.span("s", "n") is tracing.NO_SPAN


class TestKafkaHeaders:
    def test_the_context_crosses_the_headers(self, spans: InMemorySpanExporter) -> None:
        with tracing.tracer("tracker").start_as_current_span("send") as sent:
            headers = tracing.kafka_headers()
        assert headers is not None
        assert dict(headers)["traceparent"].decode().split("-")[1] == hex_trace(sent)
        ctx = tracing.context_of(headers)
        assert ctx is not None
        assert (
            trace.get_current_span(ctx).get_span_context().span_id
            == sent.get_span_context().span_id
        )

    def test_no_span_no_headers(self, spans: InMemorySpanExporter) -> None:
        assert tracing.kafka_headers() is None

    @pytest.mark.parametrize(
        "headers",
        [None, [], [("other", b"1")], [("traceparent", b"garbage")], [("traceparent", b"")]],
    )
    def test_no_or_bad_context_is_none(
        self, spans: InMemorySpanExporter, headers: list[tuple[str, bytes]] | None
    ) -> None:
        assert tracing.context_of(headers) is None

    def test_an_outbox_row_carries_the_writers_context(self, spans: InMemorySpanExporter) -> None:
        with tracing.tracer("attribution").start_as_current_span("batch") as writer:
            kept = tracing.current_traceparent()
        assert kept is not None
        headers = tracing.kafka_headers(kept)  # the relay, later, outside any span
        ctx = tracing.context_of(headers)
        assert ctx is not None
        assert (
            trace.get_current_span(ctx).get_span_context().span_id
            == writer.get_span_context().span_id
        )


class TestBatchSpan:
    def test_child_of_the_first_and_linked_to_each(self, spans: InMemorySpanExporter) -> None:
        producers = []
        for name in ("a", "b", "c"):
            with tracing.tracer("tracker").start_as_current_span(name) as s:
                producers.append((s, tracing.kafka_headers()))
        batch_headers = [h for _, h in producers] + [None, [("other", b"x")]]
        with tracing.batch_span("attribution", "attribution", batch_headers):
            logged = tracing._current_ids()
        batch = next(s for s in spans.get_finished_spans() if s.name == "attribution process")
        assert batch.kind is SpanKind.CONSUMER
        assert batch.instrumentation_scope is not None
        assert batch.instrumentation_scope.name == "alliance.attribution"
        assert batch.context is not None
        assert batch.parent is not None
        assert batch.parent.span_id == producers[0][0].get_span_context().span_id
        assert batch.context.trace_id == producers[0][0].get_span_context().trace_id
        assert {link.context.span_id for link in batch.links} == {
            s.get_span_context().span_id for s, _ in producers
        }
        assert batch.attributes is not None
        assert batch.attributes["messaging.batch.message_count"] == 5
        assert logged == (
            format(batch.context.trace_id, "032x"),
            format(batch.context.span_id, "016x"),
        )

    def test_without_any_context_a_new_trace(self, spans: InMemorySpanExporter) -> None:
        with tracing.batch_span("commission", "commission", [None, None]):
            pass
        (batch,) = spans.get_finished_spans()
        assert batch.parent is None
        assert not batch.links

    def test_links_are_capped(self, spans: InMemorySpanExporter) -> None:
        headers = []
        for _ in range(tracing.MAX_LINKS + 5):
            with tracing.tracer("tracker").start_as_current_span("p"):
                headers.append(tracing.kafka_headers())
        with tracing.batch_span("attribution", "attribution", headers):
            pass
        batch = next(s for s in spans.get_finished_spans() if s.name == "attribution process")
        assert len(batch.links) == tracing.MAX_LINKS


class TestLogLines:
    def test_a_line_names_the_trace(self, spans: InMemorySpanExporter) -> None:
        formatter = JsonFormatter("tracker", Redactor())
        rec = logging.LogRecord("services.t", logging.INFO, __file__, 1, "in a span", (), None)
        with tracing.tracer("tracker").start_as_current_span("x") as s:
            line = orjson.loads(formatter.format(rec))
        assert line["trace_id"] == hex_trace(s)
        assert "trace_id" not in orjson.loads(formatter.format(rec))  # outside of it


def traced_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    app.add_middleware(tracing.TracedRequests, service="commission")
    return app


class TestRequestSpans:
    async def test_a_span_named_by_the_route_continuing_the_callers(
        self, spans: InMemorySpanExporter
    ) -> None:
        caller_trace = "0af7651916cd43dd8448eb211c80319c"
        transport = httpx.ASGITransport(app=traced_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get(
                "/v1/things/secret-id",
                headers={"traceparent": f"00-{caller_trace}-b7ad6b7169203331-01"},
            )
        assert answer.status_code == 200
        (server,) = spans.get_finished_spans()
        assert server.name == "GET /v1/things/{thing_id}"
        assert server.kind is SpanKind.SERVER
        assert server.context is not None
        assert format(server.context.trace_id, "032x") == caller_trace
        assert server.attributes is not None
        assert server.attributes["http.response.status_code"] == 200
        assert "secret-id" not in str(dict(server.attributes))

    async def test_off_no_span(self) -> None:
        transport = httpx.ASGITransport(app=traced_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/v1/things/x")).status_code == 200
        assert not tracing.ENABLED


class TestTracedProducer:
    """:class:`shared.kafka.TracedProducer` adds the context to a send without headers, keeps
    a caller's own headers, and adds nothing when off."""

    @pytest.fixture
    def sent(self, monkeypatch: pytest.MonkeyPatch) -> list[object]:
        from aiokafka import AIOKafkaProducer

        calls: list[object] = []

        async def send(self: object, *args: object) -> None:
            calls.append(args[-1])  # the headers

        monkeypatch.setattr(AIOKafkaProducer, "send", send)
        return calls

    async def test_headers_on_and_off(
        self, sent: list[object], spans: InMemorySpanExporter
    ) -> None:
        from shared.config import Settings
        from shared.kafka import make_producer

        producer = make_producer(Settings().kafka)
        with tracing.tracer("tracker").start_as_current_span("request") as request:
            await producer.send("t", b"v")
            await producer.send("t", b"v", headers=[("mine", b"1")])
        tracing.uninstall()
        with tracing.tracer("tracker").start_as_current_span("off"):
            await producer.send("t", b"v")
        traced, own, off = sent
        assert isinstance(traced, list)
        assert dict(traced)["traceparent"].decode().split("-")[1] == hex_trace(request)
        assert own == [("mine", b"1")]
        assert off is None
