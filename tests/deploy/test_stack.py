"""The project's own Kafka and PostgreSQL (deploy/stack): real processes, no Docker.

Kafka: one broker for the whole module, on free ports in a temp state dir; aiokafka produces
idempotently with acks=all, a consumer group commits manually, and a restarted consumer
resumes right after the committed offset. PostgreSQL: start/stop are idempotent, the app role
connects over TCP with its password, and test databases can be created.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.stack import kafka, postgres
from tests.conftest import free_ports

pytestmark = pytest.mark.integration


def _pids_with_arg(needle: str) -> set[int]:
    """Live processes whose command line mentions ``needle``."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = _state(entry / "stat")
        except OSError:
            continue
        if state != "Z" and needle.encode() in cmdline:
            found.add(int(entry.name))
    return found


def _state(stat: Path) -> str:
    """The state letter of /proc/PID/stat (``Z``: exited, waiting to be reaped by init)."""
    return stat.read_text().rsplit(")", 1)[-1].split()[0]


def _exists(pid: int) -> bool:
    """True if ``pid`` is a process that has not exited (zombies do not count)."""
    try:
        return _state(Path(f"/proc/{pid}/stat")) != "Z"
    except OSError:
        return False


def _children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pid:
                found.add(int(entry.name))
    return found


def _pid_of(status: str | None) -> int:
    assert status is not None
    return int(status.rsplit("pid ", 1)[1].rstrip(")"))


# --------------------------------------------------------------------------------------------
# Kafka


@pytest.fixture(scope="module")
def kafka_cfg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kafka.KafkaConfig]:
    """One broker for the module. Tests call ``kafka.start`` themselves (a no-op when it runs),
    so they do not depend on the order they run in."""
    port, controller_port = free_ports(2)
    cfg = kafka.KafkaConfig(
        state_dir=tmp_path_factory.mktemp("kafka"), port=port, controller_port=controller_port
    )
    kafka.start(cfg)
    try:
        yield cfg
    finally:
        kafka.stop(cfg)
        assert not _pids_with_arg(str(cfg.state_dir))


async def test_kafka_produce_consume_commit_resume(kafka_cfg: kafka.KafkaConfig) -> None:
    kafka.start(kafka_cfg)
    bootstrap = kafka_cfg.bootstrap
    topic = f"infra-{uuid.uuid4().hex[:8]}"
    await kafka.create_topics(kafka_cfg.connection, {topic: 1})
    await kafka.create_topics(kafka_cfg.connection, {topic: 1})  # idempotent
    tp = TopicPartition(topic, 0)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        offsets = [
            (await producer.send_and_wait(topic, f"v{i}".encode(), key=b"k", partition=0)).offset
            for i in range(10)
        ]
    finally:
        await producer.stop()
    assert offsets == list(range(10))

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"g-{topic}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def read(c: AIOKafkaConsumer, n: int) -> list[tuple[int, bytes]]:
        got: list[tuple[int, bytes]] = []
        async with asyncio.timeout(30):
            while len(got) < n:
                for records in (await c.getmany(timeout_ms=500)).values():
                    got.extend((r.offset, r.value) for r in records)
        return got[:n]

    first = consumer()
    await first.start()
    try:
        processed = await read(first, 6)
        assert processed == [(i, f"v{i}".encode()) for i in range(6)]
        await first.commit({tp: processed[-1][0] + 1})
        assert await first.committed(tp) == 6
    finally:
        await first.stop()

    second = consumer()
    await second.start()
    try:
        assert await second.committed(tp) == 6
        rest = await read(second, 4)
        assert rest == [(i, f"v{i}".encode()) for i in range(6, 10)]
    finally:
        await second.stop()


def test_kafka_start_status_stop_are_idempotent(kafka_cfg: kafka.KafkaConfig) -> None:
    kafka.start(kafka_cfg)
    pid = _pid_of(kafka.status(kafka_cfg))
    kafka.start(kafka_cfg)
    assert _pid_of(kafka.status(kafka_cfg)) == pid
    assert kafka.status(kafka_cfg) == f"listening on 127.0.0.1:{kafka_cfg.port} (pid {pid})"

    kafka.stop(kafka_cfg)
    kafka.stop(kafka_cfg)
    assert kafka.status(kafka_cfg) is None
    assert not kafka_cfg.pid_file.exists()
    assert not _pids_with_arg(str(kafka_cfg.state_dir))

    kafka.start(kafka_cfg)  # restarts on the existing (formatted) storage
    assert _pid_of(kafka.status(kafka_cfg)) != pid


# --------------------------------------------------------------------------------------------
# PostgreSQL


