"""`alliance backup DIR` and `alliance restore DIR`: physical backups of the stack's cluster.

A backup is PostgreSQL's own (``pg_basebackup``), taken from the running cluster over its
unix socket as the superuser, never stopping it:

* ``-X stream``: the WAL written while the copy runs is streamed into the backup, so the
  backup alone restores to a consistent cluster (no WAL archive needed);
* ``--manifest-checksums=SHA256``: a ``backup_manifest`` with every file's checksum;
* ``-c fast``: an immediate checkpoint, so the copy starts at once;
* format ``plain`` (a data directory) or ``tar`` (``base.tar`` + ``pg_wal.tar``).

After the copy, ``pg_verifybackup`` checks every file against the manifest and that the WAL
needed for consistency is there and parses (a tar backup is unpacked into a scratch folder to
be checked: PostgreSQL 15's ``pg_verifybackup`` reads plain backups only).

A restore lays the backup into a fresh cluster directory laid out like the stack's
(:class:`deploy.stack.postgres.PostgresConfig`: ``DIR/data`` the data, ``DIR/postgres.log``,
the socket in ``DIR``), checks it again against its manifest, then starts it with
:func:`deploy.stack.postgres.start` on the given port: PostgreSQL replays the backup's WAL up
to the end of the backup and opens. The data directory is handed to the unprivileged OS user
the server runs as when we are root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deploy.stack import postgres

Format = Literal["plain", "tar"]
MANIFEST = "backup_manifest"
_TAR_BASE = "base.tar"
_TAR_WAL = "pg_wal.tar"


class BackupError(RuntimeError):
    """The backup could not be taken, checked or restored; the message says why."""


class NotABackup(BackupError):
    """The folder given is not a backup made by :func:`take` (or is already taken)."""


@dataclass(frozen=True)
class Backup:
    """A backup on disk: its folder, format and size."""

    path: Path
    format: Format
    size_bytes: int


def _tool(name: str) -> str:
    return str(postgres.ensure_installed() / name)


def _run(cmd: list[str], timeout_s: float) -> None:
    env = {**os.environ, "LC_ALL": "C"}
    env.pop("PGDATA", None)
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise BackupError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def kind(path: Path) -> Format:
    """The format of the backup in ``path``; :class:`NotABackup` if it is none."""
    if not path.is_dir():
        raise NotABackup(f"{path} is not a backup: no such folder")
    if not (path / MANIFEST).is_file():
        raise NotABackup(f"{path} is not a backup: it has no {MANIFEST}")
    if (path / _TAR_BASE).is_file():
        return "tar"
    if (path / "backup_label").is_file() and (path / "PG_VERSION").is_file():
        return "plain"
    raise NotABackup(f"{path} is not a backup: neither {_TAR_BASE} nor backup_label + PG_VERSION")


def take(
    cfg: postgres.PostgresConfig, target: Path, fmt: Format = "plain", timeout_s: float = 3600
) -> Backup:
    """Back up the running cluster of ``cfg`` into ``target`` (which must not exist), then
    verify it. A failed or unverifiable backup leaves no ``target`` behind."""
    if target.exists():
        raise NotABackup(f"{target} already exists; a backup goes into a new folder")
    if postgres.status(cfg) is None:
        raise BackupError(f"PostgreSQL of {cfg.state_dir} is not running on port {cfg.port}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run(
            [
                _tool("pg_basebackup"),
                "-h",
                str(cfg.socket_dir),
                "-p",
                str(cfg.port),
                "-U",
                postgres.SUPERUSER,
                "-D",
                str(target),
                "-F",
                fmt[0],
                "-X",
                "stream",
                "-c",
                "fast",
                "--manifest-checksums=SHA256",
                "--no-password",
                "--label",
                f"alliance backup of {cfg.state_dir}",
            ],
            timeout_s,
        )
        verify(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return Backup(target, fmt, _size(target))


def verify(path: Path) -> Format:
    """Check the backup in ``path`` against its manifest (``pg_verifybackup``)."""
    fmt = kind(path)
    if fmt == "plain":
        _verify_data_dir(path, path / MANIFEST)
        return fmt
    with tempfile.TemporaryDirectory(prefix="alliance-verify-", dir=path.parent) as scratch:
        data = Path(scratch) / "data"
        _unpack(path, data)
        _verify_data_dir(data, path / MANIFEST)
    return fmt


def _verify_data_dir(data: Path, manifest: Path) -> None:
    _run([_tool("pg_verifybackup"), "--quiet", "-m", str(manifest), str(data)], 600)


def _unpack(backup: Path, data: Path) -> None:
    """Lay a tar backup out as a data directory: ``base.tar`` in it, ``pg_wal.tar`` in its
    ``pg_wal``."""
    data.mkdir(parents=True)
    with tarfile.open(backup / _TAR_BASE) as base:
        base.extractall(data, filter="tar")
    wal = backup / _TAR_WAL
    if wal.is_file():
        (data / "pg_wal").mkdir(exist_ok=True)
        with tarfile.open(wal) as archive:
            archive.extractall(data / "pg_wal", filter="tar")


def restore(backup: Path, cfg: postgres.PostgresConfig, timeout_s: float = 300) -> None:
    """Lay ``backup`` into ``cfg.data_dir`` (``cfg.state_dir`` must not exist or be empty),
    check it, and start a cluster on it on ``cfg.port``."""
    fmt = kind(backup)
    if cfg.state_dir.exists() and any(cfg.state_dir.iterdir()):
        raise NotABackup(f"{cfg.state_dir} is not empty; a restore goes into a new folder")
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = cfg.state_dir / "data.restore-tmp"
    if fmt == "plain":
        shutil.copytree(backup, tmp, symlinks=True)
    else:
        _unpack(backup, tmp)
        shutil.copy2(backup / MANIFEST, tmp / MANIFEST)
    _verify_data_dir(tmp, tmp / MANIFEST)
    for leftover in ("postmaster.pid", "postmaster.opts"):
        (tmp / leftover).unlink(missing_ok=True)
    os.chmod(tmp, 0o700)
    user = postgres.run_as_user()
    if user is not None:
        owner = pwd.getpwnam(user)
        for path in (tmp, *tmp.rglob("*")):
            os.lchown(path, owner.pw_uid, owner.pw_gid)
    tmp.rename(cfg.data_dir)
    try:
        postgres.start(cfg, timeout_s)
    except postgres.PostgresStackError as exc:
        raise BackupError(str(exc)) from exc
