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
