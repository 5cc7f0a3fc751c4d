"""A real, local PostgreSQL cluster without Docker.

The server binaries are the distribution's (``initdb``/``pg_ctl``/``postgres``/``psql``, found on
PATH or in ``/usr/lib/postgresql/<major>/bin``, installed with apt if missing). The cluster lives
entirely under ``state_dir``::

    state_dir/data/           the cluster (initdb'ed once)
    state_dir/data/alliance.conf   our settings, rewritten on every start and included last
                                   from postgresql.conf
    state_dir/postgres.log    the server log
    state_dir/.s.PGSQL.PORT   the unix socket (the only way in for the ``postgres`` superuser)

Access: unix-socket connections are ``trust`` (the socket lives in ``state_dir``, mode 0700,
so only its owner and root reach it); TCP connections on 127.0.0.1 use ``scram-sha-256``
passwords. The application role (``cfg.user``, LOGIN CREATEDB, not superuser) owns
``cfg.database``. The server listens on 127.0.0.1 only.

PostgreSQL refuses to run as root. When this module runs as root it runs the server tools as
an unprivileged OS user (``postgres``, created as a system user if missing) through
``runuser -u postgres --`` and hands ``state_dir`` to that user; every parent directory of
``state_dir`` must then be traversable by it (checked, with a clear error). Not as root, the
tools run as the current user.

Contracts:

* :func:`start` is idempotent: a running cluster is left running (its role and database are
  still ensured). When it returns, the server accepts password connections on 127.0.0.1.
* :func:`stop` is idempotent and leaves no server process for ``state_dir`` behind.
* :func:`create_database` is idempotent.
* The extensions the schema needs and a non-superuser cannot create (:data:`EXTENSION`,
  Debian's ``postgresql-<major>-hll``) are installed with the server and created by the
  superuser in ``template1`` and ``cfg.database`` on every :func:`start`, so every database
  made afterwards has them.
* Durability is PostgreSQL's default; ``durable=False`` (explicit, for throw-away test
  clusters only) turns off fsync, synchronous_commit and full_page_writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from deploy.procs import alive
from deploy.stack.apt import AptError, apt_install

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

HOST = "127.0.0.1"
SUPERUSER = "postgres"
RUN_AS_WHEN_ROOT = "postgres"
_REQUIRED_TOOLS = ("initdb", "pg_ctl", "postgres", "psql")
#: the extension the schema needs (postgresql-hll: the reports' visitor sketches); not a
#: trusted one, so the superuser creates it (template1, then every database copies it)
EXTENSION = "hll"
_INCLUDE_LINE = "include_if_exists = 'alliance.conf'"
_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_DUPLICATE_DATABASE = "42P04"


class PostgresStackError(RuntimeError):
    """The local PostgreSQL could not be installed, started or stopped."""


@dataclass(frozen=True)
class PostgresConfig:
    """Where and how the local cluster runs (see the module docstring)."""

    state_dir: Path
    port: int = 5432
    user: str = "alliance"
    password: str = "alliance"
    database: str = "alliance"
    durable: bool = True

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self.state_dir


def database_url(cfg: PostgresConfig, database: str | None = None) -> str:
    """``postgresql+asyncpg://user:password@127.0.0.1:port/database`` (SQLAlchemy form)."""
    user = quote(cfg.user, safe="")
    password = quote(cfg.password, safe="")
    db = quote(database or cfg.database, safe="")
    return f"postgresql+asyncpg://{user}:{password}@{HOST}:{cfg.port}/{db}"


# --------------------------------------------------------------------------------------------
# Installation


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def _find_bin_dir() -> Path | None:
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for bin_dir in candidates:
        if all(os.access(bin_dir / tool, os.X_OK) for tool in _REQUIRED_TOOLS):
            return bin_dir
    return None


def ensure_installed() -> Path:
    """Return the directory holding ``initdb``, ``pg_ctl``, ``postgres`` and ``psql``.

    Looks on PATH first (symlinks resolved), then in ``/usr/lib/postgresql/*/bin``, newest
    major first. If none is found and we are root, installs Debian's ``postgresql`` package
    non-interactively, without letting it create (and start) its default ``main`` cluster.
    """
    found = _find_bin_dir()
    if found is not None:
        _ensure_extension_package(found)
        return found
    if os.geteuid() != 0:
        raise PostgresStackError(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) not found; install "
            "them, e.g. `sudo apt-get install -y postgresql`, or put their bin dir on PATH"
        )
    if shutil.which("apt-get") is None:
        raise PostgresStackError("PostgreSQL is not installed and there is no apt-get")
    # postgresql-common reads this directory; without it the package would create and start
    # a cluster on port 5432, which is ours.
    conf_d = Path("/etc/postgresql-common/createcluster.d")
    conf_d.mkdir(parents=True, exist_ok=True)
    (conf_d / "alliance-no-main-cluster.conf").write_text("create_main_cluster = false\n")
    try:
        apt_install("postgresql", recommends=False)
    except AptError as exc:
        raise PostgresStackError(str(exc)) from exc
    found = _find_bin_dir()
    if found is None:
        raise PostgresStackError("installed postgresql but still cannot find initdb/pg_ctl")
    _ensure_extension_package(found)
    return found


