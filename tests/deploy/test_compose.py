"""deploy/compose.yaml, its host-network override and the secrets `make compose-env` writes,
checked as files (tests/containers runs them)."""

from __future__ import annotations

import base64
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.compose_env import (
    compose_env,
    render,
    scram_password_variable,
    scram_users,
    write_env_file,
    write_tls,
)
from deploy.stack.acls import ADMIN_USER
from deploy.stack.kafka import new_cluster_id
from shared.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICES = ("tracker", "attribution", "commission")
#: the `monitoring` profile's containers: no Kafka, no database, no Alliance settings
MONITORING = ("prometheus",)
#: the `backup` profile's containers: PostgreSQL's client tools, no Kafka, no Alliance settings
BACKUP = ("postgres-wal", "postgres-backup")


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return loaded


def merged() -> dict[str, dict[str, Any]]:
    """The services of compose.yaml with compose.host.yaml laid over them (environment merged
    by key, other keys replaced), as Compose does for these keys."""
    base, host = load("compose.yaml")["services"], load("compose.host.yaml")["services"]
    out = {}
    for name, service in base.items():
        over = host.get(name, {})
        env = {**service.get("environment", {}), **over.get("environment", {})}
        out[name] = {**service, **over, "environment": env}
    return out


def test_three_kraft_brokers_keep_three_copies_and_acknowledge_with_two() -> None:
    services = load("compose.yaml")["services"]
    brokers = {n: s["environment"] for n, s in services.items() if n.startswith("kafka-")}
    assert sorted(env["KAFKA_NODE_ID"] for env in brokers.values()) == ["1", "2", "3"]
    for env in brokers.values():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
    alliance = services["topics"]["environment"]
    assert alliance["ALLIANCE_TOPIC_REPLICATION"] == "3"


