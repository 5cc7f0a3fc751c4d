"""Test-wide fixtures: the real Kafka + PostgreSQL stack, a database and topics of its own for
each test, and a guard that fails a test whose set-up, call or tear-down logged an error."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from shared.config import Settings
from shared.limits import UNREACHED_LIMITS_ENV

# The tests run on the development secrets: every Settings() they build and every service
# process they start (which inherits the environment) is a development deployment.
# `make test` exports the same; this covers `pytest` run alone.
os.environ["ALLIANCE_ENV"] = "dev"
# Rate limits and the statement timeout far above what any test does, unless the test is about
# them (tests/shared/test_limits.py and the camp's limit test build their own): the fuzzers and
# the suite's bursts must not meet a 429, nor a loaded machine's slow query a 503.
for _name, _value in {**UNREACHED_LIMITS_ENV, "ALLIANCE_STATEMENT_TIMEOUT_S": "30"}.items():
    os.environ.setdefault(_name, _value)

# `pytester` runs small inner test files (the log guard's own test)
pytest_plugins = ["pytester"]

#: migrated with Alembic once per session; every test gets a copy of its own. Several work trees
#: (each with its own migrations) may share one running stack when each names its own template.
TEMPLATE_DATABASE = os.environ.get("ALLIANCE_TEST_TEMPLATE", "alliance_test")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open while choosing, so no repeats)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------------------------
# The log guard: an error logged by the project's own code fails the test, whichever phase
# (set-up, call, tear-down) logged it, unless the test is marked `allow_logged_errors`.

#: loggers whose errors fail a test (third-party libraries may complain on their own terms)
WATCHED_LOGGERS = ("shared", "services", "deploy")


class _ErrorRecords(logging.Handler):
    """Collects the errors of the watched loggers while one test runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in WATCHED_LOGGERS:
            self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        taken, self.records = self.records, []
        return taken


_error_records = pytest.StashKey[_ErrorRecords]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_logged_errors: the test expects errors in the log")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Watch the root logger for the whole protocol of one test: its set-up, call and
    tear-down, fixtures included (caplog's records of the tear-down are gone by the time
    its report is made)."""
    handler = _ErrorRecords()
    item.stash[_error_records] = handler
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        return (yield)
    finally:
        root.removeHandler(handler)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A phase that logged an unexpected error fails, even if its assertions passed."""
    report = yield
    handler = item.stash.get(_error_records, None)
    errors = handler.take() if handler is not None else []
    if errors and not item.get_closest_marker("allow_logged_errors"):
        message = f"unexpected errors logged during {call.when}: " + "; ".join(
            f"{r.name}: {r.getMessage()}" for r in errors
        )
        if report.passed:
            report.outcome = "failed"
            report.longrepr = message
        else:
            report.sections.append(("logged errors", message))
    return report


# --------------------------------------------------------------------------------------------
# The stack, the template database and each test's own database and topics


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings of the test stack. ``make test`` starts it and passes its ports through the
    environment; run alone, pytest starts one on free ports and stops it at the end.
    ``database_url`` names the template: tests use ``settings``, whose database is their own."""
    from deploy.stack import orchestrate

    own = "ALLIANCE_STATE_DIR" not in os.environ
    if own:
        base = Path(__file__).resolve().parents[1] / ".stack"
        base.mkdir(exist_ok=True)
        state = Path(tempfile.mkdtemp(prefix="test-", dir=base))
        state.chmod(0o755)  # PostgreSQL runs as an unprivileged user when we are root
        kafka_port, controller_port, postgres_port = free_ports(3)
        settings = Settings(
            state_dir=state,
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            postgres_port=postgres_port,
        )
    else:
        settings = Settings()
    stack = orchestrate.up(settings, migrate=False)
    settings = settings.model_copy(
        update={
            "kafka_bootstrap": stack.bootstrap,
            "database_url": stack.database_url(TEMPLATE_DATABASE),
        }
    )
    try:
        yield settings
    finally:
        if own:
            orchestrate.down(settings)
            shutil.rmtree(state, ignore_errors=True)  # gigabytes of data and logs otherwise


def _database_url(settings: Settings, database: str) -> str:
    return make_url(settings.database_url).set(database=database).render_as_string(False)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _maintenance(settings: Settings, *statements: str) -> None:
    """Run ``statements`` outside a transaction (CREATE/ALTER/DROP DATABASE) on the
    ``postgres`` database, so that no connection touches the databases they name."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(
        _database_url(settings, "postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def migrated_db(stack_settings: Settings) -> str:
    """The template database, migrated with Alembic (not create_all) once per session, then
    closed to connections: ``CREATE DATABASE … TEMPLATE`` copies it only while nobody is
    connected, and a test that reached for it by mistake fails at once."""
    import asyncio

    from deploy.migrations import upgrade
    from deploy.stack import orchestrate, postgres

    stack = orchestrate.Stack.from_settings(stack_settings)
    asyncio.run(postgres.create_database(stack.postgres, TEMPLATE_DATABASE))
    template = _ident(TEMPLATE_DATABASE)
    # a stack that outlives the session keeps the template closed: open it to migrate
    asyncio.run(_maintenance(stack_settings, f"ALTER DATABASE {template} ALLOW_CONNECTIONS true"))
    # a template made before template1 had the superuser's extensions gets them now
    postgres.ensure_extension(stack.postgres, TEMPLATE_DATABASE)
    upgrade(stack_settings.database_url)  # its engine is disposed when it returns
    asyncio.run(_maintenance(stack_settings, f"ALTER DATABASE {template} ALLOW_CONNECTIONS false"))
    return TEMPLATE_DATABASE


@pytest.fixture
async def database_url(stack_settings: Settings, migrated_db: str) -> AsyncIterator[str]:
    """A database of the test's own, a copy of the migrated template, dropped afterwards."""
    from deploy.stack import orchestrate, postgres

    name = f"t_{uuid.uuid4().hex[:16]}"
    await _maintenance(
        stack_settings, f"CREATE DATABASE {_ident(name)} TEMPLATE {_ident(migrated_db)}"
    )
    try:
        yield _database_url(stack_settings, name)
    finally:
        cluster = orchestrate.Stack.from_settings(stack_settings).postgres
        await postgres.drop_database(cluster, name)


@pytest.fixture
async def settings(stack_settings: Settings, database_url: str) -> Settings:
    """Per-test settings: a database of its own and own topics (``t<uuid>-`` prefix), created
    before the test."""
    from deploy.stack import kafka, orchestrate

    s = stack_settings.model_copy(
        update={
            "database_url": database_url,
            "topic_prefix": f"t{uuid.uuid4().hex[:10]}-",
            "topic_partitions": 3,
            "consumer_batch_ms": 50,
        }
    )
    await kafka.create_topics(s.kafka, orchestrate.topic_names(s), 1)
    return s
