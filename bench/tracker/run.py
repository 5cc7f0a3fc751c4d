"""bench/tracker: the click redirect under load, side by side with a bare FastAPI endpoint.

Starts the stack (if needed), one uvicorn worker of the tracker (Kafka acks=all), one of a
bare redirect that does no I/O (the baseline) and one of that bare redirect plus the tracker's
batched Kafka write of each click (the floor: what no tracker can skip), then measures with Debian's load
generators:
- throughput: ``wrk`` (64 connections, 10 s) against each;
- latency at a fixed 1,000 req/s: ``hey`` (10 workers × 100 q/s, redirects not followed).
Prints the figures and ends with the verdict line: the ratio to the bare redirect (target
≥ 0.9) and the tracker's p99 at 1,000 req/s (target ≤ 10 ms).

Run: ``make bench-tracker`` (or ``.venv/bin/python -m bench.tracker.run``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from deploy import procs
from deploy.stack import orchestrate
from services.tracker.links import Link, LinkSigner
from shared.config import REPO_ROOT, Settings
from shared.limits import UNREACHED_LIMITS_ENV

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


def ensure_tools() -> None:
    missing = [t for t in ("wrk", "hey") if shutil.which(t) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def serve(
    name: str, target: str, port: int, env: dict[str, str], run_dir: Path
) -> subprocess.Popen[bytes]:
    log = (run_dir / f"{name}.log").open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            *(["--factory"] if name == "tracker" else []),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        cwd=REPO_ROOT,
    )


def wrk(url: str, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{seconds}s", "-H", f"User-Agent: {UA}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def hey(url: str, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            "10",
            "-q",
            "100",
            "-disable-redirects",
            "-H",
            f"User-Agent: {UA}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"{pct}%+ in ([\d.]+) secs", out)
        figures[f"p{pct}_ms"] = float(m.group(1)) * 1000 if m else float("nan")
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    figures["non_302"] = sum(int(n) for code, n in codes if code != "302")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    ensure_tools()
    settings = Settings()
    stack = orchestrate.up(settings, migrate=False)  # Kafka only: the tracker has no database
    prefix = f"bench-{uuid.uuid4().hex[:6]}-"
    bench_settings = settings.model_copy(update={"topic_prefix": prefix})
    import asyncio

    from deploy.stack import kafka

    asyncio.run(
        kafka.create_topics(stack.kafka.connection, orchestrate.topic_names(bench_settings), 1)
    )
    tracker_port, bare_port, floor_port = 18401, 18402, 18403
    run_dir = Path(tempfile.mkdtemp(prefix="bench-tracker-"))
    env = {
        "ALLIANCE_ENV": "dev",  # the bench runs on the development secrets
        **UNREACHED_LIMITS_ENV,  # one load generator's address: measured, never refused
        "ALLIANCE_KAFKA_BOOTSTRAP": stack.bootstrap,
        "ALLIANCE_TOPIC_PREFIX": prefix,
        "ALLIANCE_SPOOL_DIR": str(run_dir / "spool"),
        "ALLIANCE_TRACKER_SNAPSHOT_DIR": str(run_dir / "tracker"),
    }
    servers = [
        serve("tracker", "services.tracker.app:create_app", tracker_port, env, run_dir),
        serve("bare", "bench.tracker.bare:app", bare_port, env, run_dir),
        serve("floor", "bench.tracker.floor:app", floor_port, env, run_dir),
    ]
    try:
        for port in (tracker_port, bare_port, floor_port):
            procs.wait_ready(f"http://127.0.0.1:{port}/docs", timeout_s=60)
        code = LinkSigner.from_config(settings.link_keys).sign(Link("aff-bench", "s-bench", "p1"))
        urls = {
            name: f"http://127.0.0.1:{port}/r/{code}"
            for name, port in (
                ("bare", bare_port),
                ("floor", floor_port),
                ("tracker", tracker_port),
            )
        }
        for url in urls.values():
            wrk(url, 2)  # warm up
        rps = {name: wrk(url, args.seconds) for name, url in urls.items()}
        time.sleep(1)
        lat = {name: hey(url, args.seconds) for name, url in urls.items()}
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    ratio, floor_ratio = rps["tracker"] / rps["bare"], rps["floor"] / rps["bare"]
    print("bench/tracker — one uvicorn worker each, Kafka acks=all, idempotent producer")
    names = {"bare": "bare FastAPI", "floor": "bare + Kafka", "tracker": "tracker /r/{code}"}
    print(f"{'':28}" + "".join(f"{names[n]:>20}" for n in names))
    rows = [
        ("throughput (wrk, req/s)", lambda n: f"{rps[n]:.0f}"),
        ("at 1,000 req/s: achieved", lambda n: f"{lat[n]['rps']:.0f}"),
        ("at 1,000 req/s: p50 (ms)", lambda n: f"{lat[n]['p50_ms']:.2f}"),
        ("at 1,000 req/s: p99 (ms)", lambda n: f"{lat[n]['p99_ms']:.2f}"),
        ("non-302 answers", lambda n: f"{lat[n]['non_302']:.0f}"),
        ("ratio to bare", lambda n: f"{rps[n] / rps['bare']:.2f}"),
    ]
    for label, cell in rows:
        print(f"{label:28}" + "".join(f"{cell(n):>20}" for n in names))
    p99 = lat["tracker"]["p99_ms"]
    print(
        f"bench-tracker: service {rps['tracker']:,.0f}/s, bare {rps['bare']:,.0f}/s, "
        f"ratio {ratio:.2f} (target ≥ 0.9; bare + Kafka alone {floor_ratio:.2f}), "
        f"p99 {p99:.1f} ms at 1,000 req/s (target ≤ 10 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
