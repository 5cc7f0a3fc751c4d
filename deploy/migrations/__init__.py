"""The database's one migration history (Alembic: the three services' schemas, ``env.py``
imports each service's models), run from code by ``alliance migrate``, the stack and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

#: this folder: alembic.ini, env.py and versions/
MIGRATIONS = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``. Idempotent. Runs its own event loop: call it from
    synchronous code (or a worker thread)."""
    command.upgrade(alembic_config(database_url), revision)


def at_head(database_url: str) -> bool:
    """True when the database carries every migration (its revisions are the script's
    heads); False when it is behind or empty. Errors reaching it propagate. Runs its own
    event loop."""
    import asyncio

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    heads = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())

    def current(conn: Connection) -> set[str]:
        return set(MigrationContext.configure(conn).get_current_heads())

    async def read() -> set[str]:
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(current)
        finally:
            await engine.dispose()

    return asyncio.run(read()) == heads