def _extension_dir(bin_dir: Path) -> Path:
    """Where the server of ``bin_dir`` looks for extensions (``pg_config --sharedir``)."""
    proc = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    major = re.search(r"(\d+)", proc.stdout)
    return Path(f"/usr/share/postgresql/{major.group(1) if major else ''}/extension")


def _ensure_extension_package(bin_dir: Path) -> None:
    """Install Debian's ``postgresql-<major>-hll`` (the reports' visitor sketches) when the
    server of ``bin_dir`` lacks the extension: the same way as PostgreSQL itself."""
    ext_dir = _extension_dir(bin_dir)
    if (ext_dir / f"{EXTENSION}.control").is_file():
        return
    package = f"postgresql-{ext_dir.parent.name}-{EXTENSION}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresStackError(
            f"the PostgreSQL extension {EXTENSION!r} is missing: install it, e.g. "
            f"`sudo apt-get install -y {package}`"
        )
    try:
        apt_install(package, recommends=False)
    except AptError as exc:
        raise PostgresStackError(str(exc)) from exc


# --------------------------------------------------------------------------------------------
# Running the tools as the right user


def _run_as_user() -> str | None:
    """The OS user to run server tools as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_AS_WHEN_ROOT)
    except KeyError:
        proc = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                RUN_AS_WHEN_ROOT,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise PostgresStackError(
                f"cannot create system user {RUN_AS_WHEN_ROOT!r}: {proc.stderr}"
            ) from None
    return RUN_AS_WHEN_ROOT


def run_as_user() -> str | None:
    """The OS user the server and its files belong to: None (ourselves) unless we are root
    (then :data:`RUN_AS_WHEN_ROOT`, created if missing)."""
    return _run_as_user()


def _as_user(user: str | None, cmd: Sequence[str]) -> list[str]:
    return list(cmd) if user is None else ["runuser", "-u", user, "--", *cmd]


def _run(
    user: str | None,
    cmd: Sequence[str],
    *,
    cwd: Path,
    timeout_s: float = 120,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    full = _as_user(user, cmd)
    env = {**os.environ, "LC_ALL": "C"}
    env.pop("PGDATA", None)
    proc = subprocess.run(
        full,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout_s,
        check=False,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise PostgresStackError(
            f"`{' '.join(full)}` failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _prepare_state_dir(cfg: PostgresConfig, user: str | None) -> None:
    """Create ``state_dir``; when root, hand it to ``user`` and check ``user`` can reach it."""
    sock = cfg.socket_dir / f".s.PGSQL.{cfg.port}"
    if len(str(sock)) > _SOCKET_PATH_MAX:
        raise PostgresStackError(
            f"unix socket path {sock} is longer than {_SOCKET_PATH_MAX} bytes; "
            "use a shorter state_dir"
        )
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    owner = pwd.getpwnam(user)
    for path in (cfg.state_dir, cfg.log_file):
        if path.exists() and path.stat().st_uid != owner.pw_uid:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    os.chmod(cfg.state_dir, 0o700)
    if _run(user, ["test", "-w", str(cfg.state_dir)], cwd=Path("/"), check=False).returncode:
        blocker = next(
            (
                parent
                for parent in reversed(cfg.state_dir.parents)
                if _run(user, ["test", "-x", str(parent)], cwd=Path("/"), check=False).returncode
            ),
            cfg.state_dir,
        )
        raise PostgresStackError(
            f"PostgreSQL refuses to run as root, so it runs as OS user {user!r}, which cannot "
            f"reach {cfg.state_dir}: {blocker} (mode {blocker.stat().st_mode & 0o777:o}, owner "
            f"uid {blocker.stat().st_uid}) is not traversable for it. Use a state_dir under a "
            f"world-traversable path (e.g. /var/tmp/...) or `chmod o+x {blocker}`."
        )


def _write_settings(cfg: PostgresConfig) -> str:
    """Our settings, included last from postgresql.conf, so they win over initdb's."""

    def quoted(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    lines = [
        "# Generated by deploy/stack/postgres.py on every start; edits are overwritten.",
        f"listen_addresses = {quoted(HOST)}",
        f"port = {cfg.port}",
        f"unix_socket_directories = {quoted(str(cfg.socket_dir))}",
        "unix_socket_permissions = 0700",
        "password_encryption = 'scram-sha-256'",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "log_timezone = 'UTC'",
        "timezone = 'UTC'",
    ]
    if not cfg.durable:
        lines += [
            "# durable=False: a crash of the machine may lose or corrupt this cluster.",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
        ]
    return "\n".join(lines) + "\n"


def _initdb(cfg: PostgresConfig, user: str | None, bin_dir: Path) -> None:
    """initdb into a temp dir, then rename: an interrupted initdb never looks initialized."""
    tmp = cfg.state_dir / "data.initdb-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _run(
        user,
        [
            str(bin_dir / "initdb"),
            "-D",
            str(tmp),
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            *([] if cfg.durable else ["--no-sync"]),
        ],
        cwd=cfg.state_dir,
    )
    with (tmp / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# Added by deploy/stack/postgres.py\n{_INCLUDE_LINE}\n")
    tmp.rename(cfg.data_dir)


def _install_settings(cfg: PostgresConfig, user: str | None) -> None:
    target = cfg.data_dir / "alliance.conf"
    tmp = cfg.data_dir / "alliance.conf.tmp"
    tmp.write_text(_write_settings(cfg))
    if user is not None:
        owner = pwd.getpwnam(user)
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
    tmp.replace(target)


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (serializes concurrent start/stop calls,
    also across processes)."""
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Process inspection


def _postmaster(cfg: PostgresConfig) -> tuple[int, int] | None:
    """(pid, port) of the live postmaster of ``data_dir``, from ``postmaster.pid``."""
    try:
        lines = (cfg.data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (FileNotFoundError, IndexError, ValueError, PermissionError):
        return None
    if not alive(pid) or str(cfg.data_dir) not in _cmdline(pid):
        return None  # not running, or a stale pid file whose pid now belongs to another process
    return pid, port


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


# --------------------------------------------------------------------------------------------
# Public API


def status(cfg: PostgresConfig) -> str | None:
    """``"listening on 127.0.0.1:PORT (pid N)"`` if the postmaster runs and its TCP port accepts
    connections, else None."""
    found = _postmaster(cfg)
    if found is None or not _port_open(found[1]):
        return None
    pid, port = found
    return f"listening on {HOST}:{port} (pid {pid})"


def start(cfg: PostgresConfig, timeout_s: float = 60) -> None:
    """Start the cluster for ``cfg.state_dir`` unless it runs; ensure the role and database.

    Idempotent. initdb runs only if ``data_dir`` is not a cluster yet. Raises
    :class:`PostgresStackError` (with the tail of the server log) if the server does not accept
    connections within ``timeout_s``, or if it already runs on a port other than ``cfg.port``.
    """
    bin_dir = ensure_installed()
    user = _run_as_user()
    _prepare_state_dir(cfg, user)
    with _locked(cfg.state_dir / ".lock"):
        _start(cfg, timeout_s, user, bin_dir)


def _start(cfg: PostgresConfig, timeout_s: float, user: str | None, bin_dir: Path) -> None:
    running = _postmaster(cfg)
    if running is not None and running[1] != cfg.port:
        raise PostgresStackError(
            f"the cluster in {cfg.data_dir} already runs on port {running[1]} (pid "
            f"{running[0]}), not {cfg.port}; stop it first"
        )
    if running is None:
        if not (cfg.data_dir / "PG_VERSION").is_file():
            if cfg.data_dir.exists():
                raise PostgresStackError(
                    f"{cfg.data_dir} exists but is not a PostgreSQL cluster; remove it"
                )
            _initdb(cfg, user, bin_dir)
        _install_settings(cfg, user)
        proc = _run(
            user,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(cfg.data_dir),
                "-l",
                str(cfg.log_file),
                "-w",
                "-t",
                str(max(1, int(timeout_s))),
                "start",
            ],
            cwd=cfg.state_dir,
            timeout_s=timeout_s + 10,
            check=False,
        )
        if proc.returncode != 0:
            _stop(cfg, 30)
            raise PostgresStackError(
                f"PostgreSQL did not start on {HOST}:{cfg.port} within {timeout_s:g}s:\n"
                f"{proc.stdout}{proc.stderr}\n--- {cfg.log_file} ---\n{_tail(cfg.log_file)}"
            )
    _ensure_role_and_database(cfg, user, bin_dir)
    for database in ("template1", cfg.database):
        _ensure_extension(cfg, user, bin_dir, database)
    if not _port_open(cfg.port):
        raise PostgresStackError(f"PostgreSQL runs but {HOST}:{cfg.port} does not accept")


def _psql(
    cfg: PostgresConfig,
    user: str | None,
    bin_dir: Path,
    sql: str,
    database: str = "postgres",
    **variables: str,
) -> str:
    """Run ``sql`` in ``database`` as the superuser over the unix socket; ``:'name'``
    interpolates variables.

    Variables are set with ``\\set`` in the script on stdin, not on the command line, so a
    password never shows up in ``ps``.
    """
    cmd = [
        str(bin_dir / "psql"),
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        str(cfg.socket_dir),
        "-p",
        str(cfg.port),
        "-U",
        SUPERUSER,
        "-d",
        database,
    ]
    script = "".join(f"\\set {name} {_psql_quote(value)}\n" for name, value in variables.items())
    return _run(user, [*cmd, "-f", "-"], cwd=cfg.state_dir, stdin=script + sql).stdout


def _psql_quote(value: str) -> str:
    """A single-quoted psql meta-command argument (backslash escapes are interpreted)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


_ENSURE_ROLE_AND_DB = r"""
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
"""


def _ensure_role_and_database(cfg: PostgresConfig, user: str | None, bin_dir: Path) -> None:
    """Idempotently: the role exists with ``cfg.password``, and ``cfg.database`` exists."""
    _psql(
        cfg,
        user,
        bin_dir,
        _ENSURE_ROLE_AND_DB,
        role=cfg.user,
        password=cfg.password,
        db=cfg.database,
    )


def _ensure_extension(cfg: PostgresConfig, user: str | None, bin_dir: Path, database: str) -> None:
    _psql(cfg, user, bin_dir, f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}", database)


def ensure_extension(cfg: PostgresConfig, database: str) -> None:
    """Idempotently create :data:`EXTENSION` in ``database`` (running, connectable), as the
    superuser: for a database made before template1 had it."""
    _ensure_extension(cfg, _run_as_user(), ensure_installed(), database)


def stop(cfg: PostgresConfig, timeout_s: float = 60) -> None:
    """Stop the cluster (``pg_ctl stop -m fast``). Idempotent; a no-op if it does not run.

    Never leaves the postmaster behind: if the fast shutdown does not finish within
    ``timeout_s`` it escalates to ``-m immediate`` and finally SIGKILL.
    """
    if not cfg.state_dir.is_dir():
        return
    with _locked(cfg.state_dir / ".lock"):
        _stop(cfg, timeout_s)


def _stop(
    cfg: PostgresConfig, timeout_s: float, modes: tuple[str, ...] = ("fast", "immediate")
) -> None:
    running = _postmaster(cfg)
    if running is None:
        return
    pid = running[0]
    user = _run_as_user()
    bin_dir = ensure_installed()
    for mode in modes:
        _run(
            user,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(cfg.data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                str(max(1, int(timeout_s))),
                "stop",
            ],
            cwd=cfg.state_dir,
            timeout_s=timeout_s + 10,
            check=False,
        )
        if _wait_gone(pid, 5):
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10):
        raise PostgresStackError(f"PostgreSQL postmaster {pid} survived SIGKILL")


