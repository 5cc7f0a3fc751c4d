"""A bounded on-disk spool for clicks that Kafka did not acknowledge in time.

Appends are group-fsynced: concurrent appends wait for one ``fsync`` that covers them all,
so a redirect is answered only once its click is on disk. A drainer sends spooled clicks when
Kafka is back and deletes a segment only after every click in it was acknowledged. Consumers
deduplicate by click id, so a click that reached Kafka *and* the spool is counted once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from shared.periodic import Periodic

log = logging.getLogger(__name__)


class SpoolFull(Exception):
    """The spool reached its bound: the click cannot be made durable."""


class ClickSpool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self.active = directory / "active.jsonl"
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flush_lock = asyncio.Lock()
        self._size = sum(p.stat().st_size for p in self.segments()) + self._active_size()

    def _active_size(self) -> int:
        return self.active.stat().st_size if self.active.exists() else 0

    @property
    def depth_bytes(self) -> int:
        return self._size

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("segment-*.jsonl"))

    async def append(self, record: bytes) -> None:
        """Return once ``record`` (one JSON line) is fsynced; :class:`SpoolFull` past the bound."""
        line = record.rstrip(b"\n") + b"\n"
        if self._size + len(line) > self.max_bytes:
            raise SpoolFull(f"click spool is full ({self._size} bytes)")
        self._size += len(line)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((line, done))
        async with self._flush_lock:
            if self._pending:  # a previous holder may have flushed ours already
                batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self._write, b"".join(line for line, _ in batch))
                except Exception as exc:
                    for _, fut in batch:
                        fut.set_exception(exc)
                else:
                    for _, fut in batch:
                        fut.set_result(None)
        await done

    def _write(self, data: bytes) -> None:
        fd = os.open(self.active, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def drain(self, send: Callable[[list[bytes]], Awaitable[None]]) -> int:
        """Seal the active file into a segment, send every segment (``send`` must return only
        once Kafka acknowledged all), delete what was sent. Returns how many were sent."""
        async with self._flush_lock:
            if self.active.exists() and self._active_size():
                self.active.rename(self.directory / f"segment-{time.time_ns():020d}.jsonl")
        sent = 0
        for segment in self.segments():
            records = [r for r in segment.read_bytes().split(b"\n") if r]
            await send(records)
            size = segment.stat().st_size
            segment.unlink()
            self._size -= size
            sent += len(records)
        return sent


def spool_drainer(
    spool: ClickSpool, send: Callable[[list[bytes]], Awaitable[None]], every_s: float = 1.0
) -> Periodic:
    """Drains the spool every ``every_s`` (when it holds anything); a failed drain is logged
    and tried again next turn."""

    async def drain() -> None:
        if spool.depth_bytes:
            sent = await spool.drain(send)
            if sent:
                log.info("sent %d spooled clicks", sent)

    return Periodic("spool-drainer", drain, interval_s=every_s)
