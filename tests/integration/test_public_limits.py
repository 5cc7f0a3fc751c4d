"""Issue 19, defect 4: what one public request may cost is bounded. A camp keyword needs a run
of 3 letters or digits (else ``422 query_too_short``, before any query), every statement of
an API request runs under ``statement_timeout`` (``503 statement_timeout`` past it), and each
client address has a quota on the public routes (``429`` past it): a burst of one-character
camp queries is refused and never slows the consumers, against the real stack."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.commission.app import create_app
from services.commission.deps import Session
from shared.config import Settings
from shared.kafka import ConsumerPipeline, committed_offsets_of, end_offsets_of
from shared.limits import Caller, Limits
from tests.integration import harness
from tests.integration.harness import Services, eventually, new_store, running, signed_post, uid

pytestmark = pytest.mark.integration

#: the production defaults of what the tests' environment raises (tests/conftest.py)
DEFAULT_PUBLIC = Settings.model_fields["rate_limit_public"].default


def pipelines(svc: Services) -> list[ConsumerPipeline[Any]]:
    """Every consumer of the running services (attribution's, commission's two)."""
    states = [svc.apps["attribution"].state, svc.apps["commission"].state]
    return [
        getattr(state, name)
        for state in states
        for name in ("pipeline", "reports_pipeline")
        if hasattr(state, name)
    ]


async def lag(settings: Settings, svc: Services) -> int:
    """Records on the consumers' topics that their groups have not committed yet."""
    total = 0
    for pipeline in pipelines(svc):
        end = await end_offsets_of(settings.kafka, pipeline.topics)
        committed = await committed_offsets_of(settings.kafka, pipeline.group_id)
        total += sum(offset - committed.get(tp, 0) for tp, offset in end.items())
    return total


async def caught_up(settings: Settings, svc: Services) -> bool | None:
    return True if await lag(settings, svc) == 0 else None


def page_views(store_id: str, n: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "events": [
            {
                "event_id": f"pv-{uid()}",
                "type": "page_view",
                "occurred_at": now,
                "visitor_id": f"v{i}",
                "product_id": "p1",
            }
            for i in range(n)
        ]
    }


class TestPublicCampCost:
    async def test_a_burst_of_1000_one_character_camp_queries_gets_422_or_429_and_the_consumers_lag_does_not_grow(  # noqa: E501
        self, settings: Settings
    ) -> None:
        limited = settings.model_copy(update={"rate_limit_public": DEFAULT_PUBLIC})
        async with running(limited) as svc:
            store = await new_store(svc, limited, f"s{uid()}", products=("p1", "p2"))
            await eventually(lambda: caught_up(limited, svc))

            async def one(i: int) -> httpx.Response:
                return await svc.commission.get(
                    "/v1/camp/products", params={"q": "abcdefgh"[i % 8]}
                )

            async def storefront() -> list[int]:
                # the pipeline keeps being fed while the burst lasts
                codes = []
                for _ in range(5):
                    resp = await signed_post(
                        svc.tracker, "/v1/events", store, page_views(store.store_id, 20)
                    )
                    codes.append(resp.status_code)
                    await asyncio.sleep(0.05)
                return codes

            feeding = asyncio.ensure_future(storefront())
            answers: list[httpx.Response] = []
            began = time.monotonic()
            for start in range(0, 1000, 100):
                answers += await asyncio.gather(*(one(i) for i in range(start, start + 100)))
            burst_s = time.monotonic() - began
            assert await feeding == [202] * 5

            by_code = Counter((a.status_code, a.json()["error"]["code"]) for a in answers)
            assert set(by_code) == {(422, "query_too_short"), (429, "rate_limited")}, by_code
            # the default quota's burst, and one more per half second the burst lasted
            answered = by_code[(422, "query_too_short")]
            assert 120 <= answered <= 120 + 2 * math.ceil(burst_s), (answered, burst_s)
            refused = next(a for a in answers if a.status_code == 429)
            assert refused.headers["ratelimit-policy"] == '"public";q=120;w=60'
            assert refused.headers["ratelimit"].startswith('"public";r=0;t=')
            assert int(refused.headers["retry-after"]) >= 1
            # the consumers took what the storefront sent during the burst: no lag left
            await eventually(lambda: caught_up(limited, svc), timeout_s=20)

    async def test_a_keyword_of_3_letters_or_digits_in_a_row_is_searched(
        self, settings: Settings
    ) -> None:
        async with running(settings) as svc:
            for q, code in (
                ("a", 422),
                ("a b c", 422),
                ("a_b-c", 422),
                ("lam", 200),
                ("x 4é", 422),
            ):
                resp = await svc.commission.get("/v1/camp/products", params={"q": q})
                assert resp.status_code == code, (q, resp.text)
                if code == 422:
                    assert resp.json()["error"]["code"] == "query_too_short"
            assert (
                await svc.commission.get("/v1/camp/products", params={"q": "été"})
            ).status_code == 200


