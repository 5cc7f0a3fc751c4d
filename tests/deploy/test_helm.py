"""The Helm chart deploy/helm/alliance: `helm lint` and `helm template` with the default and
the production values (helm built from its Go module, deploy/stack/helm.py), the rendered
objects read back and checked."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.stack.acls import ACL_TABLE, bindings
from deploy.stack.helm import HelmError, ensure_helm, helm_path
from shared.config import Settings
from shared.events import Topic, topic_config

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "alliance"
PRODUCTION = str(CHART / "values-production.yaml")
KUBE = "1.31.0"
SERVICES = ("tracker", "attribution", "commission")
MANAGED = (
    "kafka.strimzi.enabled=false",
    "kafka.bootstrap=kafka.example.internal:9092",
    "postgresql.cnpg.enabled=false",
    "postgresql.existingSecret=alliance-db",
)


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_helm()


def run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def template(
    helm: Path, values: tuple[str, ...], sets: tuple[str, ...]
) -> subprocess.CompletedProcess[str]:
    args = ["template", "rel", str(CHART), "--kube-version", KUBE]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    return run(helm, *args)


def render(helm: Path, *values: str, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    proc = template(helm, values, sets)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def refusal(helm: Path, *values: str, sets: tuple[str, ...] = ()) -> str:
    proc = template(helm, values, sets)
    assert proc.returncode != 0, "rendered what it should refuse"
    return proc.stderr


def of(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize(
    "values",
    [(), (PRODUCTION,)],
    ids=["default", "production"],
)
def test_helm_lint_passes_strict(helm: Path, values: tuple[str, ...]) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE]
    for v in values:
        args += ["-f", v]
    if values:  # production refuses to render without secrets (below)
        args += ["--set", "secrets.existingSecret=alliance-secrets"]
    proc = run(helm, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_the_default_install_runs_each_service_with_probes_behind_the_migrate_job(
    helm: Path,
) -> None:
    docs = render(helm)
    deployments = of(docs, "Deployment")
    assert set(deployments) == {f"rel-alliance-{s}" for s in SERVICES}
    ports = {"tracker": 8001, "attribution": 8002, "commission": 8003}
    for name in SERVICES:
        spec = deployments[f"rel-alliance-{name}"]["spec"]
        assert spec["replicas"] == 1
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == [name]
        assert container["image"] == "alliance:0.1.0"
        assert container["ports"] == [
            {"name": "http", "containerPort": ports[name]},
            {"name": "metrics", "containerPort": 9100},
        ]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True
        env = env_of(container)
        assert env[f"ALLIANCE_{name.upper()}_PORT"] == str(ports[name])
        assert env["ALLIANCE_ENV"] == "production"
        assert env["ALLIANCE_KAFKA_BOOTSTRAP"] == "rel-alliance-kafka-bootstrap:9093"
        # no secret is written into a Deployment: each comes from a Secret
        for key in ("ALLIANCE_SECRET_KEY", "ALLIANCE_ADMIN_TOKEN", "ALLIANCE_LINK_KEYS"):
            assert env[key] == {"secretKeyRef": {"name": "rel-alliance-secrets", "key": key}}
        assert env["ALLIANCE_DATABASE_PASSWORD"] == {
            "secretKeyRef": {"name": "rel-alliance-pg-app", "key": "password"}
        }
        assert env["ALLIANCE_DATABASE_URL"] == (
            "postgresql+asyncpg://alliance@rel-alliance-pg-rw:5432/alliance"
        )
        (wait,) = pod["initContainers"]
        assert "alliance migrate --check" in wait["command"][-1]
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == "/metrics"
        # metrics on their own port, not the public one (issue #19, defect 8)
        assert annotations["prometheus.io/port"] == "9100"
        assert env["ALLIANCE_METRICS_PORT"] == "9100"
        assert env["ALLIANCE_METRICS_HOST"] == "0.0.0.0"
    assert of(docs, "PodDisruptionBudget") == {}  # one worker each: nothing to budget
    (job,) = of(docs, "Job").values()
    # the bundled CloudNativePG cluster exists only once installed: no hook can run first, so
    # the Job is the release's own, one per revision (pods wait for the schema meanwhile)
    assert "annotations" not in job["metadata"]
    assert job["metadata"]["name"] == "rel-alliance-migrate-1"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert "ALLIANCE_SECRET_KEY" not in env_of(job["spec"]["template"]["spec"]["containers"][0])


def test_generated_secrets_are_fit_for_production(helm: Path) -> None:
    (secret,) = of(render(helm), "Secret").values()
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    settings = Settings(
        env="production",
        secret_key=data["ALLIANCE_SECRET_KEY"],
        admin_token=data["ALLIANCE_ADMIN_TOKEN"],
        link_keys=data["ALLIANCE_LINK_KEYS"],
    )
    assert settings.production_problems() == []
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    given = render(
        helm, sets=("secrets.secretKey=s", "secrets.adminToken=a", "secrets.linkKeys=k1:x")
    )
    (secret,) = of(given, "Secret").values()
    assert base64.b64decode(secret["data"]["ALLIANCE_LINK_KEYS"]).decode() == "k1:x"


def test_kafka_topics_are_the_codes_topics_with_their_configuration(helm: Path) -> None:
    docs = render(helm, sets=("topics.prefix=prod.",))
    topics = {t["spec"]["topicName"]: t for t in of(docs, "KafkaTopic").values()}
    assert set(topics) == {f"prod.{t}" for t in Topic}
    for topic in Topic:
        spec = topics[f"prod.{topic}"]["spec"]
        assert spec["partitions"] == 6
        assert spec["replicas"] == 1
        assert {k: str(v) for k, v in spec.get("config", {}).items()} == topic_config(topic, 168)
    names = [t["metadata"]["name"] for t in of(docs, "KafkaTopic").values()]
    assert "prod-dead-letters" in names  # a Kubernetes name: no dots
    assert all(
        t["metadata"]["labels"]["strimzi.io/cluster"] == "rel-alliance" for t in topics.values()
    )


def test_production_values_three_brokers_three_instances_budgets_and_twelve_partitions(
    helm: Path,
) -> None:
    docs = render(helm, PRODUCTION, sets=("secrets.existingSecret=alliance-secrets",))
    assert of(docs, "Secret") == {}  # the user's own
    (pool,) = of(docs, "KafkaNodePool").values()
    assert pool["spec"]["replicas"] == 3
    assert pool["spec"]["roles"] == ["controller", "broker"]
    (kafka,) = of(docs, "Kafka").values()
    assert kafka["metadata"]["annotations"] == {
        "strimzi.io/node-pools": "enabled",
        "strimzi.io/kraft": "enabled",
    }
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] == 2
    assert config["default.replication.factor"] == 3
    assert config["unclean.leader.election.enable"] is False
    for topic in of(docs, "KafkaTopic").values():
        assert (topic["spec"]["partitions"], topic["spec"]["replicas"]) == (12, 3)
    (cluster,) = of(docs, "Cluster").values()
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["bootstrap"]["initdb"] == {
        "database": "alliance",
        "owner": "alliance",
        "postInitApplicationSQL": ["CREATE EXTENSION IF NOT EXISTS hll"],
    }
    assert cluster["spec"]["imageName"] == "alliance-cnpg-postgres:15"  # with postgresql-hll
    assert cluster["spec"]["minSyncReplicas"] == 1
    pdbs = of(docs, "PodDisruptionBudget")
    assert {p["spec"]["maxUnavailable"] for p in pdbs.values()} == {1}
    assert set(pdbs) == {f"rel-alliance-{s}" for s in SERVICES}
    for name, deployment in of(docs, "Deployment").items():
        assert deployment["spec"]["replicas"] >= 2, name
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["requests"]["cpu"]
        env = env_of(container)
        assert env["ALLIANCE_SECRET_KEY"]["secretKeyRef"]["name"] == "alliance-secrets"
        assert env["ALLIANCE_TOPIC_PARTITIONS"] == "12"


def test_production_refuses_to_render_without_secrets(helm: Path) -> None:
    assert "secrets.requireExplicit is true" in refusal(helm, PRODUCTION)


def test_managed_kafka_and_postgresql_replace_the_operators_resources(helm: Path) -> None:
    docs = render(helm, sets=MANAGED)
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster"}
    (job,) = of(docs, "Job").values()
    # nothing to wait for: migrate (and create the topics) before the services
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == "alliance migrate && alliance topics"
    for deployment in of(docs, "Deployment").values():
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        assert env["ALLIANCE_KAFKA_BOOTSTRAP"] == "kafka.example.internal:9092"
        assert env["ALLIANCE_DATABASE_URL"] == {
            "secretKeyRef": {"name": "alliance-db", "key": "database-url"}
        }
        assert "ALLIANCE_DATABASE_PASSWORD" not in env


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("kafka.strimzi.enabled=false",), "kafka.bootstrap is required"),
        (("postgresql.cnpg.enabled=false",), "postgresql.existingSecret"),
        (("attribution.replicas=7",), "attribution.replicas (7) exceeds topics.partitions (6)"),
        (("topics.replicas=3",), "topics.replicas (3) exceeds kafka.strimzi.replicas (1)"),
        (("trustedProxies={*}",), 'trustedProxies: "*" trusts any peer'),
        (("config.ALLIANCE_FORWARDED_ALLOW_IPS=*",), 'trustedProxies: "*" trusts any peer'),
        (("trustedProxies=null",), "trustedProxies: list the ingress's addresses"),
    ],
)
def test_inconsistent_values_are_refused_with_the_reason(
    helm: Path, sets: tuple[str, ...], message: str
) -> None:
    assert message in refusal(helm, sets=sets)


def test_only_the_trusted_proxies_may_set_the_client_address(helm: Path) -> None:
    """Every container trusts X-Forwarded-For from the trustedProxies only (by default the
    private ranges an in-cluster ingress lives in), never from any peer; development may."""
    default = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fd00::/8"
    own = "10.42.0.0/16,10.43.0.5"
    for sets, expected in [
        ((), default),
        ((f"trustedProxies={{{own}}}",), own),
        (("config.ALLIANCE_ENV=dev", "trustedProxies={*}"), "*"),
    ]:
        docs = render(helm, sets=sets)
        for deployment in of(docs, "Deployment").values():
            pod = deployment["spec"]["template"]["spec"]
            for container in pod["containers"] + pod["initContainers"]:
                assert env_of(container)["ALLIANCE_FORWARDED_ALLOW_IPS"] == expected


def test_service_monitor_and_ingresses_when_asked(helm: Path) -> None:
    docs = render(
        helm,
        sets=(
            "metrics.serviceMonitor.enabled=true",
            "tracker.ingress.enabled=true",
            "tracker.ingress.host=go.shop.example",
        ),
    )
    (monitor,) = of(docs, "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    (ingress,) = of(docs, "Ingress").values()
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "go.shop.example"
    routes = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    # the camp rides on the tracker's host, where the buyer's cookie is
    assert routes == {
        "/": {"name": "rel-alliance-tracker", "port": {"name": "http"}},
        "/camp": {"name": "rel-alliance-commission", "port": {"name": "http"}},
        "/v1/camp": {"name": "rel-alliance-commission", "port": {"name": "http"}},
    }
    assert all(p["pathType"] == "Prefix" for p in rule["http"]["paths"])
    without = render(
        helm,
        sets=("tracker.ingress.enabled=true", "tracker.ingress.camp=false"),
    )
    (plain,) = of(without, "Ingress").values()
    assert [p["path"] for p in plain["spec"]["rules"][0]["http"]["paths"]] == ["/"]


def test_services_budgets_and_monitor_select_the_pods_of_their_deployment(helm: Path) -> None:
    docs = render(
        helm,
        PRODUCTION,
        sets=("secrets.existingSecret=alliance-secrets", "metrics.serviceMonitor.enabled=true"),
    )
    deployments = of(docs, "Deployment")
    services = of(docs, "Service")
    pdbs = of(docs, "PodDisruptionBudget")
    defaults = Settings()
    for name in SERVICES:
        full = f"rel-alliance-{name}"
        pod_labels = deployments[full]["spec"]["template"]["metadata"]["labels"]
        selector = deployments[full]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        service = services[full]["spec"]
        assert service["type"] == "ClusterIP"
        assert service["selector"] == selector  # this service's pods, not the others'
        port, metrics = service["ports"]
        assert port["port"] == getattr(defaults, f"{name}_port")  # the code's port
        assert port["targetPort"] == "http"
        assert pdbs[full]["spec"]["selector"]["matchLabels"] == selector
        # the pods' prometheus annotations name the metrics port, not the public one
        annotations = deployments[full]["spec"]["template"]["metadata"]["annotations"]
        assert metrics == {"name": "metrics", "port": 9100, "targetPort": "metrics"}
        assert annotations["prometheus.io/port"] == str(metrics["port"])
    (monitor,) = of(docs, "ServiceMonitor").values()
    wanted = monitor["spec"]["selector"]["matchLabels"]
    monitored = {
        name for name, s in services.items() if wanted.items() <= s["metadata"]["labels"].items()
    }
    assert monitored == {f"rel-alliance-{s}" for s in SERVICES}


def test_the_writable_folders_of_the_read_only_pods_are_empty_dirs(helm: Path) -> None:
    docs = render(helm)
    for name, deployment in of(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["initContainers"] + pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            # the state dir (the tracker's spool and snapshot) and /tmp are writable
            assert mounts[env_of(container)["ALLIANCE_STATE_DIR"]] == "state"
            assert mounts["/tmp"] == "tmp"
        # beside them only the Kafka cluster's CA, read-only
        assert set(volumes) == {"state", "tmp", "kafka-ca"}
        assert volumes.pop("kafka-ca")["secret"]["secretName"] == "rel-alliance-cluster-ca-cert"
        assert all("emptyDir" in v for v in volumes.values())
        if name.endswith("tracker"):  # the spool is bounded
            assert volumes["state"]["emptyDir"] == {"sizeLimit": "1Gi"}


def test_no_secret_value_is_written_outside_the_secret(helm: Path) -> None:
    given = {
        "secrets.secretKey": "S" * 40 + "secretkeyliteral",
        "secrets.adminToken": "A" * 40 + "admintokenliteral",
        "secrets.linkKeys": "k1:" + "L" * 40 + "linkkeyliteral",
    }
    docs = render(helm, PRODUCTION, sets=tuple(f"{k}={v}" for k, v in given.items()))
    (secret,) = of(docs, "Secret").values()
    stored = {base64.b64decode(v).decode() for v in secret["data"].values()}
    assert stored == set(given.values())
    others = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    for value in given.values():
        assert value not in others
        assert base64.b64encode(value.encode()).decode() not in others


def test_the_migrate_hook_is_replaced_and_removed_once_it_succeeded(helm: Path) -> None:
    (hook,) = of(render(helm, sets=MANAGED), "Job").values()
    annotations = hook["metadata"]["annotations"]
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    for sets in ((), MANAGED):
        (job,) = of(render(helm, sets=sets), "Job").values()
        assert job["spec"]["ttlSecondsAfterFinished"] == 86400
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "OnFailure"  # retried until the database answers
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_ensure_helm_keeps_one_binary_per_version_and_says_when_go_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no go
    with pytest.raises(HelmError, match="`go` is not on PATH"):
        ensure_helm(tmp_path, "v0.0.1")
    assert not helm_path(tmp_path, "v0.0.1").exists()  # nothing half-made left behind
    cached = helm_path(tmp_path, "v0.0.2")
    cached.parent.mkdir(parents=True)
    cached.write_text("")
    assert ensure_helm(tmp_path, "v0.0.2") == cached  # a built version is not built again
    assert cached.parent.name == "helm-v0.0.2"


def test_a_managed_kafkas_sasl_login_and_ca_reach_every_container(helm: Path) -> None:
    docs = render(
        helm,
        sets=(
            *MANAGED,
            "config.ALLIANCE_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
            "config.ALLIANCE_KAFKA_SSL_CAFILE=/etc/alliance/ca/ca.crt",
            "extraEnv[0].name=ALLIANCE_KAFKA_SASL_PASSWORD",
            "extraEnv[0].valueFrom.secretKeyRef.name=kafka-login",
            "extraEnv[0].valueFrom.secretKeyRef.key=password",
            "extraVolumes[0].name=kafka-ca",
            "extraVolumes[0].secret.secretName=kafka-ca",
            "extraVolumeMounts[0].name=kafka-ca",
            "extraVolumeMounts[0].mountPath=/etc/alliance/ca",
        ),
    )
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]
    assert len(pods) == 4
    for pod in pods:
        assert {"name": "kafka-ca", "secret": {"secretName": "kafka-ca"}} in pod["volumes"]
        for container in pod["containers"] + pod.get("initContainers", []):
            env = env_of(container)
            assert env["ALLIANCE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
            assert env["ALLIANCE_KAFKA_SASL_PASSWORD"] == {
                "secretKeyRef": {"name": "kafka-login", "key": "password"}
            }
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts["kafka-ca"] == "/etc/alliance/ca"


def test_a_metrics_token_comes_from_the_named_secret(helm: Path) -> None:
    docs = render(helm, sets=("metrics.tokenSecret.name=m-secret",))
    for deployment in of(docs, "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert env_of(container)["ALLIANCE_METRICS_TOKEN"] == {
            "secretKeyRef": {"name": "m-secret", "key": "ALLIANCE_METRICS_TOKEN"}
        }
    default = render(helm)
    for deployment in of(default, "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "ALLIANCE_METRICS_TOKEN" not in env_of(container)


def kafka_user_bindings(user: dict[str, Any], principal: str) -> set[tuple[str, str, str, str]]:
    out = set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert resource["patternType"] == "literal"
        for operation in acl["operations"]:
            if operation != "Describe":  # implied by Read and Write
                out.add((principal, resource["type"], resource["name"], operation))
    return out


def test_kafka_users_scram_and_acls_per_service_from_the_acl_table(helm: Path) -> None:
    """Strimzi KafkaUsers: SCRAM-SHA-512 logins, each service's ACLs those of
    deploy/stack/acls.py (the topics' prefix applied), the admin the only super user; the only
    listener is TLS with SCRAM."""
    docs = render(helm, sets=("topics.prefix=p-",))
    users = of(docs, "KafkaUser")
    assert set(users) == {"rel-alliance-admin", *(f"rel-alliance-{s}" for s in SERVICES)}
    for user in users.values():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "rel-alliance"
    assert "authorization" not in users["rel-alliance-admin"]["spec"]
    rendered = set()
    for access in ACL_TABLE:
        user = users[f"rel-alliance-{access.service}"]
        assert user["spec"]["authorization"]["type"] == "simple"
        rendered |= kafka_user_bindings(user, f"User:{access.user}")
    wanted = {(b.principal, b.resource, b.name, b.operation) for b in bindings("p-")}
    assert rendered == wanted
    (kafka,) = of(docs, "Kafka").values()
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"] == {
        "type": "simple",
        "superUsers": ["rel-alliance-admin"],
    }


def test_services_log_in_to_kafka_as_their_own_user_over_tls(helm: Path) -> None:
    docs = render(helm)
    for name in SERVICES:
        pod = of(docs, "Deployment")[f"rel-alliance-{name}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = env_of(container)
        assert env["ALLIANCE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["ALLIANCE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["ALLIANCE_KAFKA_SASL_USERNAME"] == f"rel-alliance-{name}"
        assert env["ALLIANCE_KAFKA_SASL_PASSWORD"] == {
            "secretKeyRef": {"name": f"rel-alliance-{name}", "key": "password"}
        }
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["kafka-ca"]["readOnly"] is True
        assert env["ALLIANCE_KAFKA_SSL_CAFILE"] == mounts["kafka-ca"]["mountPath"] + "/ca.crt"
        # the schema check before start needs no Kafka login
        for init in pod["initContainers"]:
            assert "ALLIANCE_KAFKA_SASL_PASSWORD" not in env_of(init)
    # a managed Kafka: no KafkaUser, the login is the operator's (extraEnv)
    managed = render(helm, sets=MANAGED)
    assert not of(managed, "KafkaUser")
    assert not of(managed, "NetworkPolicy")


def test_network_policies_only_the_services_reach_kafka_and_postgresql(helm: Path) -> None:
    docs = render(helm)
    (kafka,) = of(docs, "Kafka").values()
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    (peer,) = listener["networkPolicyPeers"]
    selector = peer["podSelector"]
    assert selector["matchLabels"] == {
        "app.kubernetes.io/name": "alliance",
        "app.kubernetes.io/instance": "rel",
    }
    assert selector["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": list(SERVICES)}
    ]
    (policy,) = of(docs, "NetworkPolicy").values()
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"cnpg.io/cluster": "rel-alliance-pg"}}
    assert spec["policyTypes"] == ["Ingress"]
    to_5432 = [
        r["from"] for r in spec["ingress"] if {"protocol": "TCP", "port": 5432} in r["ports"]
    ]
    assert [{"podSelector": {"matchLabels": selector["matchLabels"]}}] in to_5432
    assert [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "rel-alliance-pg"}}}] in to_5432
    for rule in spec["ingress"]:  # no rule is open to every pod or namespace
        for peer in rule["from"]:
            assert any(peer[k].get("matchLabels") for k in peer), rule
    # no policy selects the services' pods: their ingress stays reachable
    for name in SERVICES:
        labels = of(docs, "Deployment")[f"rel-alliance-{name}"]["spec"]["template"]["metadata"]
        assert "cnpg.io/cluster" not in labels["labels"]


def test_alert_rules_and_dashboard_are_off_by_default_and_rendered_from_the_same_files(
    helm: Path,
) -> None:
    default = render(helm)
    assert not of(default, "PrometheusRule")
    assert "rel-alliance-dashboard" not in of(default, "ConfigMap")
    docs = render(
        helm,
        sets=("monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true"),
    )
    (rule,) = of(docs, "PrometheusRule").values()
    deploy = CHART.parents[1]
    alerts = yaml.safe_load((deploy / "prometheus" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]  # the file promtool checks
    dashboard = of(docs, "ConfigMap")["rel-alliance-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads((deploy / "grafana" / "alliance.json").read_text())
    assert json.loads(dashboard["data"]["alliance.json"]) == board


def test_logs_json_by_default_and_traces_only_with_an_endpoint(helm: Path) -> None:
    for deployment in of(render(helm), "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        assert (env["ALLIANCE_LOG_FORMAT"], env["ALLIANCE_LOG_LEVEL"]) == ("json", "INFO")
        assert not {name for name in env if name.startswith("OTEL_")}  # traces off
    on = render(
        helm,
        sets=(
            "tracing.enabled=true",
            "tracing.endpoint=http://collector:4318",
            "tracing.resourceAttributes=deployment.environment=test",
        ),
    )
    for name, deployment in of(on, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
        assert env["OTEL_TRACES_EXPORTER"] == "otlp"
        assert env["OTEL_SERVICE_NAME"] == f"alliance-{container['name']}", name
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert env["OTEL_RESOURCE_ATTRIBUTES"] == "deployment.environment=test"
    assert "tracing.endpoint" in refusal(helm, sets=("tracing.enabled=true",))


BACKUP = (
    "postgresql.cnpg.backup.enabled=true",
    "postgresql.cnpg.backup.barmanObjectStore.destinationPath=s3://backups/alliance",
    "postgresql.cnpg.backup.barmanObjectStore.s3Credentials.secret=alliance-backup-s3",
)


def test_backups_are_off_by_default(helm: Path) -> None:
    docs = render(helm)
    assert not of(docs, "ScheduledBackup")
    (cluster,) = of(docs, "Cluster").values()
    assert "backup" not in cluster["spec"]


def test_backups_archive_the_wal_and_take_a_base_backup_on_schedule(helm: Path) -> None:
    docs = render(
        helm,
        sets=(*BACKUP, "postgresql.cnpg.backup.barmanObjectStore.endpointURL=https://minio:9000"),
    )
    (cluster,) = of(docs, "Cluster").values()
    backup = cluster["spec"]["backup"]
    assert backup["retentionPolicy"] == "30d"
    store = backup["barmanObjectStore"]
    assert store["destinationPath"] == "s3://backups/alliance"
    assert store["endpointURL"] == "https://minio:9000"
    assert store["s3Credentials"] == {
        "accessKeyId": {"name": "alliance-backup-s3", "key": "ACCESS_KEY_ID"},
        "secretAccessKey": {"name": "alliance-backup-s3", "key": "ACCESS_SECRET_KEY"},
    }
    assert store["wal"] == store["data"] == {"compression": "gzip"}
    (scheduled,) = of(docs, "ScheduledBackup").values()
    assert scheduled["apiVersion"] == "postgresql.cnpg.io/v1"
    assert scheduled["spec"] == {
        "schedule": "0 0 3 * * *",
        "immediate": True,
        "backupOwnerReference": "self",
        "method": "barmanObjectStore",
        "cluster": {"name": cluster["metadata"]["name"]},
    }
    sets = [a for s in BACKUP for a in ("--set", s)]
    linted = run(helm, "lint", "--strict", str(CHART), "--kube-version", KUBE, *sets)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "0 chart(s) failed" in linted.stdout


@pytest.mark.parametrize(
    ("missing", "says"),
    [
        (BACKUP[1], "barmanObjectStore.destinationPath"),
        (BACKUP[2], "s3Credentials.secret"),
    ],
)
def test_backups_without_a_store_or_its_credentials_are_refused(
    helm: Path, missing: str, says: str
) -> None:
    assert says in refusal(helm, sets=tuple(s for s in BACKUP if s != missing))


def test_without_the_operator_no_backup_resource_is_rendered(helm: Path) -> None:
    docs = render(helm, sets=(*MANAGED, *BACKUP))
    assert not of(docs, "ScheduledBackup")
