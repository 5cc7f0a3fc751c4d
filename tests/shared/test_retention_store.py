"""The retention job on the real PostgreSQL (docs/retention.md): day partitions created ahead
and dropped whole past their retention, the default partition's and the idempotency tables'
old rows deleted, finished webhook deliveries expired, one replica at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import FixedClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.retention import tables_of
from shared.retention_store import RetentionJob, partitions

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
D = timedelta(days=1)


def day_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


async def _click(session: AsyncSession, click_id: str, at: datetime) -> None:
    await session.execute(
        text(
            "INSERT INTO attribution.clicks VALUES (:id, 's1', 'v1', 'a1', :at, :at, false, "
            "'l1', NULL, NULL)"
        ),
        {"id": click_id, "at": at},
    )


async def _scalars(session: AsyncSession, sql: str) -> list[object]:
    return list((await session.execute(text(sql))).scalars())


async def test_partitions_are_made_ahead_and_dropped_whole_past_the_retention(
    settings: Settings,
) -> None:
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    clock = FixedClock(NOW)
    job = RetentionJob(sessions, ("attribution", "commission"), settings, clock, 0)
    try:
        first = await job.run_once()  # the migration made today and a week ahead already
        assert first.dropped == []
        assert (await job.run_once()).created == []  # idempotent
        async with sessions() as session, session.begin():
            for n, at in enumerate((NOW, NOW + 3 * D, NOW - 400 * D)):
                await _click(session, f"c{n}", at)
            await session.execute(
                text(
                    "INSERT INTO commission.processed_events (source, event_id, topic, "
                    "processed_at) VALUES ('storefront', 's/old', 't', :old), "
                    "('storefront', 's/new', 't', :new)"
                ),
                {"old": NOW + 40 * D, "new": NOW + 62 * D},
            )

        clock.set(NOW + 63 * D)  # clicks kept 61 days: the cutoff is NOW + 2 days
        report = await job.run_once()
        assert "attribution.clicks_legacy" in report.dropped
        assert f"attribution.{day_name('clicks', (NOW + D).date())}" in report.dropped
        assert f"attribution.{day_name('clicks', (NOW + 3 * D).date())}" not in report.dropped
        assert "commission.visitor_days_legacy" not in report.dropped  # kept 775 days
        assert f"attribution.{day_name('clicks', (NOW + 70 * D).date())}" in report.created
        assert report.deleted["processed_events"] == 1
        async with sessions() as session, session.begin():
            assert await _scalars(session, "SELECT click_id FROM attribution.clicks") == ["c1"]
            assert await _scalars(session, "SELECT event_id FROM commission.processed_events") == [
                "s/new"
            ]
            (clicks,) = tables_of(["attribution"])
            names = {p.name for p in await partitions(session, clicks)}
            assert "clicks_legacy" not in names
            assert "clicks_default" in names
            # a click older than every partition now lands in the default one, then goes
            await _click(session, "c9", NOW - 10 * D)
        assert (await job.run_once()).deleted["clicks_default"] == 1
    finally:
        await engine.dispose()


async def test_a_second_replica_skips_while_one_holds_the_schema(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    try:
        job = RetentionJob(sessions, ("attribution",), settings, FixedClock(NOW + 90 * D), 0)
        async with sessions() as other, other.begin():
            await other.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('alliance-retention:attribution'))")
            )
            report = await job.run_once()
            assert report.skipped == ["attribution"]
            assert report.dropped == []
        assert "attribution.clicks_legacy" in (await job.run_once()).dropped
    finally:
        await engine.dispose()


async def test_finished_webhook_deliveries_go_pending_ones_stay(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    old = NOW - 40 * D
    try:
        async with sessions() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO commission.webhook_endpoints (id, owner_kind, owner_id, url, "
                    "method, events, created_at) VALUES ('e1', 'store', 's1', "
                    "'https://example.com/h', 'POST', '[]', :at)"
                ),
                {"at": old},
            )
            for n, status in enumerate(("delivered", "failed", "pending")):
                delivery = await session.scalar(
                    text(
                        "INSERT INTO commission.webhook_deliveries (endpoint_id, event_id, "
                        "event_type, payload, status, due_since, created_at) VALUES "
                        "('e1', :e, 'order.placed', '{}', :s, :at, :at) RETURNING id"
                    ),
                    {"e": f"ev{n}", "s": status, "at": old},
                )
                await session.execute(
                    text(
                        "INSERT INTO commission.webhook_attempts (delivery_id, endpoint_id, "
                        "attempt, at, latency_ms) VALUES (:d, 'e1', 1, :at, 5)"
                    ),
                    {"d": delivery, "at": old},
                )
        job = RetentionJob(sessions, ("commission",), settings, FixedClock(NOW), 0, chunk=1)
        assert (await job.run_once()).deleted["webhook_deliveries"] == 2
        async with sessions() as session:
            assert await _scalars(session, "SELECT status FROM commission.webhook_deliveries") == [
                "pending"
            ]
            assert await _scalars(session, "SELECT count(*) FROM commission.webhook_attempts") == [
                1
            ]
    finally:
        await engine.dispose()
