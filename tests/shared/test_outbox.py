"""The outbox relay's loop: a commit's poke always leads to a drain, however it interleaves
with a drain under way (the database and Kafka sides are scripted here; the integration tests
run the relay on the real ones)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from shared.outbox import OutboxRelay


class ScriptedRelay(OutboxRelay):
    """``drain_once`` publishes what is pending; an empty drain first waits on ``gate`` (so
    a test can commit and poke between the claim that found nothing and the drain's end)."""

    def __init__(self) -> None:
        super().__init__(cast(Any, None), cast(Any, None), cast(Any, None), idle_s=30.0)
        self.pending: list[str] = []
        self.sent: list[str] = []
        self.gate: asyncio.Event | None = None
        self.at_gate = asyncio.Event()
        self.published_some = asyncio.Event()

    async def drain_once(self, limit: int = 1000) -> int:
        if self.pending:
            n = len(self.pending)
            self.sent += self.pending
            self.pending = []
            self.published_some.set()
            return n
        if self.gate is not None:
            gate, self.gate = self.gate, None
            self.at_gate.set()
            await gate.wait()
        return 0


async def test_a_poke_during_an_empty_drain_is_not_lost() -> None:
    relay = ScriptedRelay()
    gate = relay.gate = asyncio.Event()
    task = asyncio.create_task(relay.run())
    await asyncio.wait_for(relay.at_gate.wait(), 5)
    relay.pending.append("committed after the claim")  # a commit, then its poke
    relay.poke()
    gate.set()
    try:
        # the idle wait is 30 s: only the poke gets the row out within 5
        await asyncio.wait_for(relay.published_some.wait(), 5)
        assert relay.sent == ["committed after the claim"]
    finally:
        relay.stop()
        await asyncio.wait_for(task, 5)


async def test_stop_publishes_what_is_pending() -> None:
    relay = ScriptedRelay()
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(0.05)
    relay.pending += ["a", "b"]
    relay.stop()
    await asyncio.wait_for(task, 5)
    assert relay.sent == ["a", "b"]
