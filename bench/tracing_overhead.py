"""What traces cost per event, off and on (docs/logs-and-traces.md, "Overhead").

An event's trip through the project's tracing hooks, in-process, no I/O: the storefront's
request through the ASGI middleware (:class:`shared.tracing.TracedRequests`, around an app
that does nothing; off, :func:`shared.tracing.instrument` adds no middleware at all), the record's headers at the producer (:func:`shared.tracing.kafka_headers`,
what :class:`shared.kafka.TracedProducer` and the click batcher call), and its share of a
consumer batch's span (:func:`shared.tracing.batch_span` over ``BATCH`` records, each with a
context of its own, with the log fields bound as the pipeline binds them). Each is timed three ways: without the hook
(the floor), with traces off, and with traces on into the SDK's in-memory exporter (every
span kept: the worst case of sampling). The off cost is what every deployment pays.

    python -m bench.tracing_overhead [events]

Prints the cost per event in nanoseconds and ends with one verdict line: off must cost under
``OFF_BUDGET_NS`` per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import Message, Receive, Scope, Send

from shared import logs, tracing

#: records per consumer batch (the deployment's default ALLIANCE_CONSUMER_BATCH_SIZE)
BATCH = 1000
#: the most traces off may cost per event, in nanoseconds
OFF_BUDGET_NS = 500
SCOPE: Scope = {
    "type": "http",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/events",
    "headers": [(b"content-type", b"application/json")],
}


async def _nothing(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _send(message: Message) -> None:
    return None


async def requests(n: int, app: Callable[..., Any]) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await app(SCOPE, _receive, _send)
    return time.perf_counter() - started


def produce(n: int, hooked: bool) -> float:
    started = time.perf_counter()
    if hooked:
        for _ in range(n):
            tracing.kafka_headers()
    else:
        for _ in range(n):
            pass
    return time.perf_counter() - started


def consume(n: int, hooked: bool, headers: list[Any]) -> float:
    started = time.perf_counter()
    for _ in range(n // BATCH):
        if hooked:
            span = (
                tracing.batch_span("bench", "bench", headers)
                if tracing.ENABLED
                else tracing.NO_SPAN
            )
            with span, logs.bound(consumer="bench"):
                pass
        else:
            with contextlib.nullcontext():
                pass
    return time.perf_counter() - started


def measure(n: int) -> dict[str, float]:
    """Seconds for ``n`` events, per stage: the floor, then hooked (as configured now)."""
    # as tracing.instrument builds an app: the middleware only when traces are on
    traced = tracing.TracedRequests(_nothing, service="bench") if tracing.ENABLED else _nothing
    headers = []  # each record from a request of its own (a click each): a context each
    for _ in range(BATCH):
        with (
            tracing.tracer("bench").start_as_current_span("producer")
            if tracing.ENABLED
            else contextlib.nullcontext()
        ):
            headers.append(tracing.kafka_headers())
    return {
        "request floor": asyncio.run(requests(n, _nothing)),
        "request": asyncio.run(requests(n, traced)),
        "produce floor": produce(n, hooked=False),
        "produce": produce(n, hooked=True),
        "consume floor": consume(n, hooked=False, headers=headers),
        "consume": consume(n, hooked=True, headers=headers),
    }


def per_event_ns(times: dict[str, float], n: int) -> dict[str, float]:
    return {
        stage: max(0.0, (times[stage] - times[f"{stage} floor"]) / n * 1e9)
        for stage in ("request", "produce", "consume")
    }


def best_of(runs: int, n: int) -> dict[str, float]:
    results = [measure(n) for _ in range(runs)]
    return {k: min(r[k] for r in results) for k in results[0]}


def main(argv: list[str]) -> int:
    n = int(argv[1]) if len(argv) > 1 else 20_000
    n -= n % BATCH
    measure(BATCH)  # warm up
    off = per_event_ns(best_of(5, n), n)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        measure(BATCH)
        on = per_event_ns(best_of(3, n), n)
    finally:
        tracing.uninstall()
    print(f"{n} events; per event, above the floor (ns)")
    print(f"{'stage':10} {'off':>10} {'on':>10}")
    for stage in off:
        print(f"{stage:10} {off[stage]:10.0f} {on[stage]:10.0f}")
    total_off, total_on = sum(off.values()), sum(on.values())
    print(f"{'total':10} {total_off:10.0f} {total_on:10.0f}")
    ok = total_off < OFF_BUDGET_NS
    print(
        f"verdict: {'PASS' if ok else 'FAIL'}: traces off cost {total_off:.0f} ns per event "
        f"(budget {OFF_BUDGET_NS} ns), on {total_on / 1000:.1f} µs per event "
        "(every span kept, in-memory exporter)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
