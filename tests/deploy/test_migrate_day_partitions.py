"""The migration to day partitions (docs/retention.md) on a database with data in place: the
tables become partitioned without a row copied (the legacy table and its indexes are the same
files, attached), every row is still found by the code's lookups and conflicts, and down again
the rows are back in plain tables."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from deploy.migrations import alembic_config, upgrade
from shared.config import Settings
from tests.conftest import _database_url, _ident, _maintenance

pytestmark = pytest.mark.integration

REVISION = "7a1e5c3d9b20"
BEFORE = "dc51ab691c54"
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=70)

FILES = """
    SELECT relname, relfilenode FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE (nspname, relname) IN (('attribution', :clicks), ('attribution', :decision),
        ('commission', :reports), ('commission', :visitors))
"""


@pytest.fixture
async def database(stack_settings: Settings) -> AsyncIterator[str]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    await _maintenance(stack_settings, f"CREATE DATABASE {_ident(name)}")
    try:
        yield _database_url(stack_settings, name)
    finally:
        await _maintenance(stack_settings, f"DROP DATABASE {_ident(name)} WITH (FORCE)")


async def _files(engine: AsyncEngine, suffix: str) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(FILES),
            {
                "clicks": f"clicks{suffix}",
                "decision": f"ix_clicks_decision{suffix}",
                "reports": f"report_clicks{suffix}",
                "visitors": f"visitor_days{suffix}",
            },
        )
        return {r[0].removesuffix(suffix): r[1] for r in rows}


async def _fill(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for n, at in enumerate((OLD, NOW)):
            await conn.execute(
                text(
                    "INSERT INTO attribution.clicks VALUES (:id, 's1', 'v1', 'a1', :at, :at, "
                    "false, 'l1', NULL, NULL)"
                ),
                {"id": f"c{n}", "at": at},
            )
            await conn.execute(
                text(
                    "INSERT INTO commission.report_clicks "
                    "VALUES (:id, 's1', 'v1', 'a1', :at, false)"
                ),
                {"id": f"c{n}", "at": at},
            )
            await conn.execute(
                text("INSERT INTO commission.visitor_days VALUES ('s1', :day, 'v1', true, false)"),
                {"day": at.date()},
            )


async def _counts(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return [
            (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
            for t in ("attribution.clicks", "commission.report_clicks", "commission.visitor_days")
        ]


async def test_the_tables_are_partitioned_in_place_and_the_code_still_finds_and_dedups(
    database: str,
) -> None:
    config = alembic_config(database)
    engine = create_async_engine(database, poolclass=NullPool)
    try:
        await asyncio.to_thread(upgrade, database, BEFORE)
        await _fill(engine)
        # the operator's key built beforehand (CONCURRENTLY) for one table: adopted, not rebuilt
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(
                text(
                    "CREATE UNIQUE INDEX CONCURRENTLY report_clicks_pk_ready "
                    "ON commission.report_clicks (click_id, occurred_at)"
                )
            )
            ready = await conn.scalar(
                text("SELECT relfilenode FROM pg_class WHERE relname = 'report_clicks_pk_ready'")
            )
        files = await _files(engine, "")
        await asyncio.to_thread(upgrade, database, REVISION)

        # the same files, renamed and attached: no row copied, no index rebuilt
        assert await _files(engine, "_legacy") == files
        async with engine.connect() as conn:
            adopted = await conn.scalar(
                text("SELECT relfilenode FROM pg_class WHERE relname = 'report_clicks_legacy_pkey'")
            )
        assert adopted == ready
        assert await _counts(engine) == [2, 2, 2]
        async with engine.begin() as conn:
            kinds: dict[str, str] = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT relname, relkind::text FROM pg_class WHERE relname IN "
                            "('clicks', 'report_clicks', 'visitor_days')"
                        )
                    )
                ).all()
            )
            assert kinds == {"clicks": "p", "report_clicks": "p", "visitor_days": "p"}
            tomorrow = (NOW + timedelta(days=1)).strftime("%Y%m%d")
            parts = set(
                (
                    await conn.execute(
                        text(
                            "SELECT c.relname FROM pg_inherits i JOIN pg_class c "
                            "ON c.oid = i.inhrelid "
                            "WHERE i.inhparent = 'attribution.clicks'::regclass"
                        )
                    )
                ).scalars()
            )
            assert {"clicks_legacy", "clicks_default", f"clicks_p{tomorrow}"} <= parts
            # the code's conflicts: a replayed click is still one (its key holds its time)
            for _ in range(2):
                await conn.execute(
                    text(
                        "INSERT INTO attribution.clicks VALUES ('c9', 's1', 'v1', 'a1', :at, :at, "
                        "false, 'l1', NULL, NULL) ON CONFLICT (click_id, occurred_at) DO NOTHING"
                    ),
                    {"at": NOW + timedelta(days=1)},
                )
                await conn.execute(
                    text(
                        "INSERT INTO commission.report_clicks VALUES ('c0', 's1', 'v1', 'a1', :at, "
                        "false) ON CONFLICT (click_id, occurred_at) DO NOTHING"
                    ),
                    {"at": OLD},
                )
                await conn.execute(
                    text(
                        "INSERT INTO commission.visitor_days VALUES ('s1', :day, 'v1', false, "
                        "true) ON CONFLICT (store_id, day, visitor_id) DO UPDATE SET viewed = true"
                    ),
                    {"day": OLD.date()},
                )
            # a click far older than any day partition lands in the default one
            await conn.execute(
                text(
                    "INSERT INTO attribution.clicks VALUES ('c8', 's1', 'v1', 'a1', :at, :at, "
                    "false, 'l1', NULL, NULL)"
                ),
                {"at": NOW + timedelta(days=400)},
            )
        assert await _counts(engine) == [4, 2, 2]

        await asyncio.to_thread(command.downgrade, config, BEFORE)
        assert await _counts(engine) == [4, 2, 2]
        async with engine.connect() as conn:
            kind = await conn.scalar(
                text(
                    "SELECT relkind::text FROM pg_class WHERE oid = 'attribution.clicks'::regclass"
                )
            )
        assert kind == "r"
        await asyncio.to_thread(upgrade, database)  # and up again, to head
    finally:
        await engine.dispose()