class TestStatementTimeout:
    async def test_a_statement_past_the_timeout_is_503_statement_timeout_with_retry_after(
        self, settings: Settings
    ) -> None:
        app = create_app(settings.model_copy(update={"statement_timeout_s": 0.2}), consume=False)

        @app.get("/slow")  # a route of the test's own, in the app's request transaction
        async def slow(session: Session) -> dict[str, str]:
            await session.execute(text("SELECT pg_sleep(5)"))
            return {"slept": "yes"}

        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://commission.test"
            ) as client,
        ):
            began = time.monotonic()
            resp = await client.get("/slow")
            took = time.monotonic() - began
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"]["code"] == "statement_timeout"
            assert resp.headers["retry-after"] == "5"
            assert took < 3
            # the next request's transaction is not poisoned
            assert (await client.get("/v1/camp/categories")).status_code == 200

    async def test_the_consumers_sessions_have_no_statement_timeout(
        self, settings: Settings
    ) -> None:
        from shared.db import make_engine, make_sessions

        engine = make_engine(settings.database_url)
        try:
            async with make_sessions(engine)() as session, session.begin():
                free = (await session.execute(text("SHOW statement_timeout"))).scalar_one()
            async with make_sessions(engine, 2.0)() as session, session.begin():
                bounded = (await session.execute(text("SHOW statement_timeout"))).scalar_one()
        finally:
            await engine.dispose()
        assert free == "0"
        assert bounded == "2s"


class TestTrackerLimits:
    async def test_the_click_redirect_has_its_own_quota_per_address_and_stores_their_own(
        self, settings: Settings
    ) -> None:
        async with running(settings) as svc:
            store = await new_store(svc, settings, f"s{uid()}", products=("p1",))
            other = await new_store(svc, settings, f"s{uid()}", products=("p1",))
            key = await harness.new_affiliate(svc, settings, f"a{uid()}")
            link = await harness.new_link(svc, key, store.store_id, "p1")
            # the quotas as a deployment sets them, on the running tracker
            svc.apps["tracker"].state.limiter.configure(
                Limits.parse(
                    {
                        Caller.PUBLIC: "5/60",
                        Caller.KEY: "off",
                        Caller.STORE: "3/60",
                        Caller.REDIRECT: "20/60",
                    }
                )
            )
            redirects = [(await svc.tracker.get(f"/r/{link['code']}")) for _ in range(21)]
            assert [r.status_code for r in redirects] == [302] * 20 + [429]
            assert redirects[-1].headers["ratelimit-policy"] == '"redirect";q=20;w=60'
            assert int(redirects[-1].headers["retry-after"]) >= 1
            assert redirects[-1].json()["error"]["code"] == "rate_limited"

            posts = [
                (await signed_post(svc.tracker, "/v1/events", store, page_views(store.store_id, 1)))
                for _ in range(4)
            ]
            assert [p.status_code for p in posts] == [202, 202, 202, 429]
            assert posts[-1].headers["ratelimit-policy"] == '"store";q=3;w=60'
            # another store's events still go in: one store cannot starve the others
            theirs = await signed_post(
                svc.tracker, "/v1/events", other, page_views(other.store_id, 1)
            )
            assert theirs.status_code == 202
