"""PostgreSQL over TLS is asked for in ``ALLIANCE_DATABASE_URL`` itself (``?ssl=require``, what
a managed PostgreSQL wants): SQLAlchemy hands the URL's query to ``asyncpg.connect``, for the
services' engines and for the migrations alike. The test stack's PostgreSQL has no TLS, so a
URL that requires it must be refused by that server — which shows the parameter arrived."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from deploy.migrations import upgrade
from shared.db import make_engine

pytestmark = pytest.mark.integration


def with_ssl(url: str, mode: str) -> str:
    return make_url(url).update_query_dict({"ssl": mode}).render_as_string(False)


async def select_one(url: str) -> int:
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT 1"))).scalar_one())
    finally:
        await engine.dispose()


async def test_the_services_engine_takes_ssl_from_the_url(database_url: str) -> None:
    assert await select_one(with_ssl(database_url, "disable")) == 1
    with pytest.raises(ConnectionError, match="rejected SSL upgrade"):
        await select_one(with_ssl(database_url, "require"))


async def test_the_migrations_take_ssl_from_the_url(database_url: str) -> None:
    await asyncio.to_thread(upgrade, with_ssl(database_url, "disable"))  # at head: a no-op
    with pytest.raises(ConnectionError, match="rejected SSL upgrade"):
        await asyncio.to_thread(upgrade, with_ssl(database_url, "require"))
