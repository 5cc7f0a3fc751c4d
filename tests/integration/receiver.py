"""A webhook receiver on loopback for the tests: records every request (with when it
arrived), answers 500 to its first ``fail_first`` ones (or while ``down``), then 200, with
``body``; counts the requests it holds at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str  # path and query
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float = 0.0  # time.monotonic() on arrival


@dataclass
class Receiver:
    """Answers 500 to its first ``fail_first`` requests (or while ``down``), then 200."""

    fail_first: int = 0
    down: bool = False
    #: answer with this status instead (e.g. a redirect), with ``Location: <redirect_to>``
    status: int | None = None
    redirect_to: str = ""
    #: wait this long before answering
    delay_s: float = 0.0
    #: the body of every answer
    body: bytes = b""
    #: requests being answered now, and the most at once
    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self) -> int:
        if self.status is not None:
            return self.status
        with self.lock:
            failing = self.down or len(self.requests) < self.fail_first
            return 500 if failing else 200

    def delivered(self, path_prefix: str = "/") -> list[Received]:
        with self.lock:
            return [
                r for r in self.requests if r.answered == 200 and r.path.startswith(path_prefix)
            ]

    def event_ids(self, path_prefix: str = "/") -> list[str]:
        return [r.headers["alliance-event-id"] for r in self.delivered(path_prefix)]


@contextmanager
def receiver(**kwargs: Any) -> Iterator[Receiver]:
    state = Receiver(**kwargs)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            arrived = time.monotonic()
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self._answer(arrived)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _answer(self, arrived: float) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            code = state.answer()
            with state.lock:
                state.requests.append(
                    Received(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        code,
                        arrived,
                    )
                )
            if state.delay_s:
                time.sleep(state.delay_s)
            self.send_response(code)
            if state.redirect_to:
                self.send_header("Location", state.redirect_to)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        do_POST = _handle
        do_GET = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
