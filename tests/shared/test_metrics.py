"""``/metrics`` through ``prometheus_client``: every service exports what an operator needs,
with Prometheus names and units; HTTP durations are labelled by route template, never by
the raw path; counts of what a transaction wrote count only once it commits."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.metrics import COMMITTED, Metric, count_on_commit
from shared.service_runtime import BackgroundTasks, install_private_metrics, metrics_router
from tests.scrape import families, scrape

#: what every service with consumers exports (the attribution and commission services)
CONSUMERS = {
    Metric.RECORDS: "counter",
    Metric.BATCHES: "counter",
    Metric.RETRIES: "counter",
    Metric.BATCH_SECONDS: "histogram",
    Metric.LAG: "gauge",
    Metric.POSITION: "gauge",
    Metric.HALTED: "gauge",
    Metric.DEAD_LETTERS: "counter",
    Metric.PUBLISHED: "counter",
    Metric.OUTBOX_BACKLOG: "gauge",
    Metric.RESTARTS: "counter",
    Metric.HTTP_SECONDS: "histogram",
}
EXPECTED = {
    "attribution": CONSUMERS,
    "commission": {
        **CONSUMERS,
        Metric.WEBHOOKS: "counter",
        Metric.WEBHOOK_SECONDS: "histogram",
        Metric.LEDGER_POSTINGS: "counter",
    },
    "tracker": {
        Metric.SPOOL_BYTES: "gauge",
        Metric.SPOOL_LIMIT: "gauge",
        Metric.TRACKER: "counter",
        Metric.RESTARTS: "counter",
        Metric.HTTP_SECONDS: "histogram",
    },
}


class TestEveryServiceExports:
    async def test_each_service_exports_its_metrics_with_their_types(self) -> None:
        found = await families()
        for service, expected in EXPECTED.items():
            missing = {
                str(name): kind
                for name, kind in expected.items()
                if found[service].get(name) != kind
            }
            assert not missing, (service, missing, found[service])

    async def test_every_exported_name_is_a_declared_metric(self) -> None:
        declared = {str(m) for m in Metric}
        for service, names in (await families()).items():
            assert set(names) <= declared, (service, set(names) - declared)

    async def test_durations_are_in_seconds_and_counters_end_in_total(self) -> None:
        for names in (await families()).values():
            for name, kind in names.items():
                assert name.startswith("alliance_"), name
                assert (kind == "counter") == name.endswith("_total"), name
                if kind == "histogram":
                    assert name.endswith("_seconds"), name


def _timed_app() -> FastAPI:
    app = FastAPI()
    install_private_metrics(app, Settings())

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    app.include_router(metrics_router(list, list, BackgroundTasks(), app.state.prometheus))
    return app


def _http_samples(body: str) -> list[dict[str, str]]:
    return [
        s.labels
        for f in text_string_to_metric_families(body)
        if f.name == Metric.HTTP_SECONDS
        for s in f.samples
        if s.name.endswith("_count")
    ]


class TestRequestDurations:
    async def test_a_request_is_labelled_by_its_route_template_never_its_path(self) -> None:
        app = _timed_app()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as c:
            for n in range(5):
                assert (await c.get(f"/things/t-{n}")).status_code == 200
            assert (await c.get("/nowhere/abc")).status_code == 404
        labels = _http_samples((await scrape(app)).text)
        routes = {(s["route"], s["status"]) for s in labels}
        assert ("/things/{thing_id}", "200") in routes
        assert ("<unmatched>", "404") in routes
        assert not any("t-" in s["route"] or "abc" in s["route"] for s in labels)


async def _fails_after_counting(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text("SELECT 1"))
        count_on_commit(session, "test_things", 3)
        raise RuntimeError("the batch fails: it is retried, not counted")


@pytest.mark.integration
class TestCountedOnCommit:
    async def test_a_count_is_added_when_the_transaction_commits(self, settings: Settings) -> None:
        engine = make_engine(settings.database_url)
        sessions = make_sessions(engine)
        before = COMMITTED["test_things"]
        try:
            async with sessions() as session, session.begin():
                await session.execute(text("SELECT 1"))
                count_on_commit(session, "test_things", 3)
            assert COMMITTED["test_things"] == before + 3
        finally:
            await engine.dispose()

    async def test_a_rolled_back_transaction_counts_nothing(self, settings: Settings) -> None:
        engine = make_engine(settings.database_url)
        sessions = make_sessions(engine)
        before = COMMITTED["test_things"]
        try:
            with pytest.raises(RuntimeError):
                await _fails_after_counting(sessions)
            async with sessions() as session, session.begin():
                await session.execute(text("SELECT 1"))  # the next transaction commits
            assert COMMITTED["test_things"] == before
        finally:
            await engine.dispose()
