"""A real, local Apache Kafka broker (KRaft, single node), without Docker.

The broker's jars come from Maven Central through ``deploy/kafka/pom.xml`` (the pom is the one
place the Kafka version is written down) and are cached outside the repository, by default in
``~/.cache/alliance/kafka-<version>/libs`` (``ALLIANCE_KAFKA_CACHE`` replaces
``~/.cache/alliance``). The broker runs as ``java -cp '<libs>/*' kafka.Kafka server.properties``
in combined broker+controller mode, listening on 127.0.0.1 only.

Contracts:

* :func:`ensure_jars` is idempotent: it runs Maven only when the cached classpath is missing or
  was built from a different pom, and never leaves a half-populated ``libs`` dir behind.
* :func:`start` is idempotent: a broker that is already running for ``state_dir`` is left alone
  (and waited for, if it is still starting). When it returns, the broker answers metadata
  requests and coordinates consumer groups. When it raises, it has not left behind a broker
  process that it started.
* :func:`stop` is idempotent and never leaves a broker process for ``state_dir`` behind.
* :func:`create_topics` is idempotent: topics that already exist are fine.

Everything a broker writes lives under ``state_dir``::

    state_dir/server.properties   generated on every start
    state_dir/log4j2.properties   generated on every start
    state_dir/data/               KRaft metadata log and topic data (formatted once)
    state_dir/logs/server.log     the broker's INFO log (rolled, 3 x 10 MB)
    state_dir/kafka.log           stdout/stderr of the JVM: WARN and above, JVM errors
    state_dir/kafka.pid           pid of the broker JVM
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from deploy.procs import alive
from shared.config import KafkaConnection

#: deploy/kafka/pom.xml
POM = Path(__file__).resolve().parents[1] / "kafka" / "pom.xml"

HOST = "127.0.0.1"
NODE_ID = 1
#: the broker's heap; ALLIANCE_KAFKA_HEAP (e.g. 2g) raises it for a stack that many test runs share
HEAP_OPTS = ("-Xms256m", "-Xmx512m")


def _heap_opts() -> tuple[str, ...]:
    heap = os.environ.get("ALLIANCE_KAFKA_HEAP", "").strip()
    if not heap:
        return HEAP_OPTS
    if not re.fullmatch(r"[1-9][0-9]*[mg]", heap):
        raise KafkaStackError(f"ALLIANCE_KAFKA_HEAP={heap!r}: expected a size such as 512m or 2g")
    return ("-Xms256m", f"-Xmx{heap}")


JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
_COMPLETE_MARKER = ".complete"
_MVN_TIMEOUT_S = 900.0
_READINESS_GROUP = "alliance-stack-readiness"

T = TypeVar("T")


class KafkaStackError(RuntimeError):
    """The local broker could not be installed, started or stopped."""


def _read_kafka_version(pom: Path = POM) -> str:
    """The Kafka version the pom pins (``<properties><kafka.version>``)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise KafkaStackError(f"{pom} does not define <properties><kafka.version>")
    return (node.text or "").strip()


KAFKA_VERSION = _read_kafka_version()


def default_cache_dir() -> Path:
    """``$ALLIANCE_KAFKA_CACHE`` if set, else ``~/.cache/alliance``."""
    override = os.environ.get("ALLIANCE_KAFKA_CACHE")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "alliance"


