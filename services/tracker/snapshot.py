"""The tracker's local snapshot of the directory and catalog, so that it starts without Kafka.

A tracker restarted while the broker is down cannot read the ``directory`` and ``catalog``
topics; from this file it still knows the stores (landing pages, webhook-secret versions),
the affiliates' key hashes and the catalog, so redirects land where they should and go to the
click spool, and links can be issued. The file holds what the topics hold (key *hashes*, no
secret) and is replaced atomically (written aside, fsynced, renamed): a crash leaves the old
snapshot or the new one, never half of one. It is written when the directory changed, at most
every ``every_s``, and at shutdown; never before the feed has caught up (until then the
directory *is* the snapshot).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import orjson
from pydantic import ValidationError

from services.tracker.directory import Directory
from shared.periodic import Periodic

log = logging.getLogger(__name__)


class Snapshot:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.written_version: int | None = None  # the directory version on disk

    def load(self, directory: Directory) -> bool:
        """Fill ``directory`` from the file; False (and a warning) when there is none or it
        cannot be read: the tracker then starts empty and waits for the feed."""
        try:
            data = orjson.loads(self.path.read_bytes())
            directory.restore(data)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, ValidationError, TypeError, KeyError) as exc:
            log.warning("tracker snapshot %s unreadable (%s); ignored", self.path, exc)
            return False
        self.written_version = directory.version
        log.info(
            "tracker snapshot loaded: %d stores, %d affiliates, %d stores' catalogs",
            len(directory.stores),
            len(directory.affiliate_keys),
            len(directory.products),
        )
        return True

    def due(self, directory: Directory) -> bool:
        return directory.caught_up and directory.version != self.written_version

    async def write(self, directory: Directory) -> None:
        """Replace the file with the directory as it is now (the file I/O off the loop)."""
        version = directory.version
        data = orjson.dumps(directory.snapshot())
        await asyncio.to_thread(self._replace, data)
        self.written_version = version

    def _replace(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        aside = self.path.with_name(f".{self.path.name}.tmp")
        with aside.open("wb") as file:
            aside.chmod(0o600)  # key hashes: not for other users' eyes
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(aside, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)


def snapshot_writer(snapshot: Snapshot, directory: Directory, every_s: float) -> Periodic:
    """Writes the snapshot whenever the directory changed, at most every ``every_s``, and
    once more on the way out. A failed write is logged and retried next turn."""

    async def write_if_due() -> None:
        if snapshot.due(directory):
            await snapshot.write(directory)

    return Periodic("snapshot", write_if_due, interval_s=every_s, final=True)
