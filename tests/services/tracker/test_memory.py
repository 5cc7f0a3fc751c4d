"""The tracker's memory is bounded: what it remembers per click or per address expires and is
capped by configuration, and a million first-time clicks through its use case leave its
memory under a stated bound."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tracker import quality
from services.tracker.directory import Directory
from services.tracker.links import Link, LinkSigner
from services.tracker.quality import (
    BOT_CACHE_SIZE,
    MAX_USER_AGENT,
    Expiring,
    FloodGuard,
    SelfReferral,
    is_bot,
)
from services.tracker.service import TrackerService, append_query
from services.tracker.spool import ClickSpool
from shared.clock import FixedClock
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[3]


class TestExpiring:
    def test_an_entry_lives_at_least_a_span_after_its_last_write_and_at_most_two(self) -> None:
        memory: Expiring[str, int] = Expiring(span_s=60, max_keys=100)
        memory.put("a", 1, now=0)
        assert memory.get("a", now=59) == 1
        memory.put("b", 2, now=70)  # the swap at 70 moved "a" to the previous generation
        assert memory.get("a", now=119) == 1
        assert memory.get("a", now=130) is None  # the next swap dropped it
        assert memory.get("b", now=130) == 2

    def test_an_idle_memory_is_emptied_by_the_sweeps(self) -> None:
        memory: Expiring[int, int] = Expiring(span_s=60, max_keys=10_000)
        for n in range(1000):
            memory.put(n, n, now=0)
        memory.sweep(now=61)
        memory.sweep(now=122)
        assert len(memory) == 0

    def test_past_max_keys_the_older_generation_is_forgotten_early(self) -> None:
        memory: Expiring[int, int] = Expiring(span_s=3600, max_keys=1000)
        for n in range(10_000):
            memory.put(n, n, now=0)
        assert len(memory) <= 1000
        assert memory.get(9_999, now=0) == 9_999
        assert memory.forgotten == 10_000 - len(memory)


class TestFloodGuard:
    def test_more_than_the_limit_in_a_sliding_minute_is_a_flood(self) -> None:
        guard = FloodGuard(limit=3)
        assert [guard.flooded("l", ["v"], t) for t in (0, 10, 20, 30)] == [False] * 3 + [True]
        assert not guard.flooded("l", ["v"], 71)  # 20, 30, 71: 0 and 10 slid out
        assert guard.hit("l", "v", 130) == 2  # 71 and 130
        assert guard.hit("l", "v", 190) == 1  # a click exactly a minute old (130) is out

    def test_each_link_and_each_key_count_apart(self) -> None:
        guard = FloodGuard(limit=1)
        assert not guard.flooded("l1", ["v:1", "ip:a"], 0)
        assert not guard.flooded("l2", ["v:1", "ip:a"], 1)
        assert guard.flooded("l1", ["v:2", "ip:a"], 2)  # the address, on l1, twice

    def test_a_counter_is_forgotten_a_minute_or_two_after_its_last_click(self) -> None:
        guard = FloodGuard(limit=10)
        for n in range(10_000):
            guard.hit("l", f"ip:{n}", now=n / 1000)
        guard.sweep(now=70)
        guard.sweep(now=140)
        assert len(guard) == 0

    def test_the_counters_are_bounded_by_configuration(self) -> None:
        guard = FloodGuard(limit=10, max_keys=5_000)
        for n in range(50_000):
            guard.hit("l", f"ip:{n}", now=0)
        assert len(guard) <= 5_000
        assert guard.forgotten > 0

    def test_a_counter_keeps_at_most_limit_plus_one_times(self) -> None:
        guard = FloodGuard(limit=2)
        counts = [guard.hit("l", "v", float(t)) for t in range(100)]
        assert counts == [1, 2, 3] + [3] * 97


class TestSelfReferral:
    def test_an_address_is_remembered_for_a_day_then_forgotten(self) -> None:
        memory = SelfReferral()
        memory.saw("a1", "198.51.100.7", now=0)
        assert memory.is_self("a1", "198.51.100.7", now=86_400)
        assert not memory.is_self("a1", "198.51.100.7", now=86_401)
        assert not memory.is_self("a2", "198.51.100.7", now=10)
        memory.sweep(now=86_401)
        memory.sweep(now=2 * 86_401)
        assert len(memory) == 0

    def test_the_addresses_are_bounded_by_configuration(self) -> None:
        memory = SelfReferral(max_keys=1_000)
        for n in range(10_000):
            memory.saw("a1", f"10.0.{n // 256}.{n % 256}", now=0)
        assert len(memory) <= 1_000


class TestBotCheck:
    def test_the_bot_patterns_never_see_more_than_512_characters(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[int] = []
        real = quality.crawleruseragents.is_crawler

        def spy(user_agent: str) -> bool:
            seen.append(len(user_agent))
            return bool(real(user_agent))

        monkeypatch.setattr(quality.crawleruseragents, "is_crawler", spy)
        quality._is_bot.cache_clear()
        assert not is_bot("Mozilla/5.0 (X11; Linux x86_64) " + "x" * 100_000)
        assert is_bot("Googlebot/2.1 " + "y" * 10_000)
        assert seen
        assert max(seen) == MAX_USER_AGENT

    def test_the_bot_cache_is_bounded(self) -> None:
        info = quality._is_bot.cache_info()
        assert info.maxsize == BOT_CACHE_SIZE
        assert info.currsize <= BOT_CACHE_SIZE


def _reference_append_query(url: str, params: dict[str, str]) -> str:
    """What the redirect wrote before the landing split was cached: parse, add, re-encode."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


