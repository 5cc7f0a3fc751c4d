"""What the tracker knows without a database: stores, affiliates, catalog, recent event ids.

All of it is read from Kafka into memory: the compacted ``directory`` topic (stores and
affiliates, published by the commission service) and ``catalog`` from the beginning, and the
storefront topics from ``now - dedup horizon`` so that a restarted tracker still recognises
duplicates. The feed keeps tailing, so several trackers converge on the same view. Stores,
affiliates and catalog are also kept in a local snapshot (:mod:`services.tracker.snapshot`),
so that a tracker restarted while Kafka is down serves redirects and links at once; the feed
catches up in the background when the broker is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from shared.clock import Clock
from shared.config import KafkaConnection
from shared.directory import DirectoryVersions, directory_key
from shared.events import AffiliateEntry, PartnerEntry, StoreEntry, Topic, directory_adapter
from shared.kafka import partitions_of
from shared.partners import Enrollment, PartnerStatus
from shared.periodic import wait_or
from shared.retry import Backoff

log = logging.getLogger(__name__)

#: a catch-up that receives nothing for this long while behind has lost the broker: retried
CATCH_UP_STALL_S = 10.0
#: how long the feed waits between attempts to reach Kafka (doubling up to the second)
RETRY_S = (0.5, 5.0)


class Claim(enum.Enum):
    """What :meth:`EventIds.claim` found for an event id."""

    NEW = "new"  #: the caller sends the event and must :meth:`~EventIds.settle` the claim
    SEEN = "seen"  #: Kafka acknowledged it within the horizon: a duplicate
    IN_FLIGHT = "in_flight"  #: another send of it has no outcome yet (:meth:`~EventIds.outcome`)


class EventIds:
    """The storefront event ids the tracker knows, per store: *seen* once Kafka acknowledged
    them (sent by this tracker, or read back from the topics), *in flight* while a send's
    outcome is unknown. An id is never seen before its acknowledgement, so a retry of an event
    whose send failed, or that the tracker never finished, is sent again, not answered
    ``duplicate``; and a second post of an id in flight waits for the first one's outcome
    rather than send it twice.

    Bounded: seen ids are kept in hourly buckets for the dedup horizon (plus the bucket under
    way) and at most ``max_ids`` of them; past that the oldest bucket is forgotten early
    (``forgotten``), which only means that a late duplicate is sent again: consumers
    deduplicate by event id in their database. An id is a 128-bit digest of (store, event id):
    a third of the memory of the strings, and a collision (~n²/2¹²⁹) is out of reach."""

    def __init__(self, horizon_s: float, max_ids: int, bucket_s: float = 3600.0) -> None:
        self.horizon_s = horizon_s
        self.max_ids = max_ids
        self.bucket_s = bucket_s
        self.forgotten = 0
        self._buckets: dict[int, set[int]] = {}  # hour number → digests seen in that hour
        self._count = 0
        self._in_flight: dict[int, asyncio.Future[bool]] = {}

    @staticmethod
    def _digest(store_id: str, event_id: str) -> int:
        raw = f"{len(store_id)}:{store_id}{event_id}".encode()  # unambiguous whatever the ids
        return int.from_bytes(hashlib.blake2b(raw, digest_size=16).digest(), "big")

    def __len__(self) -> int:
        return self._count

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _is_seen(self, digest: int) -> bool:
        return any(digest in bucket for bucket in self._buckets.values())

    def is_seen(self, store_id: str, event_id: str) -> bool:
        return self._is_seen(self._digest(store_id, event_id))

    def claim(self, store_id: str, event_id: str) -> Claim:
        """Claim an id for sending. :attr:`Claim.NEW` makes the caller its sender: it must
        :meth:`settle` the claim once Kafka answered (or the send was never queued)."""
        digest = self._digest(store_id, event_id)
        if digest in self._in_flight:
            return Claim.IN_FLIGHT
        if self._is_seen(digest):
            return Claim.SEEN
        self._in_flight[digest] = asyncio.get_running_loop().create_future()
        return Claim.NEW

    def outcome(self, store_id: str, event_id: str) -> asyncio.Future[bool]:
        """The outcome of the send in flight for this id: True once acknowledged, False if it
        failed. Await it with :func:`asyncio.wait` (never cancel it: others share it)."""
        return self._in_flight[self._digest(store_id, event_id)]

    def settle(self, store_id: str, event_id: str, acknowledged: bool, at: float) -> None:
        """End a :attr:`Claim.NEW`: acknowledged ids become seen (at ``at``), the others are
        forgotten so that a retry sends them."""
        digest = self._digest(store_id, event_id)
        if acknowledged:
            self._add(digest, at)
        waiting = self._in_flight.pop(digest, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(acknowledged)

    def seen(self, store_id: str, event_id: str, at: float) -> None:
        """An id read back from a topic (acknowledged, by this tracker or another)."""
        self._add(self._digest(store_id, event_id), at)

    def _add(self, digest: int, at: float) -> None:
        if self._is_seen(digest):
            return
        hour = int(at // self.bucket_s)
        bucket = self._buckets.get(hour)
        if bucket is None:
            if self._buckets and hour < min(self._buckets) and self._count >= self.max_ids:
                self.forgotten += 1  # older than what the bound already forgot
                return
            bucket = self._buckets[hour] = set()
        bucket.add(digest)
        self._count += 1
        while self._count > self.max_ids and len(self._buckets) > 1:
            self._drop(min(self._buckets), early=True)

    def _drop(self, hour: int, *, early: bool) -> None:
        bucket = self._buckets.pop(hour)
        self._count -= len(bucket)
        if early:
            self.forgotten += len(bucket)

    def expire(self, now: float) -> None:
        """Forget the hours that are wholly past the horizon."""
        oldest = int((now - self.horizon_s) // self.bucket_s)
        for hour in [h for h in self._buckets if h < oldest]:
            self._drop(hour, early=False)


@dataclass
class Directory:
    stores: dict[str, StoreEntry] = field(default_factory=dict)
    affiliate_keys: dict[str, str] = field(default_factory=dict)  # key hash → affiliate id
    products: dict[str, set[str]] = field(default_factory=dict)  # store id → product ids
    event_ids: EventIds = field(default_factory=lambda: EventIds(86_400.0, 1_000_000))
    #: the feed has read every topic up to where it ended when the feed (re)started: the
    #: principals are current and the event ids complete (until then they come from a
    #: snapshot, and storefront events wait: a duplicate could not be told)
    caught_up: bool = False
    #: bumped by every change of stores, affiliates or catalog (what a snapshot holds)
    version: int = 0
    _affiliate_key: dict[str, str] = field(default_factory=dict)  # affiliate id → key hash
    #: the entry version held per directory key: an older entry (a replay, or two relays'
    #: reordering) is ignored, never restoring a rotated secret or an exited store
    versions: DirectoryVersions = field(default_factory=DirectoryVersions)
    #: (store id, affiliate id) → the affiliate's standing with the store (partner approval)
    partners: dict[tuple[str, str], PartnerStatus] = field(default_factory=dict)

    def standing(self, store_id: str, affiliate_id: str) -> tuple[Enrollment, PartnerStatus | None]:
        """The store's enrollment mode (``open`` for a store not known) and the affiliate's
        status with it (None: never applied nor decided)."""
        store = self.stores.get(store_id)
        enrollment = store.enrollment if store is not None else Enrollment.OPEN
        return enrollment, self.partners.get((store_id, affiliate_id))

    def apply_directory(self, raw: bytes) -> None:
        """Apply a directory entry unless it is older than the one held for its principal
        (:mod:`shared.directory`): a newer one replaces it, and a rotated affiliate key (the
        entry's previous hash) stops working here at once."""
        entry = directory_adapter.validate_json(raw)
        if not self.versions.admit(entry):
            log.info(
                "directory entry %s version %d ignored: version %d held",
                directory_key(entry),
                entry.version,
                self.versions.held[directory_key(entry)],
            )
            return
        if isinstance(entry, StoreEntry):
            self.stores[entry.store_id] = entry
        elif isinstance(entry, AffiliateEntry):
            self._set_affiliate_key(entry.affiliate_id, entry.key_hash)
        elif isinstance(entry, PartnerEntry):
            self.partners[(entry.store_id, entry.affiliate_id)] = entry.status
        self.version += 1

    def _set_affiliate_key(self, affiliate_id: str, key_hash: str) -> None:
        old = self._affiliate_key.get(affiliate_id)
        if old is not None and self.affiliate_keys.get(old) == affiliate_id:
            del self.affiliate_keys[old]
        self._affiliate_key[affiliate_id] = key_hash
        self.affiliate_keys[key_hash] = affiliate_id

    def apply_storefront(self, raw: bytes, at: float, *, remember: bool = True) -> None:
        """Remember the event id (acknowledged: it is on the topic) unless not ``remember``
        (older than the dedup horizon: the catalog is read from its beginning); a catalog
        event also adds its product."""
        data = orjson.loads(raw)
        store, event_id = data.get("store_id"), data.get("event_id")
        if remember and isinstance(store, str) and isinstance(event_id, str):
            self.event_ids.seen(store, event_id, at)
        if data.get("type") == "product_upserted" and isinstance(store, str):
            products = self.products.setdefault(store, set())
            if (product := str(data["product_id"])) not in products:
                products.add(product)
                self.version += 1

    def snapshot(self) -> dict[str, Any]:
        """Stores, affiliates and catalog as JSON-able data (:meth:`restore` reads it back)."""
        return {
            "v": 1,
            "stores": [e.model_dump(mode="json") for e in self.stores.values()],
            "affiliates": dict(self._affiliate_key),
            "versions": dict(self.versions.held),
            "products": {store: list(ids) for store, ids in self.products.items()},
            "partners": [[s, a, status.value] for (s, a), status in self.partners.items()],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load what :meth:`snapshot` wrote, all or nothing (ValueError, ValidationError,
        KeyError or TypeError when it is not such data)."""
        if data.get("v") != 1:
            raise ValueError(f"unknown snapshot version {data.get('v')!r}")
        read = Directory(event_ids=self.event_ids)
        for raw in data["stores"]:
            entry = StoreEntry.model_validate(raw)
            read.stores[entry.store_id] = entry
        for affiliate_id, key_hash in dict(data["affiliates"]).items():
            read._set_affiliate_key(str(affiliate_id), str(key_hash))
        read.products = {str(s): {str(p) for p in ids} for s, ids in dict(data["products"]).items()}
        # none in a snapshot older than partner approval
        for store_id, affiliate_id, status in list(data.get("partners", [])):
            read.partners[(str(store_id), str(affiliate_id))] = PartnerStatus(status)
        held = dict(data.get("versions", {}))  # none in a snapshot older than the versions
        read.versions = DirectoryVersions({str(k): int(v) for k, v in held.items()})
        self._take(read)

    def adopt(self, fresh: Directory) -> None:
        """Take the principals and catalog of ``fresh`` (read from the topics up to their end)
        in one step: readers never see a half-read directory. Marks this one caught up."""
        self._take(fresh)
        self.caught_up = True

    def _take(self, other: Directory) -> None:
        self.stores, self.products = other.stores, other.products
        self.affiliate_keys, self._affiliate_key = other.affiliate_keys, other._affiliate_key
        self.versions = other.versions
        self.partners = other.partners
        self.version += 1


class DirectoryFeed:
    """Tails the topics into a :class:`Directory`, connecting (and reconnecting) on its own.

    :meth:`run` first catches up: it reads the directory and catalog from the beginning and
    the storefront topics from the dedup horizon into a fresh directory, up to their ends as
    they were when it started, then :meth:`Directory.adopt`\\ s it; until then the directory
    holds what a snapshot gave it. While Kafka cannot be reached it retries with backoff.
    ``attempted`` is set once the first attempt succeeded or failed (start-up waits on it)."""

    def __init__(
        self,
        kafka: KafkaConnection,
        prefix: str,
        directory: Directory,
        horizon: timedelta,
        clock: Clock,
    ) -> None:
        self.kafka = kafka
        self.clock = clock
        self.directory = directory
        self.horizon = horizon
        self.full = {f"{prefix}{Topic.DIRECTORY}", f"{prefix}{Topic.CATALOG}"}
        self.recent = {f"{prefix}{Topic.ORDERS}", f"{prefix}{Topic.PAGE_VIEWS}"}
        self.directory_topic = f"{prefix}{Topic.DIRECTORY}"
        self.consumer: AIOKafkaConsumer | None = None
        self.attempted = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    def caught_up(self) -> bool:
        return self.directory.caught_up

    async def catch_up(self, now: datetime) -> None:
        """Connect, read every topic up to its current end into a fresh directory, adopt it.
        Raises when Kafka cannot be reached or stops answering (:data:`CATCH_UP_STALL_S`)."""
        self.consumer = consumer = AIOKafkaConsumer(
            **self.kafka.client_options(), enable_auto_commit=False
        )
        await consumer.start()
        wanted = sorted(self.full | self.recent)
        tps = await partitions_of(consumer, wanted)
        missing = set(wanted) - {tp.topic for tp in tps}
        if missing:
            raise RuntimeError(f"topics {sorted(missing)} do not exist: run `alliance stack up`")
        consumer.assign(tps)
        since_ms = int((now - self.horizon).timestamp() * 1000)
        recent = [tp for tp in tps if tp.topic in self.recent]
        found = await consumer.offsets_for_times({tp: since_ms for tp in recent})
        # explicit offsets: seek_to_beginning/end wait for the fetcher, ~0.5 s a call
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            hit = found.get(tp) if tp.topic in self.recent else None
            if tp.topic in self.full:
                consumer.seek(tp, first[tp])
            else:
                consumer.seek(tp, hit.offset if hit is not None else end[tp])
        # the event ids go straight to the live memory (it only grows); the principals and
        # catalog to a fresh directory, adopted whole once read
        fresh = Directory(event_ids=self.directory.event_ids)
        last_progress = time.monotonic()
        while [tp for tp, off in end.items() if await consumer.position(tp) < off]:
            if await self._poll(consumer, fresh, 500):
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > CATCH_UP_STALL_S:
                raise TimeoutError(f"catch-up stalled for {CATCH_UP_STALL_S:.0f}s")
        self.directory.adopt(fresh)

    async def _poll(self, consumer: AIOKafkaConsumer, into: Directory, timeout_ms: int) -> int:
        """Apply what one fetch brings to ``into``; returns how many records it brought."""
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        now = time.time()
        horizon = now - self.horizon.total_seconds()
        count = 0
        for tp, records in batches.items():
            count += len(records)
            for rec in records:
                if rec.value is None:
                    continue
                try:
                    if tp.topic == self.directory_topic:
                        into.apply_directory(rec.value)
                    else:
                        at = rec.timestamp / 1000 or now
                        into.apply_storefront(rec.value, at, remember=at >= horizon)
                except (ValidationError, ValueError) as exc:
                    log.warning("directory feed skipped %s@%d: %s", tp, rec.offset, exc)
        return count

    async def run(self) -> None:
        """Catch up (retrying while Kafka is away), then tail until :meth:`stop`. A failure
        while tailing raises (the supervisor starts it again: it catches up afresh)."""
        try:
            while not self._stopping.is_set():
                # not caught up yet, or started again after a failure closed the consumer
                if not self.directory.caught_up or self.consumer is None:
                    await self._catch_up_retrying()
                    continue
                await self._poll(self.consumer, self.directory, 200)
        finally:
            self.attempted.set()
            await self._close()

    async def _catch_up_retrying(self) -> None:
        """Catch up; until that works (or :meth:`stop`), try again with backoff, the
        directory serving what it holds meanwhile."""
        backoff = Backoff(*RETRY_S)
        while not self._stopping.is_set():
            try:
                await self.catch_up(self.clock.now())
            except Exception as exc:  # unreachable, or lost during the catch-up
                delay = backoff.next()
                log.warning(
                    "directory feed cannot catch up (%s: %s); serving %s, retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    "the snapshot" if self.directory.version else "an empty directory",
                    delay,
                )
                await self._close()
                self.attempted.set()
                await wait_or(self._stopping, delay)
                continue
            self.attempted.set()
            log.info("directory feed caught up")
            return

    async def _close(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            self.consumer = None

    def stop(self) -> None:
        self._stopping.set()
