"""What the tracker knows without a database: stores, affiliates, catalog, recent event ids.

All of it is read from Kafka into memory: the compacted ``directory`` topic (stores and
affiliates, published by the commission service) and ``catalog`` from the beginning, and the
storefront topics from ``now - dedup horizon`` so that a restarted tracker still recognises
duplicates. The feed keeps tailing, so several trackers converge on the same view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from shared.events import AffiliateEntry, StoreEntry, Topic, directory_adapter
from shared.kafka import partitions_of

log = logging.getLogger(__name__)


@dataclass
class Directory:
    stores: dict[str, StoreEntry] = field(default_factory=dict)
    affiliate_keys: dict[str, str] = field(default_factory=dict)  # key hash → affiliate id
    products: dict[str, set[str]] = field(default_factory=dict)  # store id → product ids
    _seen: dict[tuple[str, str], float] = field(default_factory=dict)  # (store, event id) → time
    _affiliate_key: dict[str, str] = field(default_factory=dict)  # affiliate id → key hash

    def apply_directory(self, raw: bytes) -> None:
        """Apply a directory entry. Entries of one principal share a Kafka key, so they arrive
        in the order they were published: the later one replaces the earlier, and a rotated
        affiliate key (the entry's previous hash) stops working here at once."""
        entry = directory_adapter.validate_json(raw)
        if isinstance(entry, StoreEntry):
            self.stores[entry.store_id] = entry
        elif isinstance(entry, AffiliateEntry):
            old = self._affiliate_key.get(entry.affiliate_id)
            if old is not None and self.affiliate_keys.get(old) == entry.affiliate_id:
                del self.affiliate_keys[old]
            self._affiliate_key[entry.affiliate_id] = entry.key_hash
            self.affiliate_keys[entry.key_hash] = entry.affiliate_id

    def apply_storefront(self, raw: bytes, now: float) -> None:
        """Remember the event id; a catalog event also adds its product."""
        data = orjson.loads(raw)
        store, event_id = data.get("store_id"), data.get("event_id")
        if isinstance(store, str) and isinstance(event_id, str):
            self._seen.setdefault((store, event_id), now)
        if data.get("type") == "product_upserted" and isinstance(store, str):
            self.products.setdefault(store, set()).add(str(data["product_id"]))

    def claim(self, store_id: str, event_id: str, now: float) -> bool:
        """True the first time (store, event id) is seen within the horizon."""
        key = (store_id, event_id)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True

    def release(self, store_id: str, event_id: str) -> None:
        """Forget a claim whose event could not be sent (so a retry is not a duplicate)."""
        self._seen.pop((store_id, event_id), None)

    def expire(self, older_than: float) -> None:
        self._seen = {k: t for k, t in self._seen.items() if t >= older_than}


class DirectoryFeed:
    """Tails the topics into a :class:`Directory`. :meth:`start` returns once caught up."""

    def __init__(
        self, bootstrap: str, prefix: str, directory: Directory, horizon: timedelta
    ) -> None:
        self.directory = directory
        self.horizon = horizon
        self.full = {f"{prefix}{Topic.DIRECTORY}", f"{prefix}{Topic.CATALOG}"}
        self.recent = {f"{prefix}{Topic.ORDERS}", f"{prefix}{Topic.PAGE_VIEWS}"}
        self.directory_topic = f"{prefix}{Topic.DIRECTORY}"
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._stopping = asyncio.Event()
        self.caught_up = False

    async def start(self, now: datetime) -> None:
        await self.consumer.start()
        wanted = sorted(self.full | self.recent)
        tps = await partitions_of(self.consumer, wanted)
        missing = set(wanted) - {tp.topic for tp in tps}
        if missing:
            raise RuntimeError(f"topics {sorted(missing)} do not exist: run `alliance stack up`")
        self.consumer.assign(tps)
        since_ms = int((now - self.horizon).timestamp() * 1000)
        recent = [tp for tp in tps if tp.topic in self.recent]
        found = await self.consumer.offsets_for_times({tp: since_ms for tp in recent})
        # explicit offsets: seek_to_beginning/end wait for the fetcher, ~0.5 s a call
        first = await self.consumer.beginning_offsets(tps)
        end = await self.consumer.end_offsets(tps)
        for tp in tps:
            hit = found.get(tp) if tp.topic in self.recent else None
            if tp.topic in self.full:
                self.consumer.seek(tp, first[tp])
            else:
                self.consumer.seek(tp, hit.offset if hit is not None else end[tp])
        while [tp for tp, off in end.items() if await self.consumer.position(tp) < off]:
            await self._poll(500)
        self.caught_up = True

    async def _poll(self, timeout_ms: int) -> None:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        now = time.time()
        for tp, records in batches.items():
            for rec in records:
                if rec.value is None:
                    continue
                try:
                    if tp.topic == self.directory_topic:
                        self.directory.apply_directory(rec.value)
                    else:
                        self.directory.apply_storefront(rec.value, rec.timestamp / 1000 or now)
                except (ValidationError, ValueError) as exc:
                    log.warning("directory feed skipped %s@%d: %s", tp, rec.offset, exc)

    async def run(self) -> None:
        last_sweep = time.time()
        try:
            while not self._stopping.is_set():
                await self._poll(200)
                if time.time() - last_sweep > 60:
                    self.directory.expire(time.time() - self.horizon.total_seconds())
                    last_sweep = time.time()
        finally:
            with contextlib.suppress(Exception):
                await self.consumer.stop()

    def stop(self) -> None:
        self._stopping.set()