def test_each_service_runs_two_workers_after_the_migrate_and_topics_jobs() -> None:
    services = load("compose.yaml")["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["topics"]["command"] == ["topics", "--acls"]
    for name in SERVICES:
        workers = [s for n, s in services.items() if n.rsplit("-", 1)[0] == name]
        assert len(workers) == 2
        ports = {w["environment"][f"ALLIANCE_{name.upper()}_PORT"] for w in workers}
        assert len(ports) == 2
        for worker in workers:
            assert worker["command"] == [name]
            assert worker["environment"]["ALLIANCE_HEALTH_PORT"] in ports
            assert worker["environment"]["ALLIANCE_ENV"] == "production"
            for job in ("migrate", "topics"):
                assert worker["depends_on"][job] == {"condition": "service_completed_successfully"}


def test_on_the_host_network_every_container_listens_on_loopback_on_its_own_port() -> None:
    services = merged()
    ports: list[str] = []
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        env = service["environment"]
        if name.startswith("kafka-"):
            listeners = env["KAFKA_LISTENERS"]
            assert re.fullmatch(
                r"CLIENT://127\.0\.0\.1:\$\{\w+:-\d+\},CONTROLLER://127\.0\.0\.1:\$\{\w+:-\d+\},"
                r"INTERNAL://127\.0\.0\.1:\$\{\w+:-\d+\}",
                listeners,
            ), listeners
            ports += re.findall(r":-(\d+)\}", listeners)
        elif name == "postgres":
            assert service["command"] == ["postgres", "-c", "listen_addresses=127.0.0.1"]
            ports += re.findall(r":-(\d+)\}", env["PGPORT"])
        elif name in BACKUP:  # clients of the PostgreSQL above: no port of their own
            assert env["PGHOST"] == "127.0.0.1", name
            assert env["PGPORT"] == services["postgres"]["environment"]["PGPORT"], name
        elif name == "prometheus":
            listen = "--web.listen-address=127.0.0.1:${PROMETHEUS_PORT:-19090}"
            assert listen in service["command"]
            assert env["PROMETHEUS_PORT"] == "${PROMETHEUS_PORT:-19090}"
            ports += re.findall(r":-(\d+)\}", env["PROMETHEUS_PORT"])
        else:
            assert env["ALLIANCE_HOST"] == "127.0.0.1", name
            assert "127.0.0.1:" in env["ALLIANCE_KAFKA_BOOTSTRAP"]
            assert "@127.0.0.1:" in env["ALLIANCE_DATABASE_URL"]
            kind = name.rsplit("-", 1)[0]
            if kind in SERVICES:  # a worker: it listens on its service's port
                ports.append(env[f"ALLIANCE_{kind.upper()}_PORT"])
                assert env["ALLIANCE_HEALTH_PORT"] == ports[-1]
    assert len(ports) == 3 * 2 + 1 + 3 * 3 + 1  # workers, PostgreSQL, brokers, Prometheus
    assert len(ports) == len(set(ports)), sorted(ports)


def test_metrics_listen_on_a_port_of_their_own_published_on_loopback_only() -> None:
    base = load("compose.yaml")["services"]
    workers = [n for n in base if n.rsplit("-", 1)[0] in SERVICES]
    metrics = {}
    for name in workers:
        env = base[name]["environment"]
        public = env[f"ALLIANCE_{name.rsplit('-', 1)[0].upper()}_PORT"]
        metrics[name] = env["ALLIANCE_METRICS_PORT"]
        assert metrics[name] != public
        assert f"127.0.0.1:{metrics[name]}:{metrics[name]}" in base[name]["ports"]
        assert all(p.startswith("127.0.0.1:") for p in base[name]["ports"])
    assert len(set(metrics.values())) == len(workers)  # host network: no two share one
    for name, service in merged().items():
        if name in workers:
            assert service["environment"]["ALLIANCE_METRICS_HOST"] == "127.0.0.1"


def test_the_bundled_kafka_and_postgresql_are_profiles_a_managed_one_replaces() -> None:
    services = load("compose.yaml")["services"]
    assert {n for n, s in services.items() if "kafka" in s.get("profiles", [])} == {
        "kafka-1",
        "kafka-2",
        "kafka-3",
    }
    assert services["postgres"]["profiles"] == ["postgres"]
    # the jobs wait for them when they run, and start without them when they do not
    for job, needs in (("topics", ("kafka-1", "kafka-2", "kafka-3")), ("migrate", ("postgres",))):
        for name in needs:
            assert services[job]["depends_on"][name] == {
                "condition": "service_healthy",
                "required": False,
            }
    for file in ("compose.yaml", "compose.host.yaml"):
        for name, service in merged().items() if file == "compose.host.yaml" else services.items():
            env = service.get("environment", {})
            for variable in ("ALLIANCE_KAFKA_BOOTSTRAP", "ALLIANCE_DATABASE_URL"):
                if variable in env:  # the address of a managed one wins over the bundled one
                    assert env[variable].startswith(f"${{{variable}:-"), (file, name)


def test_a_managed_kafkas_security_settings_pass_through_to_every_alliance_container() -> None:
    # every security setting the code has, but a client certificate's files (mount them and
    # add the two variables where a cluster wants mutual TLS)
    security = {
        f"ALLIANCE_{name.upper()}"
        for name in Settings.model_fields
        if name.startswith(("kafka_security", "kafka_sasl", "kafka_ssl"))
    } - {"ALLIANCE_KAFKA_SSL_CERTFILE", "ALLIANCE_KAFKA_SSL_KEYFILE"}
    assert "ALLIANCE_KAFKA_SASL_PASSWORD" in security
    for name, service in load("compose.yaml")["services"].items():
        if name == "migrate":  # no Kafka client: SASL without a user would stop it at start
            assert not security & set(service["environment"])
            continue
        if name.startswith(("kafka-", "postgres")) or name in MONITORING:
            continue
        env = service["environment"]
        assert security <= set(env), name
        assert env["ALLIANCE_KAFKA_SECURITY_PROTOCOL"].endswith(":-SASL_SSL}")
        assert env["ALLIANCE_KAFKA_SASL_MECHANISM"].endswith(":-SCRAM-SHA-512}")


def test_kafka_sasl_ssl_scram_every_client_its_own_user_and_no_plaintext_listener() -> None:
    services = load("compose.yaml")["services"]
    for name, service in services.items():
        env = service["environment"]
        if name.startswith("kafka-"):
            protocols = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
            assert "PLAINTEXT" not in protocols.replace("SASL_SSL", "")
            assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
            assert env["KAFKA_LISTENER_NAME_INTERNAL_SSL_CLIENT_AUTH"] == "required"
            assert env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"] == "required"
            assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
            supers = env["KAFKA_SUPER_USERS"].split(";")
            assert supers == [f"User:{ADMIN_USER}", "User:kafka-1", "User:kafka-2", "User:kafka-3"]
            users = re.findall(r"([\w-]+)=\$\{", env["SCRAM_USERS"])
            assert users == [ADMIN_USER, *(f"alliance-{s}" for s in SERVICES)]
            assert any(
                v.endswith(f"{name}.pem:/etc/kafka/tls/broker.pem:ro") for v in service["volumes"]
            )
        elif name not in ("postgres", "migrate", *MONITORING, *BACKUP):
            kind = name.rsplit("-", 1)[0]
            user = ADMIN_USER if kind == "topics" else f"alliance-{kind}"
            assert env["ALLIANCE_KAFKA_SASL_USERNAME"] == user, name
            assert env["ALLIANCE_KAFKA_SASL_PASSWORD"].startswith(
                "${" + scram_password_variable("admin" if kind == "topics" else kind) + ":?"
            )
            assert any(v.endswith("/etc/alliance/tls/ca.crt:ro") for v in service["volumes"]), name


def test_compose_env_makes_a_kafka_ca_and_broker_certificates_once(tmp_path: Path) -> None:
    from cryptography import x509

    folder = tmp_path / "tls"
    assert write_tls(folder)
    assert not write_tls(folder)  # never overwritten
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    for broker in ("kafka-1", "kafka-2", "kafka-3"):
        body = (folder / f"{broker}.pem").read_bytes()
        assert b"BEGIN PRIVATE KEY" in body  # PKCS#8, unencrypted: Kafka's PEM keystore
        cert = x509.load_pem_x509_certificate(body[body.index(b"-----BEGIN CERTIFICATE") :])
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert broker in names.get_values_for_type(x509.DNSName)
    values = compose_env()
    for key in ("admin", *SERVICES):
        assert len(values[scram_password_variable(key)]) >= 32
    assert scram_users(values).count("=") == 4


def required_variables() -> set[str]:
    text = (DEPLOY / "compose.yaml").read_text() + (DEPLOY / "compose.host.yaml").read_text()
    return set(re.findall(r"\$\{(\w+):\?", text))


def test_compose_env_supplies_every_required_variable_with_production_grade_secrets() -> None:
    values = compose_env()
    assert set(values) == required_variables() | {"COMPOSE_PROFILES"}
    assert values["COMPOSE_PROFILES"] == "kafka,postgres"
    settings = Settings(
        env="production",
        secret_key=values["ALLIANCE_SECRET_KEY"],
        admin_token=values["ALLIANCE_ADMIN_TOKEN"],
        link_keys=values["ALLIANCE_LINK_KEYS"],
    )
    assert settings.production_problems() == []
    assert len(values["POSTGRES_PASSWORD"]) >= 32
    assert compose_env() != values  # fresh every time


@pytest.mark.parametrize("first_byte", [0x00, 0xF8])  # 0xF8… encodes to a leading '-'
def test_a_kafka_cluster_id_is_16_bytes_in_url_safe_base64_never_starting_with_a_dash(
    first_byte: int,
) -> None:
    draws = iter([bytes([first_byte]) + bytes(15), bytes(16)])
    cid = new_cluster_id(lambda n: next(draws))
    assert len(cid) == 22
    assert not cid.startswith("-")
    assert base64.urlsafe_b64decode(cid + "==") in (bytes([first_byte]) + bytes(15), bytes(16))
    if first_byte == 0xF8:
        assert cid == new_cluster_id(lambda n: bytes(16))  # the dash one was drawn again


def test_the_env_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    assert write_env_file(path) is True
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert write_env_file(path) is False
    assert path.read_text() == first
    written = dict(
        line.split("=", 1) for line in first.splitlines() if line and not line.startswith("#")
    )
    assert set(written) == required_variables() | {"COMPOSE_PROFILES"}
    assert render(written) == first
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


class TestBackupProfile:
    def test_wal_streaming_and_base_backups_run_only_in_the_backup_profile(self) -> None:
        services = load("compose.yaml")["services"]
        assert {n for n, s in services.items() if "backup" in s.get("profiles", [])} == set(BACKUP)
        for name in BACKUP:
            service = services[name]
            assert service["image"] == services["postgres"]["image"]
            assert service["volumes"] == ["postgres-backups:/var/lib/postgresql/backups"]
            assert service["environment"]["PGHOST"] == "postgres"
            assert service["environment"]["PGUSER"] == "alliance"
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "postgres-backups" in load("compose.yaml")["volumes"]

    def test_the_wal_is_streamed_on_a_slot_and_base_backups_are_verified_and_pruned(
        self,
    ) -> None:
        services = load("compose.yaml")["services"]
        wal = services["postgres-wal"]["command"][-1]
        assert "--slot=alliance_backup --create-slot --if-not-exists" in wal
        assert 'exec pg_receivewal -D "$$BACKUPS/wal"' in wal
        base = services["postgres-backup"]["command"][-1]
        take = base.index("pg_basebackup")
        verify = base.index("pg_verifybackup")
        assert take < verify < base.index('mv "$$to.partial" "$$to"')
        assert "-X stream" in base
        assert "--manifest-checksums=SHA256" in base
        assert 'head -n "-$$POSTGRES_BACKUP_KEEP"' in base
        env = services["postgres-backup"]["environment"]
        assert env["POSTGRES_BACKUP_INTERVAL_S"] == "${POSTGRES_BACKUP_INTERVAL_S:-86400}"
        assert env["POSTGRES_BACKUP_KEEP"] == "${POSTGRES_BACKUP_KEEP:-7}"

    def test_the_bundled_postgresql_lets_its_superuser_replicate_and_owns_the_folder(
        self,
    ) -> None:
        entrypoint = (DEPLOY / "docker" / "postgres-entrypoint.sh").read_text()
        assert 'echo "host replication $POSTGRES_USER all scram-sha-256"' in entrypoint
        dockerfile = (DEPLOY / "docker" / "postgres.Dockerfile").read_text()
        assert "/var/lib/postgresql/backups" in dockerfile
        assert "chown -R postgres:postgres /var/lib/postgresql " in dockerfile


class TestMonitoringProfile:
    def test_prometheus_runs_only_in_the_monitoring_profile_on_loopback(self) -> None:
        services = load("compose.yaml")["services"]
        assert {n for n, s in services.items() if "monitoring" in s.get("profiles", [])} == {
            "prometheus"
        }
        prometheus = services["prometheus"]
        assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
        assert "./prometheus:/etc/alliance/prometheus:ro" in prometheus["volumes"]
        assert "--config.file=/etc/alliance/prometheus/prometheus.yml" in prometheus["command"]
        host = load("compose.host.yaml")["services"]["prometheus"]
        assert "--config.file=/etc/alliance/prometheus/prometheus.host.yml" in host["command"]

    @pytest.mark.parametrize(
        ("config", "host"),
        [("prometheus.yml", None), ("prometheus.host.yml", "127.0.0.1")],
    )
    def test_prometheus_scrapes_every_workers_metrics_port_with_the_alert_rules(
        self, config: str, host: str | None
    ) -> None:
        scraped = yaml.safe_load((DEPLOY / "prometheus" / config).read_text())
        assert scraped["rule_files"] == ["alerts.yaml"]  # beside it, in the mounted folder
        targets = {
            job["job_name"]: sorted(t for c in job["static_configs"] for t in c["targets"])
            for job in scraped["scrape_configs"]
        }
        base = load("compose.yaml")["services"]
        for service in SERVICES:
            workers = [n for n in base if n.rsplit("-", 1)[0] == service]
            wanted = sorted(
                f"{host or name}:{base[name]['environment']['ALLIANCE_METRICS_PORT']}"
                for name in workers
            )
            assert targets[service] == wanted, (config, service)

    def test_its_image_is_debians_prometheus_on_the_projects_base(self) -> None:
        dockerfile = (DEPLOY / "docker" / "prometheus.Dockerfile").read_text()
        assert "ARG BASE=debian:bookworm-slim" in dockerfile
        assert "FROM ${BASE}" in dockerfile
        assert "apt-get install -y --no-install-recommends prometheus" in dockerfile
        assert "USER prometheus" in dockerfile
        assert "prometheus)" in (DEPLOY / "docker" / "build.sh").read_text()


def test_every_service_passes_the_log_and_trace_settings_with_traces_off_by_default() -> None:
    from shared import tracing

    for name, service in load("compose.yaml")["services"].items():
        if not name.startswith(("tracker-", "attribution-", "commission-")):
            continue
        env = service["environment"]
        for variable in (
            "ALLIANCE_LOG_FORMAT",
            "ALLIANCE_LOG_LEVEL",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
            "OTEL_RESOURCE_ATTRIBUTES",
        ):
            assert env[variable].startswith(f"${{{variable}:-"), (name, variable)
        # each variable unset in deploy/.env: its default, and traces stay off
        defaults = {k: v.split(":-", 1)[1].rstrip("}") for k, v in env.items() if "OTEL_" in k}
        assert defaults["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
        assert not tracing.wanted(defaults)
