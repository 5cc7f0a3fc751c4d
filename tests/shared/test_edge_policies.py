"""Rules every service's edge keeps: every HTML answer (pages, static files, Swagger UI)
carries a Content-Security-Policy with ``frame-ancestors 'none'``; every answer carries a
sane request id; ``/readyz`` runs its checks at most once a second whatever the number of
callers; ``/metrics`` is served on a listener of its own, never on the public port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import SecretStr

from shared.config import Settings
from shared.docs import service_app
from shared.http import CachedReadiness, NotReady, health_router, install_error_handlers
from shared.service_runtime import BackgroundTasks, install_private_metrics, metrics_router


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc.test")


def framing_refused(resp: httpx.Response) -> bool:
    csp = resp.headers.get("content-security-policy", "")
    return "frame-ancestors 'none'" in csp and "default-src 'self'" in csp


def a_service(tmp_path: Path) -> FastAPI:
    """An app shaped as every service's: docs, the shared error handlers, a static folder
    with a page, a JSON route."""
    app = service_app("t", None)
    install_error_handlers(app)
    (tmp_path / "page.html").write_text("<!doctype html><title>x</title>")
    (tmp_path / "app.js").write_text("1")
    app.mount("/static", StaticFiles(directory=tmp_path), name="static")

    @app.get("/v1/thing")
    async def thing() -> dict[str, int]:
        return {"a": 1}

    return app


class TestPagePolicy:
    async def test_every_html_answer_carries_a_csp_that_forbids_framing(
        self, tmp_path: Path
    ) -> None:
        async with client(a_service(tmp_path)) as c:
            for path in ("/docs", "/docs/oauth2-redirect", "/static/page.html"):
                resp = await c.get(path)
                assert resp.status_code == 200, path
                assert framing_refused(resp), path
                assert resp.headers["x-frame-options"] == "DENY"

    async def test_the_docs_page_runs_only_its_own_inline_script(self, tmp_path: Path) -> None:
        async with client(a_service(tmp_path)) as c:
            csp = (await c.get("/docs")).headers["content-security-policy"]
        assert "'sha256-" in csp
        assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]

    async def test_json_and_scripts_get_nosniff_only(self, tmp_path: Path) -> None:
        async with client(a_service(tmp_path)) as c:
            for path in ("/v1/thing", "/static/app.js"):
                resp = await c.get(path)
                assert resp.headers["x-content-type-options"] == "nosniff"
                assert "content-security-policy" not in resp.headers

    @pytest.mark.parametrize(
        ("service", "paths"),
        [
            ("tracker", ("/docs",)),
            ("attribution", ("/docs",)),
            (
                "commission",
                ("/docs", "/dashboard", "/dashboard/static/dashboard.html", "/camp"),
            ),
        ],
    )
    async def test_every_page_of_every_service_refuses_framing(
        self, service: str, paths: tuple[str, ...]
    ) -> None:
        import importlib

        create_app = importlib.import_module(f"services.{service}.app").create_app
        app = create_app(Settings(), consume=False) if service == "commission" else create_app()
        async with client(app) as c:
            for path in paths:
                resp = await c.get(path)
                assert resp.status_code == 200, path
                assert resp.headers["content-type"].startswith("text/html"), path
                assert framing_refused(resp), path


class TestRequestIds:
    async def test_a_sane_request_id_is_kept_and_returned(self, tmp_path: Path) -> None:
        async with client(a_service(tmp_path)) as c:
            resp = await c.get("/v1/thing", headers={"X-Request-Id": "abc-123.x"})
            assert resp.headers["x-request-id"] == "abc-123.x"

    @pytest.mark.parametrize("given", ["", "a b", "x" * 65, 'a"b', "é"])
    async def test_any_other_is_replaced_by_a_new_one(self, tmp_path: Path, given: str) -> None:
        async with client(a_service(tmp_path)) as c:
            headers = {b"X-Request-Id": given.encode()} if given else {}
            first = (await c.get("/v1/thing", headers=headers)).headers["x-request-id"]
            second = (await c.get("/nowhere", headers=headers)).headers["x-request-id"]
        assert first != given
        assert len(first) == len(second) == 32
        assert first != second


class TestCachedReadiness:
    async def test_n_concurrent_callers_cause_at_most_one_check_per_second(self) -> None:
        calls = 0
        now = [100.0]

        async def slow_database() -> None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)

        readiness = CachedReadiness({"postgres": slow_database}, now=lambda: now[0])
        results = await asyncio.gather(*(readiness.result() for _ in range(500)))
        assert calls == 1
        assert all(r == ({"postgres": "ok"}, {}) for r in results)
        now[0] += 0.9
        await asyncio.gather(*(readiness.result() for _ in range(100)))
        assert calls == 1  # still fresh
        now[0] += 0.2
        await asyncio.gather(*(readiness.result() for _ in range(100)))
        assert calls == 2  # older than 1 s: one more check, for all of them

    async def test_readyz_over_http_shares_one_check_among_its_callers(self) -> None:
        calls = 0

        async def database() -> None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)

        app = FastAPI()
        app.include_router(health_router({"postgres": database}))
        async with client(app) as c:
            answers = await asyncio.gather(*(c.get("/readyz") for _ in range(200)))
        assert {a.status_code for a in answers} == {200}
        assert calls == 1

    async def test_the_process_own_checks_are_never_cached(self) -> None:
        """A worker that died shows at the next call; the database is still asked once."""
        database_calls = 0
        worker_dead = False

        async def database() -> None:
            nonlocal database_calls
            database_calls += 1

        async def workers() -> None:
            if worker_dead:
                raise NotReady("consumer failed")

        readiness = CachedReadiness({"postgres": database, "workers": workers}, live=("workers",))
        assert await readiness.result() == ({"postgres": "ok", "workers": "ok"}, {})
        worker_dead = True
        results, reasons = await readiness.result()
        assert results == {"postgres": "ok", "workers": "error"}
        assert reasons == {"workers": "consumer failed"}
        assert database_calls == 1

    async def test_a_failure_is_reported_to_every_caller_of_that_second(self) -> None:
        async def down() -> None:
            raise OSError("refused")

        readiness = CachedReadiness({"postgres": down})
        results = await asyncio.gather(*(readiness.result() for _ in range(10)))
        assert all(r[0] == {"postgres": "error"} for r in results)
        assert readiness.runs == 1


def metered(**settings: object) -> Callable[[], tuple[FastAPI, FastAPI]]:
    def make() -> tuple[FastAPI, FastAPI]:
        app = FastAPI()
        install_error_handlers(app)
        listener = install_private_metrics(app, Settings(**settings))  # type: ignore[arg-type]
        app.include_router(metrics_router(list, list, BackgroundTasks()))
        return app, listener  # type: ignore[return-value]

    return make


class TestPrivateMetrics:
    async def test_with_a_listener_metrics_are_not_on_the_public_port(self) -> None:
        app, listener = metered(metrics_port=9100)()
        async with client(app) as public, client(listener) as private:
            assert (await public.get("/metrics")).status_code == 404
            assert (await public.get("/metrics/")).status_code == 404
            found = await private.get("/metrics")
            assert found.status_code == 200
            assert "# TYPE alliance_task_restarts_total counter" in found.text
            # the listener serves nothing else of the app
            assert (await private.get("/healthz")).status_code == 404
            assert (await private.get("/v1/audit")).status_code == 404

    async def test_the_token_is_required_where_metrics_are_served(self) -> None:
        _, listener = metered(metrics_port=9100, metrics_token=SecretStr("t0k"))()
        async with client(listener) as private:
            assert (await private.get("/metrics")).status_code == 401
            wrong = await private.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = await private.get("/metrics", headers={"Authorization": "Bearer t0k"})
            assert right.status_code == 200

    async def test_without_a_listener_a_token_guards_the_public_route(self) -> None:
        app, _ = metered(metrics_token=SecretStr("t0k"))()
        async with client(app) as public:
            assert (await public.get("/metrics")).status_code == 401
            ok = await public.get("/metrics", headers={"Authorization": "Bearer t0k"})
            assert ok.status_code == 200
