"""Background processes of `alliance services start|stop`: pid files and log files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def pid_state(pid: int) -> str | None:
    """The process state letter from /proc (``R``, ``S``, ``Z``, ...), None if no process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[-1].split()[0]


def alive(pid: int) -> bool:
    """True if ``pid`` is a running process: not gone, not a zombie (one that is our child is
    reaped on the way; until it can be, it still counts). The one liveness check of the
    launcher, the stack and the services."""
    state = pid_state(pid)
    if state is None:
        return False
    if state in ("Z", "X"):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return False  # another's zombie: gone for every purpose here
        # our child: gone once reaped; a leader whose threads are still exiting shows "Z"
        # with nothing to reap yet, and is still there
        return done != pid
    return True


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def start(name: str, args: list[str], run_dir: Path, env: dict[str, str] | None = None) -> int:
    """Start ``alliance <args>`` detached, logging to ``run_dir/<name>.log``. Idempotent."""
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = run_dir / f"{name}.pid"
    pid = read_pid(pid_file)
    if pid is not None:
        return pid
    log = (run_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def stop(name: str, run_dir: Path, timeout_s: float = 75.0) -> bool:
    """SIGTERM (graceful: the service commits what it processed and publishes what it decided;
    each of its workers has 30 s for that), SIGKILL past the timeout."""
    pid_file = run_dir / f"{name}.pid"
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


class ServiceExited(RuntimeError):
    """The process ended before it was ready; the message ends with its log's last lines."""


def _tail(log: Path | None, lines: int = 5) -> str:
    if log is None:
        return ""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return "; its log ends:\n" + "\n".join(text)


def wait_ready(
    url: str, timeout_s: float = 60.0, *, pid: int | None = None, log: Path | None = None
) -> None:
    """Poll ``url`` until it answers 200, or raise ``TimeoutError``; when given the process
    ``pid``, raise :class:`ServiceExited` (with the end of ``log``) as soon as it has ended,
    e.g. because it refused its configuration."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            raise ServiceExited(f"exited before it was ready{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s: {last}")
