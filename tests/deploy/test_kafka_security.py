"""Kafka with TLS and SASL, as managed services run it (Amazon MSK, Confluent Cloud, Aiven,
Strimzi): one real broker for the module with three client listeners beside its PLAINTEXT one —
SASL_PLAINTEXT and SASL_SSL (SASL/PLAIN, users ``admin`` and ``alliance``) and SSL that
requires a client certificate — and the project's own clients (:mod:`shared.kafka`,
:func:`deploy.stack.kafka.create_topics`) configured only through the ``ALLIANCE_KAFKA_*``
settings. No mocks: every failure below is the broker's or TLS's answer."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from deploy.stack import kafka
from shared.config import Settings
from shared.kafka import committed_offsets_of, end_offsets_of, make_producer, read_topic
from tests.conftest import free_ports
from tests.tls import Certificates, make_certificates

pytestmark = pytest.mark.integration

PASSWORD = "alliance-sasl-password-1"
JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'username="admin" password="admin-secret" user_admin="admin-secret" '
    f'user_alliance="{PASSWORD}";'
)


@dataclass(frozen=True)
class Broker:
    cfg: kafka.KafkaConfig
    sasl_plaintext: int
    sasl_ssl: int
    ssl: int  #: mutual TLS: the client must show a certificate the CA signed
    certs: Certificates


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    certs = make_certificates(tmp_path_factory.mktemp("tls"))
    port, controller, sasl_plaintext, sasl_ssl, ssl = free_ports(5)
    properties = {
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": JAAS,
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": str(certs.server),
        "listener.name.ssl.ssl.keystore.type": "PEM",
        "listener.name.ssl.ssl.keystore.location": str(certs.server),
        "listener.name.ssl.ssl.truststore.type": "PEM",
        "listener.name.ssl.ssl.truststore.location": str(certs.ca),
        "listener.name.ssl.ssl.client.auth": "required",
    }
    cfg = kafka.KafkaConfig(
        state_dir=tmp_path_factory.mktemp("kafka-security"),
        port=port,
        controller_port=controller,
        extra_listeners=(("SASL_PLAINTEXT", sasl_plaintext), ("SASL_SSL", sasl_ssl), ("SSL", ssl)),
        extra_properties=tuple(properties.items()),
    )
    kafka.start(cfg)
    try:
        yield Broker(cfg, sasl_plaintext, sasl_ssl, ssl, certs)
    finally:
        kafka.stop(cfg)


def settings_for(port: int, **security: Any) -> Settings:
    """The settings a deployment would have in its environment, for the listener on ``port``."""
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{port}",
        topic_prefix=f"sec-{uuid.uuid4().hex[:8]}-",
        **security,
    )


def sasl(protocol: str, password: str = PASSWORD, **more: Any) -> dict[str, Any]:
    return {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": "alliance",
        "kafka_sasl_password": password,
        **more,
    }


async def round_trip(settings: Settings) -> None:
    """Everything the project does with Kafka, by its own functions: create topics (``alliance
    topics``, ``stack up``), produce (the services' producer), read a topic (``alliance dlq``,
    rebuild), end offsets and a group's committed offsets (the demo's lag, tools)."""
    topic = settings.topic("clicks")
    await kafka.create_topics(settings.kafka, {topic: 2})
    producer = make_producer(settings.kafka, client_id="alliance-security-test")
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=f"k{i}".encode())
    finally:
        await producer.stop()
    assert sorted(await read_topic(settings.kafka, topic)) == [f"m{i}".encode() for i in range(6)]
    ends = await end_offsets_of(settings.kafka, [topic])
    assert sum(ends.values()) == 6
    group = f"{topic}-group"
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(ends))
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()
    assert await committed_offsets_of(settings.kafka, group) == ends


async def refused(settings: Settings, caplog: pytest.LogCaptureFixture) -> str:
    """Try to create a topic with ``settings``; it must fail (aiokafka raises "Unable to
    bootstrap"). Returns the reason aiokafka logged: what an operator reads in the logs."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        async with asyncio.timeout(60):
            await kafka.create_topics(settings.kafka, {settings.topic("refused"): 1})
    return " ".join(r.getMessage() for r in caplog.records if r.name.startswith("aiokafka"))


class TestSasl:
    async def test_sasl_plaintext_with_the_right_password_works(self, broker: Broker) -> None:
        await round_trip(settings_for(broker.sasl_plaintext, **sasl("SASL_PLAINTEXT")))

    async def test_a_wrong_password_is_refused_by_the_broker(
        self, broker: Broker, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = settings_for(broker.sasl_plaintext, **sasl("SASL_PLAINTEXT", "wrong-password"))
        reason = await refused(settings, caplog)
        assert "Authentication failed" in reason
        assert "wrong-password" not in reason

    async def test_a_producer_with_a_wrong_password_does_not_start(self, broker: Broker) -> None:
        settings = settings_for(broker.sasl_plaintext, **sasl("SASL_PLAINTEXT", "wrong-password"))
        producer = make_producer(settings.kafka)
        with pytest.raises(KafkaConnectionError):
            async with asyncio.timeout(60):
                await producer.start()
        await producer.stop()

    async def test_plaintext_against_the_sasl_listener_is_refused(
        self, broker: Broker, caplog: pytest.LogCaptureFixture
    ) -> None:
        # the broker drops a connection that does not start with a SASL handshake
        reason = await refused(settings_for(broker.sasl_plaintext), caplog)
        assert f"Connection at 127.0.0.1:{broker.sasl_plaintext} closed" in reason


class TestTls:
    async def test_sasl_ssl_with_the_ca_file_works(self, broker: Broker) -> None:
        settings = settings_for(
            broker.sasl_ssl, **sasl("SASL_SSL", kafka_ssl_cafile=broker.certs.ca)
        )
        await round_trip(settings)

    async def test_a_broker_certificate_from_another_ca_is_refused(
        self, broker: Broker, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = settings_for(
            broker.sasl_ssl, **sasl("SASL_SSL", kafka_ssl_cafile=broker.certs.stranger_ca)
        )
        assert "CERTIFICATE_VERIFY_FAILED" in await refused(settings, caplog)

    async def test_the_system_cas_do_not_trust_a_private_ca(
        self, broker: Broker, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = settings_for(broker.sasl_ssl, **sasl("SASL_SSL"))
        assert "CERTIFICATE_VERIFY_FAILED" in await refused(settings, caplog)

    async def test_mutual_tls_with_the_client_certificate_works(self, broker: Broker) -> None:
        settings = settings_for(
            broker.ssl,
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=broker.certs.ca,
            kafka_ssl_certfile=broker.certs.client_cert,
            kafka_ssl_keyfile=broker.certs.client_key,
        )
        await round_trip(settings)

    async def test_mutual_tls_without_a_client_certificate_is_refused(
        self, broker: Broker, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = settings_for(
            broker.ssl, kafka_security_protocol="SSL", kafka_ssl_cafile=broker.certs.ca
        )
        assert f"Connection at 127.0.0.1:{broker.ssl} closed" in await refused(settings, caplog)


class TestExtraListeners:
    def test_none_by_default(self, tmp_path: Path) -> None:
        props = kafka.server_properties(kafka.KafkaConfig(tmp_path, port=1, controller_port=2))
        assert props["listeners"] == "PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2"
        assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1"
        assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        assert "sasl.enabled.mechanisms" not in props

    def test_added_beside_plaintext_with_their_properties(self, tmp_path: Path) -> None:
        cfg = kafka.KafkaConfig(
            tmp_path,
            port=1,
            controller_port=2,
            extra_listeners=(("SASL_SSL", 3),),
            extra_properties=(("sasl.enabled.mechanisms", "PLAIN"),),
        )
        props = kafka.server_properties(cfg)
        assert props["listeners"].endswith(",SASL_SSL://127.0.0.1:3")
        assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1,SASL_SSL://127.0.0.1:3"
        assert props["listener.security.protocol.map"].endswith(",SASL_SSL:SASL_SSL")
        assert props["inter.broker.listener.name"] == "PLAINTEXT"
        assert props["sasl.enabled.mechanisms"] == "PLAIN"
