"""Test-wide fixtures: the real Kafka + PostgreSQL stack and a log watcher."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings

# The tests run on the development secrets: every Settings() they build and every service
# process they start (which inherits the environment) is a development deployment.
# `make test` exports the same; this covers `pytest` run alone.
os.environ["ALLIANCE_ENV"] = "dev"


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


@pytest.fixture(autouse=True)
def _fail_on_logged_errors(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """A test that logged an unexpected error fails, even if its assertions passed."""
    caplog.set_level(logging.WARNING)
    yield
    if request.node.get_closest_marker("allow_logged_errors"):
        return
    errors = [
        r
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("shared", "services", "deploy")
    ]
    assert not errors, "unexpected errors logged: " + "; ".join(r.getMessage() for r in errors)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_logged_errors: the test expects errors in the log")


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings of the test stack. ``make test`` starts it and passes its ports through the
    environment; run alone, pytest starts one on free ports and stops it at the end."""
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
            "database_url": stack.database_url("alliance_test"),
        }
    )
    try:
        yield settings
    finally:
        if own:
            orchestrate.down(settings)
            shutil.rmtree(state, ignore_errors=True)  # gigabytes of data and logs otherwise


@pytest.fixture(scope="session")
def migrated_db(stack_settings: Settings) -> str:
    """A test database migrated with Alembic (not create_all), once per session."""
    import asyncio

    from deploy.migrations import upgrade
    from deploy.stack import orchestrate, postgres

    stack = orchestrate.Stack.from_settings(stack_settings)
    asyncio.run(postgres.create_database(stack.postgres, "alliance_test"))
    upgrade(stack_settings.database_url)
    return stack_settings.database_url


@pytest.fixture
async def settings(stack_settings: Settings, migrated_db: str) -> Settings:
    """Per-test settings: own topics (``t<uuid>-`` prefix), created before the test."""
    from deploy.stack import kafka, orchestrate

    s = stack_settings.model_copy(
        update={
            "topic_prefix": f"t{uuid.uuid4().hex[:10]}-",
            "topic_partitions": 3,
            "consumer_batch_ms": 50,
        }
    )
    await kafka.create_topics(s.kafka_bootstrap, orchestrate.topic_names(s), 1)
    return s
