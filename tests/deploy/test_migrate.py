"""`alliance migrate --check`: what the Helm chart's pods wait on before they start."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from deploy.cli import main
from deploy.migrations import at_head, upgrade
from shared.config import Settings
from tests.conftest import _database_url, _ident, _maintenance

pytestmark = pytest.mark.integration


def first_revision(url: str) -> str:
    from alembic.script import ScriptDirectory

    from deploy.migrations import alembic_config

    (base,) = ScriptDirectory.from_config(alembic_config(url)).get_bases()
    return str(base)


async def test_check_says_at_head_only_once_every_migration_is_applied(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"m_{uuid.uuid4().hex[:12]}"
    await _maintenance(stack_settings, f"CREATE DATABASE {_ident(name)}")
    url = _database_url(stack_settings, name)
    monkeypatch.setenv("ALLIANCE_DATABASE_URL", url)
    from shared.config import get_settings

    get_settings.cache_clear()
    try:
        assert await asyncio.to_thread(at_head, url) is False  # empty
        assert await asyncio.to_thread(main, ["migrate", "--check"]) == 1
        await asyncio.to_thread(upgrade, url, first_revision(url))  # part of the way
        assert await asyncio.to_thread(at_head, url) is False
        await asyncio.to_thread(upgrade, url)
        assert await asyncio.to_thread(at_head, url) is True
        assert await asyncio.to_thread(main, ["migrate", "--check"]) == 0
        assert "database at head" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
        await _maintenance(stack_settings, f"DROP DATABASE {_ident(name)}")


async def test_check_fails_without_a_traceback_when_the_database_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.config import get_settings

    monkeypatch.setenv("ALLIANCE_DATABASE_URL", "postgresql+asyncpg://u:p@127.0.0.1:1/none")
    get_settings.cache_clear()
    try:
        assert await asyncio.to_thread(main, ["migrate", "--check"]) == 1
    finally:
        get_settings.cache_clear()
    assert "database not reachable" in capsys.readouterr().err