@pytest.fixture
def pg_cfg() -> Iterator[postgres.PostgresConfig]:
    # Not under tmp_path: as root the server runs as `postgres`, which cannot traverse
    # pytest's 0700 /tmp/pytest-of-root. A fresh dir directly in the system temp dir works.
    state = Path(tempfile.mkdtemp(prefix="alliance-pg-"))
    cfg = postgres.PostgresConfig(state_dir=state, port=free_ports(1)[0], durable=False)
    try:
        yield cfg
    finally:
        postgres.stop(cfg)
        shutil.rmtree(state, ignore_errors=True)


async def test_postgres_starts_once_answers_and_stops_idempotently(
    pg_cfg: postgres.PostgresConfig,
) -> None:
    asyncpg = importlib.import_module("asyncpg")

    postgres.start(pg_cfg)
    pid = _pid_of(postgres.status(pg_cfg))
    postgres.start(pg_cfg)  # idempotent: same server
    assert postgres.status(pg_cfg) == f"listening on 127.0.0.1:{pg_cfg.port} (pid {pid})"

    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=pg_cfg.port,
        user=pg_cfg.user,
        password=pg_cfg.password,
        database=pg_cfg.database,
    )
    try:
        assert await conn.fetchval("SELECT current_user") == pg_cfg.user
        assert await conn.fetchval("SHOW fsync") == "off"  # durable=False was asked for
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host="127.0.0.1", port=pg_cfg.port, user=pg_cfg.user, password="wrong"
        )

    await postgres.create_database(pg_cfg, "alliance_infra_test")
    await postgres.create_database(pg_cfg, "alliance_infra_test")  # idempotent
    url = postgres.database_url(pg_cfg, "alliance_infra_test")
    assert url == (
        f"postgresql+asyncpg://alliance:alliance@127.0.0.1:{pg_cfg.port}/alliance_infra_test"
    )

    postgres.stop(pg_cfg)
    postgres.stop(pg_cfg)  # idempotent
    assert postgres.status(pg_cfg) is None
    assert not _exists(pid)
    assert not _children_of(pid)
    assert not _pids_with_arg(str(pg_cfg.data_dir))

    postgres.start(pg_cfg)
    postgres.start(pg_cfg)
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=pg_cfg.port,
        user=pg_cfg.user,
        password=pg_cfg.password,
        database="alliance_infra_test",  # survived the restart
    )
    try:
        # made after start: a copy of template1, which has the superuser's extension
        extensions = await conn.fetch("SELECT extname FROM pg_extension")
        assert postgres.EXTENSION in {r["extname"] for r in extensions}
    finally:
        await conn.close()


async def test_topics_get_their_configuration_created_or_existing_other_settings_kept(
    kafka_cfg: kafka.KafkaConfig,
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    kafka.start(kafka_cfg)
    cluster = kafka_cfg.connection
    table, older = f"table-{uuid.uuid4().hex[:8]}", f"older-{uuid.uuid4().hex[:8]}"
    compact = {"cleanup.policy": "compact"}
    await kafka.create_topics(cluster, {older: 1})  # made before configurations existed
    admin = AIOKafkaAdminClient(**cluster.client_options())
    await admin.start()
    try:
        # an operator gave the older topic a retention of its own
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, older, {"retention.ms": "3600000"})]
        )
        await kafka.create_topics(
            cluster, {table: 1, older: 1}, 1, {table: compact, older: compact}
        )
        await kafka.create_topics(
            cluster, {table: 1, older: 1}, 1, {table: compact, older: compact}
        )
        configs = await kafka.topic_configs(admin, [table, older])
    finally:
        await admin.close()
    assert configs[table]["cleanup.policy"] == ("compact", True)
    assert configs[older]["cleanup.policy"] == ("compact", True)
    assert configs[older]["retention.ms"] == ("3600000", True)  # kept
    assert configs[table]["retention.ms"][1] is False  # the broker's default, not set


def test_the_directory_and_catalog_topics_are_compacted_under_the_deployments_names() -> None:
    from deploy.stack.orchestrate import topic_configs
    from shared.config import Settings

    configs = topic_configs(Settings(topic_prefix="t1-"))
    assert configs["t1-directory"]["cleanup.policy"] == "compact"
    assert configs["t1-catalog"]["cleanup.policy"] == "compact"
    assert int(configs["t1-directory"]["min.compaction.lag.ms"]) == 90 * 24 * 3600 * 1000
    assert "retention.ms" not in configs["t1-directory"]
    # the event topics expire after ALLIANCE_RETENTION_TOPIC_HOURS (docs/retention.md)
    assert configs["t1-clicks"] == {"retention.ms": str(168 * 3600 * 1000)}
    hours = topic_configs(Settings(retention_topic_hours=48, retention_idempotency_days=3))
    assert hours["orders"]["retention.ms"] == str(48 * 3600 * 1000)
