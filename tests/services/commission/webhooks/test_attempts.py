"""Every attempt of a delivery is kept (append-only), on a real PostgreSQL with a receiver on
loopback: when, the status code, the latency, the error and the first 1 KiB of the answer's
body; an owner sees only its own deliveries' attempts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.commission.core.webhooks import OwnerKind
from services.commission.errors import NotFound
from services.commission.webhooks.service import Owner
from shared.config import Settings
from tests.services.commission.webhooks.test_worker import AFFILIATE, T0, notice, world

pytestmark = pytest.mark.integration


class TestAttemptHistory:
    async def test_three_failures_then_a_success_show_four_attempts(
        self, settings: Settings
    ) -> None:
        async with world(settings, fail_first=3, body=b'{"received": true}') as (w, hooks):
            mine = await w.register(AFFILIATE, hooks.url("/a"))
            await w.notify([notice("o-1", 0)])
            worker = w.worker()
            try:
                for _ in range(4):
                    assert await worker.run_once() == 1
                    w.clock.advance(timedelta(minutes=1))  # past both backoffs
                assert await worker.run_once() == 0
            finally:
                await worker.close()
            [delivery] = await w.log(AFFILIATE, mine)
            assert (delivery.status, delivery.attempts) == ("delivered", 4)
            async with w.sessions() as s, s.begin():
                attempts = await w.service.attempts(s, AFFILIATE, mine, delivery.id, None, 100)
            assert [a.attempt for a in attempts] == [4, 3, 2, 1]  # newest first
            assert [a.status_code for a in attempts] == [200, 500, 500, 500]
            assert [a.error for a in attempts] == [None, "HTTP 500", "HTTP 500", "HTTP 500"]
            assert [a.at for a in attempts] == [T0 + timedelta(minutes=m) for m in (3, 2, 1, 0)]
            assert {a.response_body for a in attempts} == {'{"received": true}'}
            assert all(a.latency_ms >= 0 for a in attempts)
            assert len(hooks.requests) == 4
            # keyset pages
            async with w.sessions() as s, s.begin():
                first = await w.service.attempts(s, AFFILIATE, mine, delivery.id, None, 3)
                rest = await w.service.attempts(s, AFFILIATE, mine, delivery.id, first[-1].id, 3)
            assert [a.attempt for a in first + rest] == [4, 3, 2, 1]

    async def test_an_attempt_keeps_only_the_first_kib_of_the_answers_body(
        self, settings: Settings
    ) -> None:
        body = ("a" + "é" * 3000).encode()  # 6,001 bytes; the 1,024th is half of an é
        async with world(settings, body=body) as (w, hooks):
            mine = await w.register(AFFILIATE, hooks.url("/a"))
            await w.notify([notice("o-1", 0)])
            worker = w.worker()
            try:
                assert await worker.run_once() == 1
            finally:
                await worker.close()
            [delivery] = await w.log(AFFILIATE, mine)
            async with w.sessions() as s, s.begin():
                [attempt] = await w.service.attempts(s, AFFILIATE, mine, delivery.id, None, 10)
            assert attempt.status_code == 200
            assert attempt.response_body == "a" + "é" * 511 + "\ufffd"
            assert len(attempt.response_body.encode()) <= 1024 + 2  # the cut byte, replaced

    async def test_an_owner_never_reads_another_owners_attempts(self, settings: Settings) -> None:
        other = Owner(OwnerKind.AFFILIATE, "aff-2")
        async with world(settings) as (w, hooks):
            mine = await w.register(AFFILIATE, hooks.url("/a"))
            theirs = await w.register(other, hooks.url("/b"))
            await w.notify([notice("o-1", 0), notice("o-2", 0, affiliate="aff-2")])
            worker = w.worker()
            try:
                assert await worker.run_once() == 2
            finally:
                await worker.close()
            [delivery] = await w.log(AFFILIATE, mine)
            async with w.sessions() as s, s.begin():
                assert len(await w.service.attempts(s, AFFILIATE, mine, delivery.id, None, 10))
                # another owner naming my endpoint, or its own endpoint with my delivery's id
                for owner, endpoint_id in [(other, mine), (other, theirs)]:
                    with pytest.raises(NotFound):
                        await w.service.attempts(s, owner, endpoint_id, delivery.id, None, 10)
                # finance (every event's receiver) has no access to an affiliate's log either
                with pytest.raises(NotFound):
                    await w.service.attempts(
                        s, Owner(OwnerKind.FINANCE, "fin"), mine, delivery.id, None, 10
                    )