@given(
    st.sampled_from(["https://s.example/item/p1", "http://a/b;x", "//a", "https://u@h:8/p"]),
    st.text(max_size=20),
    st.text(max_size=10),
    st.text(st.characters(codec="ascii"), min_size=0, max_size=40),
)
def test_the_cached_landing_split_writes_what_urlencode_writes(
    base: str, query: str, fragment: str, visitor: str
) -> None:
    url = base + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")
    params = {"alliance_vid": visitor, "alliance_click": "019abc"}
    assert append_query(url, params) == _reference_append_query(url, params)


# -- a million first-time clicks ----------------------------------------------------------

#: clicks driven through the use case
CLICKS = 1_000_000
#: the stated bound: growth of the process's memory peak (VmHWM) over its resident size
#: after a warm-up, for a million first-time clicks from distinct addresses at 1,000 a second
#: (simulated time). Before the memories expired and were bounded, 100,000 such clicks grew
#: it by ~210 MB (two deques a click).
BOUND_MB = 48


class AckingProducer:
    """Kafka acknowledging every click at once (the batches the tracker's click producer
    hands it, :class:`~services.tracker.clickproducer.ClickBatcher`)."""

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> AckingProducer:
        return self  # a batch that holds nothing

    def append(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        timestamp: int | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> bool:
        return True

    def close(self) -> None:
        pass

    async def send_batch(
        self, batch: object, topic: str, *, partition: int
    ) -> asyncio.Future[None]:
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)


BROWSERS = [
    f"Mozilla/5.0 ({system}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
    for system in ("Windows NT 10.0; Win64; x64", "X11; Linux x86_64", "Macintosh; Intel Mac OS X")
    for v in range(120, 132)
]


async def drive(clicks: int) -> dict[str, Any]:
    """Drive ``clicks`` first-time clicks (no cookie, each from its own address) through
    :meth:`TrackerService.follow`, 1,000 a second on the tracker's clock, over 1,000 links;
    affiliates fetch links from new addresses now and then, and one click in 2,000 carries a
    hostile 2,000-character user agent of its own. The event loop runs between clicks now
    and then (as between requests), and the tracker's sweeper runs on its timer."""
    from services.tracker.app import memory_sweeper

    clock = FixedClock(datetime(2026, 11, 1, tzinfo=UTC))
    config = Settings(env="dev", tracker_sweep_interval_s=0.2)
    signer = LinkSigner.from_config(config.link_keys)
    service = TrackerService(
        config,
        signer,
        producer=cast(Any, AckingProducer()),
        clock=clock,
        directory=Directory(caught_up=True),
        spool=cast(ClickSpool, None),
    )
    codes = [signer.sign(Link(f"a{n % 100}", f"s{n % 10}", f"p{n}")) for n in range(1000)]
    periodic = memory_sweeper(service, clock)
    sweeper = asyncio.ensure_future(periodic.run())

    async def click(n: int) -> None:
        clock.advance(timedelta(milliseconds=1))
        hostile = n % 2000 == 0
        ua = f"Mozilla/5.0 {n} " + "z" * 2000 if hostile else BROWSERS[n % len(BROWSERS)]
        ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        await service.follow(
            codes[n % len(codes)], visitor_cookie=None, record=True, ip=ip, user_agent=ua
        )
        if n % 100 == 0:  # an affiliate at work, from an address of its own
            at = clock.now().timestamp()
            service.self_referral.saw(f"a{n % 100}", f"192.0.{n >> 8 & 255}.{n & 255}", at)
        if n % 500 == 0:
            await asyncio.sleep(0)

    for n in range(20_000):  # warm-up: caches, the first generations, the allocator
        await click(-n - 1)
    gc.collect()
    before = _status_mb("VmRSS")
    start = time.monotonic()
    for n in range(clicks):
        await click(n)
    seconds = time.monotonic() - start
    periodic.stop()
    await sweeper
    return {
        "clicks": clicks,
        "seconds": seconds,
        "rss_before_mb": before,
        "hwm_mb": _status_mb("VmHWM"),
        "flood_counters": len(service.flood),
        "self_referral": len(service.self_referral),
        "bot_cache": quality._is_bot.cache_info().currsize,
        "recorded": service.metrics["clicks"],
    }


def test_a_million_first_time_clicks_grow_the_tracker_by_less_than_the_bound() -> None:
    """In a fresh interpreter, so that the peak is this run's and no memory freed by an
    earlier test hides growth."""
    script = f"import asyncio, json; from {__name__} import drive; "
    script += f"print(json.dumps(asyncio.run(drive({CLICKS}))))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(done.stdout.splitlines()[-1])
    growth = run["hwm_mb"] - run["rss_before_mb"]
    logging.getLogger(__name__).warning(  # the figures, shown by pytest -rA
        f"{run['clicks']:,} clicks in {run['seconds']:.1f}s "
        f"({run['clicks'] / run['seconds']:,.0f}/s): peak {run['hwm_mb']:.0f} MB, "
        f"{growth:+.1f} MB over the warmed-up {run['rss_before_mb']:.0f} MB; {run}"
    )
    assert run["recorded"] == CLICKS + 20_000
    assert growth < BOUND_MB, run
    # what is kept: two minutes of counters at most (1,000 distinct addresses a second)
    assert run["flood_counters"] <= 2 * 60 * 1000 + 1000
    assert run["bot_cache"] <= BOT_CACHE_SIZE
