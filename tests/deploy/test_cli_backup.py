"""`alliance backup` and `alliance restore`: a tar backup of the live stack restored through
the command line, and the refusals (exit status 2, a one-line reason) of a target that exists
and of a folder that is not a backup (the drill: tests/integration/test_backup_restore.py)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from deploy.cli import main
from deploy.stack import backup, orchestrate, postgres
from shared.config import Settings, get_settings
from tests.conftest import free_ports


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield None
    get_settings.cache_clear()


def test_a_backup_goes_into_a_new_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backup", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path} already exists; a backup goes into a new folder" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ((), "it has no backup_manifest"),
        (("backup_manifest",), "neither base.tar nor backup_label + PG_VERSION"),
        (("backup_manifest", "PG_VERSION"), "neither base.tar nor backup_label + PG_VERSION"),
    ],
)
def test_restore_refuses_a_folder_that_is_not_a_backup(
    files: tuple[str, ...], reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in files:
        (source / name).write_text("x")
    args = ["restore", str(source), "--data-dir", str(tmp_path / "new"), "--port", "1"]
    assert main(args) == 2
    assert f"error: {source} is not a backup: {reason}" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_restore_refuses_a_missing_folder_and_a_used_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["restore", str(tmp_path / "none"), "--data-dir", str(tmp_path / "new"), "--port", "1"]
    assert main(args) == 2
    assert "is not a backup: no such folder" in capsys.readouterr().err
    source = tmp_path / "plain"
    source.mkdir()
    for name in ("backup_manifest", "backup_label", "PG_VERSION"):
        (source / name).write_text("x")
    assert backup.kind(source) == "plain"
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep").write_text("mine")
    assert main(["restore", str(source), "--data-dir", str(used), "--port", "1"]) == 2
    assert f"error: {used} is not empty" in capsys.readouterr().err
    assert (used / "keep").read_text() == "mine"


@pytest.mark.integration
async def test_a_tar_backup_of_the_stack_restores_into_a_cluster_of_its_own(
    stack_settings: Settings,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through the command line: the test's own database, with a row written just before,
    is in the restored cluster; the stack keeps running."""
    monkeypatch.setenv("ALLIANCE_STATE_DIR", str(stack_settings.state_dir))
    monkeypatch.setenv("ALLIANCE_POSTGRES_PORT", str(stack_settings.postgres_port))
    marker = uuid.uuid4().hex
    await _execute(settings.database_url, "CREATE TABLE public.drill_marker (v text)")
    await _execute(settings.database_url, f"INSERT INTO public.drill_marker VALUES ('{marker}')")
    scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="bk-", dir="/var/tmp"))
    await asyncio.to_thread(scratch.chmod, 0o755)
    restored = postgres.PostgresConfig(state_dir=scratch / "r", port=free_ports(1)[0])
    try:
        taken = scratch / "backup"
        assert await asyncio.to_thread(main, ["backup", str(taken), "--format", "tar"]) == 0
        assert f"backup    {taken} (tar, " in capsys.readouterr().out
        assert backup.kind(taken) == "tar"
        assert {p.name for p in taken.iterdir()} == {"backup_manifest", "base.tar", "pg_wal.tar"}
        args = ["restore", str(taken), "--data-dir", str(restored.state_dir)]
        assert await asyncio.to_thread(main, [*args, "--port", str(restored.port)]) == 0
        out = capsys.readouterr().out
        assert f"@127.0.0.1:{restored.port}/alliance" in out
        database = make_url(settings.database_url).database
        url = postgres.database_url(restored, database)
        assert await _scalar(url, "SELECT v FROM public.drill_marker") == marker
        # the stack's own cluster still runs, on its port
        stack = orchestrate.Stack.from_settings(stack_settings).postgres
        assert postgres.status(stack) is not None
    finally:
        await asyncio.to_thread(postgres.stop, restored)
        await asyncio.to_thread(shutil.rmtree, scratch, True)


async def _execute(url: str, statement: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _scalar(url: str, query: str) -> object:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(text(query))
    finally:
        await engine.dispose()