@dataclass(frozen=True)
class KafkaConfig:
    """Where and how the local broker runs.

    ``state_dir`` holds everything the broker writes (see the module docstring); ``cache_dir``
    is the base of the jar cache, shared by all checkouts on the machine.
    """

    state_dir: Path
    port: int = 9092
    controller_port: int = 9093
    cache_dir: Path = field(default_factory=default_cache_dir)
    #: more client listeners beside PLAINTEXT on ``port``, as (security protocol, port) pairs,
    #: e.g. ``(("SASL_PLAINTEXT", 9094),)``; named after their protocol, so their settings are
    #: ``listener.name.sasl_plaintext.…`` in ``extra_properties``. None by default.
    extra_listeners: tuple[tuple[str, int], ...] = ()
    #: server properties added to (or replacing) :func:`server_properties`' (SASL users, TLS
    #: keystores of the extra listeners). None by default.
    extra_properties: tuple[tuple[str, str], ...] = ()

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def connection(self) -> KafkaConnection:
        """The broker's own PLAINTEXT listener on loopback (the extra ones are for tests of
        clients with TLS or SASL)."""
        return KafkaConnection(self.bootstrap, {"security_protocol": "PLAINTEXT"})

    @property
    def libs_dir(self) -> Path:
        return self.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.state_dir / "log4j2.properties"

    @property
    def console_log(self) -> Path:
        return self.state_dir / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "kafka.pid"


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (serializes concurrent start/stop/fetch
    calls, also across processes)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Jars


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def ensure_jars(cfg: KafkaConfig) -> Path:
    """Make sure the broker's runtime classpath is in the cache; return the ``libs`` dir.

    Idempotent: Maven runs only if ``libs`` is missing or was fetched from a different pom
    (a ``.complete`` marker holds the pom's sha256). Jars are fetched into a sibling temp dir
    and renamed into place, so an interrupted download never looks complete.
    """
    libs = cfg.libs_dir
    digest = _pom_digest()
    marker = libs / _COMPLETE_MARKER
    if marker.is_file() and marker.read_text().strip() == digest:
        return libs
    with _locked(libs.parent / ".lock"):
        if not (marker.is_file() and marker.read_text().strip() == digest):
            _fetch_jars(libs, digest)
    return libs


