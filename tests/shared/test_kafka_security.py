"""The connection security of every Kafka client (TLS, SASL: what managed Kafka wants): the
``ALLIANCE_KAFKA_*`` settings, their validation, the options they give aiokafka, and a scan of
the project's source that no client is built without them. The real broker's answers are in
tests/deploy/test_kafka_security.py."""

from __future__ import annotations

import ast
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.config import REPO_ROOT, KafkaConnection, Settings
from tests.tls import Certificates, make_certificates

PASSWORD = "s3cret-sasl-password-value"

#: aiokafka's clients; the project builds each of them only with a connection's options
CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}
#: the project's code (tests build their own clients for the test broker)
SOURCE_ROOTS = ("shared", "services", "deploy", "bench")
#: what only :meth:`KafkaConnection.client_options` may say
CONNECTION_KEYWORDS = {
    "bootstrap_servers",
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def sasl(protocol: str = "SASL_SSL", **more: Any) -> dict[str, Any]:
    return {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "alliance",
        "kafka_sasl_password": PASSWORD,
        **more,
    }


class TestSettings:
    def test_plaintext_is_the_default(self) -> None:
        settings = Settings(kafka_bootstrap="b1:9092,b2:9092")
        assert settings.kafka_security() == {"security_protocol": "PLAINTEXT"}
        assert settings.kafka.client_options() == {
            "bootstrap_servers": "b1:9092,b2:9092",
            "security_protocol": "PLAINTEXT",
        }

    def test_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in {
            "ALLIANCE_KAFKA_BOOTSTRAP": "broker.example:9096",
            "ALLIANCE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "ALLIANCE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "ALLIANCE_KAFKA_SASL_USERNAME": "alliance",
            "ALLIANCE_KAFKA_SASL_PASSWORD": PASSWORD,
        }.items():
            monkeypatch.setenv(name, value)
        assert Settings().kafka.client_options() == {
            "bootstrap_servers": "broker.example:9096",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "alliance",
            "sasl_plain_password": PASSWORD,
        }

    def test_empty_variables_are_unset(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("MECHANISM", "USERNAME", "PASSWORD"):
            monkeypatch.setenv(f"ALLIANCE_KAFKA_SASL_{name}", "")
        for name in ("CAFILE", "CERTFILE", "KEYFILE"):
            monkeypatch.setenv(f"ALLIANCE_KAFKA_SSL_{name}", "")
        assert Settings().kafka_security() == {"security_protocol": "PLAINTEXT"}
        monkeypatch.setenv("ALLIANCE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        with pytest.raises(ValidationError, match="needs ALLIANCE_KAFKA_SASL_MECHANISM"):
            Settings()

    @pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
    @pytest.mark.parametrize(
        "missing", ["kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"]
    )
    def test_sasl_needs_mechanism_user_and_password(self, protocol: str, missing: str) -> None:
        given = {k: v for k, v in sasl(protocol).items() if k != missing}
        with pytest.raises(ValidationError, match=f"ALLIANCE_{missing.upper()}"):
            Settings(**given)

    def test_sasl_settings_without_a_sasl_protocol_are_refused(self) -> None:
        with pytest.raises(
            ValidationError, match=r"ALLIANCE_KAFKA_SASL_USERNAME.*does not use SASL"
        ):
            Settings(kafka_sasl_username="alliance")

    def test_tls_files_without_a_tls_protocol_are_refused(self) -> None:
        with pytest.raises(ValidationError, match=r"ALLIANCE_KAFKA_SSL_CAFILE.*does not use TLS"):
            Settings(**sasl("SASL_PLAINTEXT", kafka_ssl_cafile=Path("/etc/ca.pem")))

    def test_a_key_needs_its_certificate(self) -> None:
        with pytest.raises(ValidationError, match="KEYFILE needs ALLIANCE_KAFKA_SSL_CERTFILE"):
            Settings(kafka_security_protocol="SSL", kafka_ssl_keyfile=Path("/etc/key.pem"))

    def test_an_unknown_protocol_or_mechanism_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="kafka_security_protocol"):
            Settings(kafka_security_protocol="SSL_SASL")
        with pytest.raises(ValidationError, match="kafka_sasl_mechanism"):
            Settings(**sasl(kafka_sasl_mechanism="GSSAPI"))


class TestThePasswordStaysSecret:
    def test_not_in_the_settings_or_the_connection_shown(self) -> None:
        settings = Settings(**sasl("SASL_PLAINTEXT"))
        for shown in (repr(settings), str(settings), repr(settings.kafka), str(settings.kafka)):
            assert PASSWORD not in shown
        assert settings.kafka.client_options()["sasl_plain_password"] == PASSWORD

    def test_not_in_a_validation_error(self) -> None:
        with pytest.raises(ValidationError) as refused:
            Settings(**sasl(kafka_sasl_mechanism="GSSAPI"))
        assert PASSWORD not in str(refused.value)
        with pytest.raises(ValidationError) as refused:
            Settings(kafka_sasl_password=PASSWORD)  # no SASL protocol
        assert PASSWORD not in str(refused.value)


class TestTlsContext:
    def test_built_from_the_ca_file(self, certs: Certificates) -> None:
        options = Settings(**sasl(kafka_ssl_cafile=certs.ca)).kafka_security()
        context = options["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        subjects = [str(c["subject"]) for c in context.get_ca_certs()]
        assert subjects == [str(((("commonName", "ca"),),))]

    def test_no_tls_context_for_plaintext_protocols(self) -> None:
        assert "ssl_context" not in Settings(**sasl("SASL_PLAINTEXT")).kafka_security()

    def test_the_client_certificate_and_key_are_loaded(self, certs: Certificates) -> None:
        mtls: dict[str, Any] = {
            "kafka_security_protocol": "SSL",
            "kafka_ssl_cafile": certs.ca,
            "kafka_ssl_certfile": certs.client_cert,
        }
        good = Settings(**mtls, kafka_ssl_keyfile=certs.client_key).kafka_security()
        assert isinstance(good["ssl_context"], ssl.SSLContext)
        # the CA's key does not match the client certificate: loading it must fail
        mismatched = Settings(**mtls, kafka_ssl_keyfile=certs.ca.with_suffix(".key"))
        with pytest.raises(ValueError, match="ALLIANCE_KAFKA_SSL_CERTFILE"):
            mismatched.kafka_security()

    def test_a_missing_ca_file_names_the_variable(self, tmp_path: Path) -> None:
        settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "no.pem")
        with pytest.raises(
            ValueError, match=re.escape(f"ALLIANCE_KAFKA_SSL_CAFILE={tmp_path}/no.pem")
        ):
            settings.kafka_security()


def _client_calls() -> Iterator[tuple[str, int, ast.Call]]:
    """(file, line, call) of every construction of an aiokafka client in the project's code."""
    for root in SOURCE_ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                    if name in CLIENTS:
                        yield str(path.relative_to(REPO_ROOT)), node.lineno, node


def _takes_connection_options(call: ast.Call) -> bool:
    """``**<something>.client_options()`` among the arguments, and nothing of the connection
    said beside it."""
    spread = [
        k.value
        for k in call.keywords
        if k.arg is None
        and isinstance(k.value, ast.Call)
        and isinstance(k.value.func, ast.Attribute)
        and k.value.func.attr == KafkaConnection.client_options.__name__
    ]
    said = {k.arg for k in call.keywords} & CONNECTION_KEYWORDS
    return len(spread) == 1 and not said


class TestEveryClientUsesTheConnection:
    def test_every_client_is_built_from_a_connections_options(self) -> None:
        calls = list(_client_calls())
        # the scan sees the project's clients (it would pass vacuously on finding none)
        assert {f for f, _, _ in calls} >= {
            "shared/kafka.py",
            "services/tracker/directory.py",
            "deploy/stack/kafka.py",
        }
        assert len(calls) >= 8
        forgetful = [
            f"{f}:{line}" for f, line, call in calls if not _takes_connection_options(call)
        ]
        assert forgetful == [], (
            "build every Kafka client with **<KafkaConnection>.client_options() "
            "(Settings.kafka), never with bootstrap_servers= alone"
        )

    def test_no_client_is_imported_under_another_name(self) -> None:
        aliased = [
            f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
            for root in SOURCE_ROOTS
            for path in sorted((REPO_ROOT / root).rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
            if alias.name in CLIENTS and alias.asname not in (None, alias.name)
        ]
        assert aliased == []

    def test_the_scan_catches_a_forgetful_client(self) -> None:
        forgetful = ast.parse("AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)")
        with_options = ast.parse("AIOKafkaConsumer('t', **settings.kafka.client_options())")
        overriding = ast.parse(
            "AIOKafkaProducer(**kafka.client_options(), security_protocol='PLAINTEXT')"
        )
        calls = [
            next(n for n in ast.walk(tree) if isinstance(n, ast.Call))
            for tree in (forgetful, with_options, overriding)
        ]
        assert [_takes_connection_options(c) for c in calls] == [False, True, False]
