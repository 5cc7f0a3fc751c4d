"""`alliance backup` and `alliance restore` refuse, with exit status 2 and a one-line reason,
a target that exists and a folder that is not a backup (the drill itself:
tests/integration/test_backup_restore.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.cli import main
from deploy.stack import backup
from shared.config import get_settings


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
