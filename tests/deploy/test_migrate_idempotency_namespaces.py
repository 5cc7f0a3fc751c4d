"""The migration to idempotency namespaces (issue 19, defect 1): existing applied events are
classified by the topic they were read from, never by their key's shape, and a decision's key
takes its new form; down again, one namespace."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from deploy.migrations import alembic_config, upgrade
from shared.config import Settings
from tests.conftest import _database_url, _ident, _maintenance

pytestmark = pytest.mark.integration

REVISION = "6b1f0c9e2d47"

ROWS = [
    # a storefront event, an ordinary id
    ("s1/e-1", "orders"),
    # a store event whose id is shaped like a decision's: it took the decision's slot
    ("s1/s1:o:9:0", "alliance.orders"),
    # decisions (any topic prefix), one of an order whose number holds ':'
    ("s1/s1:o:1:0", "attributions"),
    ("s1/s1:o:2:12", "alliance.attributions"),
]


async def _rows(url: str) -> list[tuple[str | None, str]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            has_source = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM information_schema.columns WHERE table_schema ="
                        " 'commission' AND table_name = 'processed_events'"
                        " AND column_name = 'source'"
                    )
                )
            ).scalar_one()
            source = "source" if has_source else "NULL"
            rows = await conn.execute(
                text(f"SELECT {source}, event_id FROM commission.processed_events ORDER BY 2")
            )
            return [(r[0], r[1]) for r in rows]
    finally:
        await engine.dispose()


async def _insert(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            for key, topic in ROWS:
                await conn.execute(
                    text(
                        "INSERT INTO commission.processed_events (event_id, topic) VALUES (:k, :t)"
                    ),
                    {"k": key, "t": topic},
                )
    finally:
        await engine.dispose()


async def test_existing_applied_events_are_classified_by_their_topic_not_their_shape(
    stack_settings: Settings,
) -> None:
    name = f"m_{uuid.uuid4().hex[:12]}"
    await _maintenance(stack_settings, f"CREATE DATABASE {_ident(name)}")
    url = _database_url(stack_settings, name)
    config = alembic_config(url)
    before = ScriptDirectory.from_config(config).get_revision(REVISION).down_revision
    assert isinstance(before, str)
    try:
        await asyncio.to_thread(upgrade, url, before)
        await _insert(url)
        await asyncio.to_thread(upgrade, url, REVISION)
        assert await _rows(url) == [
            ("storefront", "s1/e-1"),
            ("decision", "s1/o:1/0"),
            ("decision", "s1/o:2/12"),
            ("storefront", "s1/s1:o:9:0"),
        ]
        await asyncio.to_thread(command.downgrade, config, before)
        assert await _rows(url) == sorted(((None, k) for k, _ in ROWS), key=lambda r: r[1])
    finally:
        await _maintenance(stack_settings, f"DROP DATABASE {_ident(name)}")
