"""The rate-limit middleware (:mod:`shared.limits`): who a request is charged to, the 429
answer, forged credentials, and the bound of what it remembers."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from shared.config import Settings
from shared.limits import Caller, Limiter, Limits, RateLimit
from shared.ratelimit import NS

GOOD_KEY = "als_good"


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000 * NS

    def __call__(self) -> int:
        return self.ns


def app_with(limits: dict[Caller, str], clock: Clock, max_keys: int = 1000) -> FastAPI:
    app = FastAPI()

    @app.get("/public")
    async def public() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/private")
    async def private(request: Request) -> JSONResponse:
        good = request.headers.get("authorization") == f"Bearer {GOOD_KEY}"
        return JSONResponse({}, status_code=200 if good else 401)

    @app.post("/v1/events")
    async def events(request: Request) -> JSONResponse:
        good = request.headers.get("x-alliance-signature") == "good"
        return JSONResponse({}, status_code=202 if good else 401)

    limiter = Limiter(Limits.parse(limits, max_keys), clock)
    app.state.limiter = limiter
    app.add_middleware(RateLimit, limiter=limiter, store_paths=("/v1/events",))
    return app


def client(app: FastAPI, address: str = "10.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://svc.test")


LIMITS = {Caller.PUBLIC: "3/3", Caller.KEY: "5/5", Caller.STORE: "2/2", Caller.REDIRECT: "off"}


class TestPublicRoutesPerAddress:
    async def test_past_the_quota_429_with_the_draft_headers_and_retry_after(self) -> None:
        clock = Clock()
        async with client(app_with(LIMITS, clock)) as c:
            answers = [await c.get("/public") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[0].headers["ratelimit-policy"] == '"public";q=3;w=3'
        assert answers[0].headers["ratelimit"] == '"public";r=2;t=1'
        refused = answers[3]
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["ratelimit"] == '"public";r=0;t=3'
        assert refused.json()["error"] == {
            "code": "rate_limited",
            "message": "too many requests: retry after Retry-After seconds",
            "policy": "public",
            "retry_after_s": 1,
        }

    async def test_the_quota_comes_back_with_time(self) -> None:
        clock = Clock()
        app = app_with(LIMITS, clock)
        async with client(app) as c:
            assert [(await c.get("/public")).status_code for _ in range(4)][-1] == 429
            clock.ns += NS
            assert (await c.get("/public")).status_code == 200
            assert (await c.get("/public")).status_code == 429

    async def test_each_address_has_its_own_quota(self) -> None:
        app = app_with(LIMITS, Clock())
        async with client(app, "10.0.0.1") as a, client(app, "10.0.0.2") as b:
            assert [(await a.get("/public")).status_code for _ in range(4)][-1] == 429
            assert (await b.get("/public")).status_code == 200

    async def test_x_forwarded_for_is_not_read(self) -> None:
        # the trusted proxies' address handling (uvicorn) sets scope["client"]; the header
        # itself is a client's word
        app = app_with(LIMITS, Clock())
        async with client(app) as c:
            codes = [
                (await c.get("/public", headers={"X-Forwarded-For": f"1.2.3.{i}"})).status_code
                for i in range(4)
            ]
        assert codes[-1] == 429


class TestKeysAndStores:
    async def test_a_key_has_its_own_quota_apart_from_its_address(self) -> None:
        app = app_with(LIMITS, Clock())
        auth = {"Authorization": f"Bearer {GOOD_KEY}"}
        async with client(app) as c:
            codes = [(await c.get("/private", headers=auth)).status_code for _ in range(6)]
            assert codes == [200] * 5 + [429]
            assert (await c.get("/public")).status_code == 200

    async def test_one_store_cannot_starve_another(self) -> None:
        app = app_with(LIMITS, Clock())
        signed = {"X-Alliance-Signature": "good"}
        async with client(app) as c:
            noisy = [
                (await c.post("/v1/events", headers={**signed, "X-Alliance-Store": "s1"}))
                for _ in range(3)
            ]
            quiet = await c.post("/v1/events", headers={**signed, "X-Alliance-Store": "s2"})
        assert [r.status_code for r in noisy] == [202, 202, 429]
        assert noisy[2].headers["ratelimit-policy"] == '"store";q=2;w=2'
        assert quiet.status_code == 202

    async def test_forged_credentials_cost_the_forgers_address_not_the_victim(self) -> None:
        app = app_with(LIMITS, Clock())
        forged = {"X-Alliance-Store": "victim", "X-Alliance-Signature": "forged"}
        async with client(app, "10.6.6.6") as attacker, client(app, "10.0.0.9") as victim:
            codes = [
                (await attacker.post("/v1/events", headers=forged)).status_code for _ in range(5)
            ]
            keys = [
                (await attacker.get("/private", headers={"Authorization": f"Bearer made-up-{i}"}))
                for i in range(2)
            ]
            real = await victim.post(
                "/v1/events", headers={"X-Alliance-Store": "victim", "X-Alliance-Signature": "good"}
            )
            browsing = await attacker.get("/public")
        # three refused credentials spend the attacker's quota for them (3), then no
        # credentialed request of that address passes; its public quota is its own
        assert codes == [401, 401, 401, 429, 429]
        assert [k.status_code for k in keys] == [429, 429]
        assert real.status_code == 202
        assert browsing.status_code == 200

    async def test_browsing_public_routes_never_locks_a_key_out(self) -> None:
        app = app_with(LIMITS, Clock())
        async with client(app) as c:
            assert [(await c.get("/public")).status_code for _ in range(4)][-1] == 429
            auth = {"Authorization": f"Bearer {GOOD_KEY}"}
            assert (await c.get("/private", headers=auth)).status_code == 200


class TestMemory:
    def test_callers_with_a_whole_quota_are_forgotten_and_the_bound_holds(self) -> None:
        clock = Clock()
        limiter = Limiter(Limits.parse(LIMITS, max_keys=100), clock)
        for i in range(1000):
            verdict = limiter.take(Caller.PUBLIC, f"10.0.{i // 256}.{i % 256}")
            assert verdict is not None
            assert verdict.allowed
        assert len(limiter) <= 100
        clock.ns += 60 * NS
        limiter.take(Caller.PUBLIC, "10.9.9.9")
        assert len(limiter) == 1

    def test_a_limit_off_is_no_limit(self) -> None:
        limiter = Limiter(Limits.parse(LIMITS), Clock())
        assert limiter.take(Caller.REDIRECT, "10.0.0.1") is None
        assert len(limiter) == 0


class TestConfiguration:
    def test_a_limit_that_does_not_parse_stops_the_settings(self) -> None:
        with pytest.raises(ValidationError, match="rate limit"):
            Settings(rate_limit_public="fast")

    def test_the_defaults_parse(self) -> None:
        defaults = {
            name: Settings.model_fields[name].default
            for name in (
                "rate_limit_public",
                "rate_limit_key",
                "rate_limit_store",
                "rate_limit_redirect",
            )
        }
        limits = Limits.parse(
            {
                Caller.PUBLIC: defaults["rate_limit_public"],
                Caller.KEY: defaults["rate_limit_key"],
                Caller.STORE: defaults["rate_limit_store"],
                Caller.REDIRECT: defaults["rate_limit_redirect"],
            }
        )
        assert all(q is not None for q in limits.quotas.values())