def crash(cfg: PostgresConfig, timeout_s: float = 30) -> None:
    """Stop the cluster the way a crash does (``pg_ctl stop -m immediate``: every process
    exits at once, no checkpoint; the next :func:`start` recovers from the WAL). For fault
    tests. Idempotent."""
    if not cfg.state_dir.is_dir():
        return
    with _locked(cfg.state_dir / ".lock"):
        _stop(cfg, timeout_s, modes=("immediate",))


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.asynccontextmanager
async def _maintenance(cfg: PostgresConfig) -> AsyncIterator[AsyncConnection]:
    """An autocommit connection to the ``postgres`` database as ``cfg.user`` (over TCP; the
    server must be running), for statements that cannot run in a transaction."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(
        database_url(cfg, "postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_database(cfg: PostgresConfig, name: str) -> None:
    """Create database ``name`` owned by ``cfg.user`` (which has CREATEDB) unless it exists
    (idempotent, also under concurrent calls)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    async with _maintenance(cfg) as conn:
        exists = await conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        )
        if exists:
            return
        try:
            await conn.execute(text(f"CREATE DATABASE {_ident(name)}"))
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != _DUPLICATE_DATABASE:
                raise


async def drop_database(cfg: PostgresConfig, name: str) -> None:
    """Drop database ``name`` if it exists, closing its connections (idempotent)."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    for attempt in range(30):
        try:
            async with _maintenance(cfg) as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)"))
            return
        except DBAPIError:
            # FORCE may not end a superuser's session (an autovacuum worker still in the
            # database after a bulk load): wait for it to leave
            if attempt == 29:
                raise
            await asyncio.sleep(1)
