"""Fuzzing the in-process services from a thread of its own.

The services run on the test's event loop, with their lifespans (Kafka producer, consumers,
database pool) — as :func:`tests.integration.harness.running` starts them. A fuzzer (Hypothesis,
schemathesis) is synchronous and runs in a worker thread; schemathesis' ASGI transport even
runs the app on an event loop of its own. :class:`LoopBridge` is the ASGI app those tools are
given: it reads the request where it is called and serves it with the real app on the test's
loop, so everything the request touches stays on the loop that owns it.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.secrets import signature_header
from tests.integration.harness import Store

T = TypeVar("T")

#: the marks of every fuzz test: on the real stack; Hypothesis draws in the fuzzer's thread
#: while the services' own tasks use `random` on the loop's thread, which Hypothesis cannot
#: tell apart from a strategy that uses it; hostile values make long reprs on purpose
FUZZ_MARKS = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Do not use the `random` module"),
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

#: the routes a store signs (``X-Alliance-Store`` / ``X-Alliance-Signature``)
SIGNED_PATHS = ("/v1/events", "/v1/clicks")


def signing(store: Store) -> Callable[[Scope, bytes], Scope]:
    """A request rewriter that signs ``SIGNED_PATHS`` requests as ``store``, over the raw body
    as sent: the fuzzed body then reaches the event checks instead of stopping at ``401``."""

    def sign(scope: Scope, body: bytes) -> Scope:
        if scope["path"] not in SIGNED_PATHS:
            return scope
        signed = {b"x-alliance-store", b"x-alliance-signature"}
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in signed]
        headers += [
            (b"x-alliance-store", store.store_id.encode()),
            (
                b"x-alliance-signature",
                signature_header(store.secret, int(time.time()), body).encode(),
            ),
        ]
        return {**scope, "headers": headers}

    return sign


@dataclass
class LoopBridge:
    """An ASGI app, callable on any event loop, that serves every HTTP request with ``app`` on
    ``loop``. An exception the app raises becomes a ``500`` for the caller (a fuzzer judges
    statuses) and is kept, with its traceback, in ``errors``."""

    app: ASGIApp
    loop: asyncio.AbstractEventLoop
    rewrite: Callable[[Scope, bytes], Scope] | None = None
    errors: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # refused before any message: "no lifespan support" (the app's own already runs)
            raise RuntimeError("the bridged app's lifespan runs on the test's loop")
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if self.rewrite is not None:
            scope = self.rewrite(scope, body)
        sent = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._serve(scope, body), self.loop)
        )
        for message in sent:
            await send(message)

    async def _serve(self, scope: Scope, body: bytes) -> list[Message]:
        sent: list[Message] = []
        done = asyncio.Event()
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        try:
            await self.app(dict(scope), receive, send)
        except Exception:
            target = f"{scope['method']} {scope['path']}?{scope['query_string']!r}"
            self.errors.append(f"{target[:300]}\n{traceback.format_exc()}")
            if not sent:
                sent = [
                    {"type": "http.response.start", "status": 500, "headers": []},
                    {"type": "http.response.body", "body": b"Internal Server Error"},
                ]
        finally:
            done.set()
        return sent

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the test's loop from the fuzzer's thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