def _fetch_jars(libs: Path, digest: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaStackError("Maven (`mvn`) is not on PATH; it is needed to fetch Kafka's jars")
    libs.parent.mkdir(parents=True, exist_ok=True)
    tmp = libs.parent / f"libs.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S, check=False
        )
        if proc.returncode != 0:
            raise KafkaStackError(
                f"fetching Kafka jars failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}"
            )
        if not any(tmp.glob("kafka_2.13-*.jar")):
            raise KafkaStackError(f"Maven succeeded but put no kafka_2.13 jar into {tmp}")
        (tmp / _COMPLETE_MARKER).write_text(digest + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Generated configuration


def server_properties(cfg: KafkaConfig) -> dict[str, str]:
    """The broker configuration: single-node KRaft, broker+controller, 127.0.0.1 only.

    The quorum is static (``controller.quorum.voters``), so changing ``controller_port``
    between runs of the same ``state_dir`` is fine.
    """
    extra = "".join(f",{protocol}://{HOST}:{port}" for protocol, port in cfg.extra_listeners)
    extra_map = "".join(f",{protocol}:{protocol}" for protocol, _ in cfg.extra_listeners)
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{cfg.controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{cfg.port},CONTROLLER://{HOST}:{cfg.controller_port}"
        + extra,
        "advertised.listeners": f"PLAINTEXT://{HOST}:{cfg.port}" + extra,
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" + extra_map,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(cfg.data_dir),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # one node: a few coordinator partitions start faster than the default 50
        "offsets.topic.num.partitions": "5",
        **dict(cfg.extra_properties),
    }


_LOG4J2 = """\
# Generated by deploy/stack/kafka.py on every start.
status = warn
name = alliance-local-kafka
# Appenders flush every event; no hook needed, and none avoids "Unable to register Log4j
# shutdown hook because JVM is shutting down" from threads that first log during shutdown.
shutdownHook = disable

appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = WARN

appender.server.type = RollingFile
appender.server.name = SERVER
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 10MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3

rootLogger.level = INFO
rootLogger.appenderRef.console.ref = STDOUT
rootLogger.appenderRef.server.ref = SERVER
"""


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    lines = ["# Generated by deploy/stack/kafka.py on every start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in props.items()]
    _atomic_write(path, "\n".join(lines) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaStackError("`java` (17 or newer) is not on PATH and JAVA_HOME is not set")
    return java


def _java_cmd(cfg: KafkaConfig, libs: Path, main_class: str, *args: str) -> list[str]:
    return [
        _java(),
        *_heap_opts(),
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={cfg.log4j_file}",
        f"-Dkafka.logs.dir={cfg.logs_dir}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def new_cluster_id(token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters),
    as ``kafka-storage random-uuid`` prints it, never starting with '-' (the storage tool would
    read it as an option)."""
    while True:
        cid = base64.urlsafe_b64encode(token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _is_formatted(cfg: KafkaConfig) -> bool:
    return (cfg.data_dir / "meta.properties").is_file()


def _format_storage(cfg: KafkaConfig, libs: Path) -> None:
    """Format ``data_dir`` for KRaft with a fresh cluster id (only called when unformatted)."""
    cmd = _java_cmd(
        cfg,
        libs,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        new_cluster_id(),
        "--config",
        str(cfg.properties_file),
    )
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, check=False, cwd=cfg.state_dir
    )
    if proc.returncode != 0:
        raise KafkaStackError(
            f"formatting Kafka storage failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}"
        )


# --------------------------------------------------------------------------------------------
# Processes


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_our_broker(cfg: KafkaConfig, pid: int) -> bool:
    """True if ``pid`` is a live ``kafka.Kafka`` JVM started with this ``state_dir``'s config."""
    args = _cmdline(pid)
    return alive(pid) and "kafka.Kafka" in args and str(cfg.properties_file) in args


def _broker_pids(cfg: KafkaConfig) -> set[int]:
    """Every live broker JVM for ``state_dir``: the pid file's, and any found in /proc."""
    pids: set[int] = set()
    recorded = _read_pid(cfg)
    if recorded is not None and _is_our_broker(cfg, recorded):
        pids.add(recorded)
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _is_our_broker(cfg, int(entry.name)):
                pids.add(int(entry.name))
    return pids


def _read_pid(cfg: KafkaConfig) -> int | None:
    try:
        return int(cfg.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _port_open(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _log_tails(cfg: KafkaConfig) -> str:
    return (
        f"--- {cfg.console_log} (WARN+) ---\n{_tail(cfg.console_log)}\n"
        f"--- {cfg.logs_dir / 'server.log'} ---\n{_tail(cfg.logs_dir / 'server.log', 25)}"
    )


def _spawn_detached(cmd: list[str], log: Path, cwd: Path) -> int:
    """Start ``cmd`` in a new session, not as our child; return its pid.

    A shell started in a new session backgrounds the command and prints its pid, then exits;
    the command is re-parented to init, so it survives us and never lingers as our zombie.
    stdin is /dev/null, stdout and stderr append to ``log``.
    """
    script = 'log="$1"; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'
    proc = subprocess.run(
        ["/bin/sh", "-c", script, "sh", str(log), *cmd],
        capture_output=True,
        text=True,
        start_new_session=True,
        cwd=cwd,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise KafkaStackError(f"could not start {cmd[0]}: {proc.stdout}{proc.stderr}")
    return int(proc.stdout.strip())


def _run_in_fresh_loop(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async probe on its own event loop in a worker thread.

    Works whether or not the caller is itself inside a running event loop.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()


async def _probe_ready(kafka: KafkaConnection) -> bool:
    """True if the broker answers a metadata request listing itself as a live broker, and can
    coordinate consumer groups.

    The FindCoordinator request makes a fresh broker create ``__consumer_offsets``; waiting for
    it here means the first consumer group join after :func:`start` does not go through
    aiokafka's "Group Coordinator Request failed: GroupCoordinatorNotAvailableError" retries.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=5_000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        if not any(b.get("node_id") == NODE_ID for b in cluster.get("brokers") or []):
            return False
        return bool(await admin.find_coordinator(_READINESS_GROUP) == NODE_ID)
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _answers(cfg: KafkaConfig) -> bool:
    if not _port_open(cfg.port):
        return False
    return _run_in_fresh_loop(lambda: _probe_ready(cfg.connection))


# --------------------------------------------------------------------------------------------
# Public API


def status(cfg: KafkaConfig) -> str | None:
    """``"listening on 127.0.0.1:PORT (pid N)"`` if the broker runs and its port accepts
    connections, else None. Cheap: a pid check and a TCP connect, no Kafka request."""
    pid = _read_pid(cfg)
    if pid is None or not _is_our_broker(cfg, pid) or not _port_open(cfg.port):
        return None
    return f"listening on {cfg.bootstrap} (pid {pid})"


def start(cfg: KafkaConfig, timeout_s: float = 90) -> None:
    """Start the broker for ``cfg.state_dir`` unless it is already running; wait until ready.

    Idempotent. Ready means: the broker answers a metadata request on ``cfg.port``, lists
    itself, and has a group coordinator (``__consumer_offsets`` exists). On first use this
    fetches the jars (:func:`ensure_jars`) and formats the storage.
    Raises :class:`KafkaStackError` (with the tail of the logs) if the broker dies or is not
    ready within ``timeout_s``; in that case no broker process it started is left behind.
    Concurrent calls for the same ``state_dir`` are serialized with a lock file.
    """
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cfg.state_dir / ".lock"):
        _start(cfg, timeout_s)


def _start(cfg: KafkaConfig, timeout_s: float) -> None:
    running = _broker_pids(cfg)
    if running:
        # Already running (or still starting, e.g. a concurrent start): just wait for it.
        pid = max(running)
        if _read_pid(cfg) != pid:
            _atomic_write(cfg.pid_file, f"{pid}\n")
        _wait_ready(cfg, pid, timeout_s, started_here=False)
        return

    cfg.pid_file.unlink(missing_ok=True)
    for port in (cfg.port, cfg.controller_port, *(p for _, p in cfg.extra_listeners)):
        if not _port_free(port):
            raise KafkaStackError(f"port {HOST}:{port} is already in use by another process")

    libs = ensure_jars(cfg)
    cfg.logs_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(cfg.log4j_file, _LOG4J2)
    _write_properties(cfg.properties_file, server_properties(cfg))
    if not _is_formatted(cfg):
        _format_storage(cfg, libs)

    with cfg.console_log.open("a") as log:
        log.write(f"\n=== starting Kafka {KAFKA_VERSION} at {time.strftime('%F %T')} ===\n")
    cmd = _java_cmd(cfg, libs, "kafka.Kafka", str(cfg.properties_file))
    pid = _spawn_detached(cmd, cfg.console_log, cfg.state_dir)
    _atomic_write(cfg.pid_file, f"{pid}\n")
    _wait_ready(cfg, pid, timeout_s, started_here=True)


def _wait_ready(cfg: KafkaConfig, pid: int, timeout_s: float, *, started_here: bool) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not alive(pid):
            cfg.pid_file.unlink(missing_ok=True)
            raise KafkaStackError(f"Kafka (pid {pid}) exited during startup\n{_log_tails(cfg)}")
        if _answers(cfg):
            return
        if time.monotonic() >= deadline:
            if started_here:
                _stop(cfg, 30)
            what = "was stopped" if started_here else "was already running; `stop` it first"
            raise KafkaStackError(
                f"Kafka (pid {pid}) did not answer on {cfg.bootstrap} within {timeout_s:g}s "
                f"and {what}\n{_log_tails(cfg)}"
            )
        time.sleep(0.25)


def stop(cfg: KafkaConfig, timeout_s: float = 30) -> None:
    """Stop the broker for ``cfg.state_dir``: SIGTERM, then SIGKILL after ``timeout_s``.

    Idempotent; a no-op if nothing runs. Afterwards no broker JVM for this ``state_dir`` is
    left (found by pid file and by scanning /proc) and the pid file is gone.
    """
    if not cfg.state_dir.is_dir():
        _stop(cfg, timeout_s)  # nothing to lock; still reap a broker whose dir was deleted
        return
    with _locked(cfg.state_dir / ".lock"):
        _stop(cfg, timeout_s)


def _stop(cfg: KafkaConfig, timeout_s: float, *, crash: bool = False) -> None:
    pids = remaining = _broker_pids(cfg)
    if not crash:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        remaining = _wait_gone(pids, timeout_s)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if _wait_gone(remaining, 10):
        raise KafkaStackError(f"Kafka processes {sorted(remaining)} survived SIGKILL")
    cfg.pid_file.unlink(missing_ok=True)


def kill(cfg: KafkaConfig) -> None:
    """SIGKILL the broker for ``cfg.state_dir``: a crash, no clean shutdown (the next
    :func:`start` recovers its logs). For fault tests. Idempotent."""
    with _locked(cfg.state_dir / ".lock"):
        _stop(cfg, 0, crash=True)


def _wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    living = {p for p in pids if alive(p)}
    while living and time.monotonic() < deadline:
        time.sleep(0.1)
        living = {p for p in living if alive(p)}
    return living


async def create_topics(
    kafka: KafkaConnection,
    topics: dict[str, int],
    replication: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create ``topics`` (name -> partition count) in the cluster ``kafka`` (its bootstrap and
    connection security: ``Settings.kafka``) unless they exist, with ``configs`` (name ->
    topic configuration); wait until they have leaders for all their partitions.

    Idempotent: an existing topic keeps its partition count, and gets the values of
    ``configs`` it does not have yet (its other dynamic settings are kept).
    Any other broker error raises the matching ``aiokafka.errors`` exception.
    """
    if not topics:
        return
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    configs = configs or {}
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=15_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(name, partitions, replication, topic_configs=dict(configs.get(name, {})))
                for name, partitions in topics.items()
            ]
        )
        existing = []
        for name, code, message in (t[:3] for t in response.topic_errors):
            if code == TopicAlreadyExistsError.errno:
                existing.append(name)
            elif code != 0:
                raise for_code(code)(f"creating topic {name!r}: {message}")
        await _ensure_configs(admin, {n: configs[n] for n in existing if configs.get(n)})
        await _wait_for_leaders(admin, list(topics))
    finally:
        await admin.close()


async def topic_configs(admin: Any, names: list[str]) -> dict[str, dict[str, tuple[str, bool]]]:
    """Each topic's configuration: name -> (value, set on the topic itself)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import for_code

    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    )
    out: dict[str, dict[str, tuple[str, bool]]] = {}
    for response in responses:
        for code, message, _kind, name, entries in (r[:5] for r in response.resources):
            if code != 0:
                raise for_code(code)(f"describing topic {name!r}: {message}")
            # (name, value, read_only, config_source, …): source 1 is DYNAMIC_TOPIC_CONFIG
            out[name] = {e[0]: (e[1], e[3] == _DYNAMIC_TOPIC_CONFIG) for e in entries}
    return out


_DYNAMIC_TOPIC_CONFIG = 1


async def _ensure_configs(admin: Any, wanted: Mapping[str, Mapping[str, str]]) -> None:
    """Give existing topics the configuration values they lack. AlterConfigs replaces a
    topic's whole dynamic configuration, so the values set on it before are sent again."""
    if not wanted:
        return
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import for_code

    current = await topic_configs(admin, list(wanted))
    changes = []
    for name, values in wanted.items():
        have = current.get(name, {})
        if all(have.get(k, ("", False))[0] == v for k, v in values.items()):
            continue
        dynamic = {k: value for k, (value, own) in have.items() if own}
        changes.append(ConfigResource(ConfigResourceType.TOPIC, name, {**dynamic, **values}))
    if not changes:
        return
    for response in await admin.alter_configs(changes):
        for code, message, _kind, name in (r[:4] for r in response.resources):
            if code != 0:
                raise for_code(code)(f"configuring topic {name!r}: {message}")


async def _wait_for_leaders(admin: Any, names: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        if all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        if time.monotonic() >= deadline:
            raise KafkaStackError(f"topics {names} have no leaders after {timeout_s:g}s")
        await asyncio.sleep(0.1)
