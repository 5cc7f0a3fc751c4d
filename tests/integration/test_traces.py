"""Traces and logs of a full run on the real stack: a storefront's order, sent with a trace
context, yields spans of the tracker, attribution and commission in that one trace (across
Kafka headers and attribution's outbox); the click's redirect has its span, which the
attribution batch links; and no key, secret or cookie value is in the run's log lines."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import logs, tracing
from shared.config import Settings
from shared.secrets import signature_header
from tests.integration.harness import (
    admin,
    eventually,
    new_affiliate,
    new_link,
    new_store,
    order_view,
    running,
    uid,
)
from tests.integration.test_pipeline import completed, placed

pytestmark = pytest.mark.integration

#: the storefront's own trace: its request to the tracker continues it
STOREFRONT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLICK_TRACE = "5cf92f3577b34da6a3ce929d0e0e4737"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


@pytest.fixture
def log_lines(settings: Settings) -> Iterator[io.StringIO]:
    """Every record of the run as the services write it (JSON, redacted with the
    deployment's secrets), at INFO and above."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        logs.JsonFormatter(
            "test", logs.Redactor(settings.secret_key, logs.settings_secrets(settings))
        )
    )
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def scope(span: ReadableSpan) -> str:
    return span.instrumentation_scope.name if span.instrumentation_scope else ""


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


async def test_one_order_one_trace_across_the_three_services(
    settings: Settings, spans: InMemorySpanExporter, log_lines: io.StringIO
) -> None:
    u = uid()
    async with running(settings) as svc:
        store = await new_store(svc, settings, f"s-{u}")
        key = await new_affiliate(svc, settings, f"aff-{u}")
        link = await new_link(svc, key, store.store_id, "p1")
        redirect = await svc.tracker.get(
            f"/r/{link['code']}",
            headers={"traceparent": f"00-{CLICK_TRACE}-00f067aa0ba902b7-01"},
        )
        assert redirect.status_code == 302
        visitor = parse_qs(urlsplit(redirect.headers["location"]).query)["alliance_vid"][0]
        cookie = redirect.cookies["alliance_vid"]

        order_id = f"o-{u}"
        body = orjson.dumps({"events": [placed(order_id, visitor), completed(order_id)]})
        sent = await svc.tracker.post(
            "/v1/events",
            content=body,
            headers={
                "X-Alliance-Store": store.store_id,
                "X-Alliance-Signature": signature_header(store.secret, int(time.time()), body),
                "Content-Type": "application/json",
                "traceparent": f"00-{STOREFRONT_TRACE}-b7ad6b7169203331-01",
            },
        )
        assert sent.status_code == 202, sent.text
        await eventually(
            lambda: order_view(
                svc,
                settings,
                (store.store_id, order_id),
                status="completed",
                affiliate_id=f"aff-{u}",
            )
        )

        async def commission_span() -> ReadableSpan | None:
            found = [
                s
                for s in spans.get_finished_spans()
                if scope(s) == "alliance.commission"
                and s.kind is SpanKind.CONSUMER
                and trace_of(s) == STOREFRONT_TRACE
            ]
            return found[0] if found else None

        await eventually(commission_span)

    finished = spans.get_finished_spans()
    in_trace = [s for s in finished if trace_of(s) == STOREFRONT_TRACE]
    by_scope = {scope(s) for s in in_trace}
    assert {"alliance.tracker", "alliance.attribution", "alliance.commission"} <= by_scope

    (request,) = [s for s in in_trace if s.name == "POST /v1/events"]
    assert request.kind is SpanKind.SERVER
    attribution = [s for s in in_trace if scope(s) == "alliance.attribution"]
    assert all(s.kind is SpanKind.CONSUMER for s in attribution)
    # attribution's batch links the tracker's request (the context in the record's headers)
    assert any(
        link.context.span_id == request.context.span_id for s in attribution for link in s.links
    )
    # and the commission's batch links an attribution batch: the outbox carried its context
    attribution_ids = {s.context.span_id for s in attribution if s.context is not None}
    assert any(
        link.context.span_id in attribution_ids
        for s in in_trace
        if scope(s) == "alliance.commission"
        for link in s.links
    )

    # the click: its redirect is a server span of the caller's trace, linked by a batch
    (click,) = [s for s in finished if s.name == "GET /r/{code}"]
    assert trace_of(click) == CLICK_TRACE
    assert any(
        link.context.span_id == click.context.span_id
        for s in finished
        if scope(s) == "alliance.attribution"
        for link in s.links
    )

    # the logs of the run: JSON lines, none holding a key, secret or cookie value
    lines = [orjson.loads(line) for line in log_lines.getvalue().splitlines() if line]
    assert lines, "the run logged nothing at INFO"
    text = log_lines.getvalue()
    for secret in (
        key,
        store.api_key,
        store.secret,
        settings.admin_token,
        settings.secret_key,
        cookie,
        admin(settings)["Authorization"],
    ):
        assert secret not in text
