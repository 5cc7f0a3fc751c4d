"""`alliance stack up | down | status`: the project's own Kafka and PostgreSQL.

Both run from this machine's binaries (Kafka's jars from Maven Central, PostgreSQL from the
system or Debian's package), with data and logs under ``ALLIANCE_STATE_DIR``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from deploy.stack import kafka, postgres
from shared.config import Settings
from shared.events import Topic, topic_config

DATABASE = "alliance"


@dataclass(frozen=True)
class Stack:
    kafka: kafka.KafkaConfig
    postgres: postgres.PostgresConfig

    @classmethod
    def from_settings(cls, settings: Settings) -> Stack:
        return cls(
            kafka.KafkaConfig(
                state_dir=settings.state_dir / "kafka",
                port=settings.kafka_port,
                controller_port=settings.kafka_controller_port,
            ),
            postgres.PostgresConfig(
                state_dir=settings.state_dir / "postgres", port=settings.postgres_port
            ),
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka.port}"

    def database_url(self, database: str = DATABASE) -> str:
        return postgres.database_url(self.postgres, database)


def topic_names(settings: Settings) -> dict[str, int]:
    return {settings.topic(t): settings.topic_partitions for t in Topic}


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic's configuration (:func:`shared.events.topic_config`: compaction, the
    retention of ALLIANCE_RETENTION_TOPIC_HOURS) under the deployment's topic names."""
    return {settings.topic(t): topic_config(t, settings.retention_topic_hours) for t in Topic}


def up(settings: Settings, *, migrate: bool = True) -> Stack:
    """Start PostgreSQL and Kafka (idempotent), migrate, create the topics."""
    from deploy.migrations import upgrade

    stack = Stack.from_settings(settings)
    postgres.ensure_installed()
    postgres.start(stack.postgres)
    asyncio.run(postgres.create_database(stack.postgres, DATABASE))
    kafka.ensure_jars(stack.kafka)
    kafka.start(stack.kafka)
    asyncio.run(
        kafka.create_topics(
            stack.kafka.connection,
            topic_names(settings),
            settings.topic_replication,
            topic_configs(settings),
        )
    )
    if migrate:
        upgrade(stack.database_url())
    return stack


def down(settings: Settings) -> None:
    """Stop both (idempotent); no process is left behind."""
    stack = Stack.from_settings(settings)
    kafka.stop(stack.kafka)
    postgres.stop(stack.postgres)


def status(settings: Settings) -> dict[str, str | None]:
    stack = Stack.from_settings(settings)
    return {"kafka": kafka.status(stack.kafka), "postgres": postgres.status(stack.postgres)}
