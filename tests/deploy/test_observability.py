"""The operator's side of the metrics: the Prometheus alert rules load (``promtool check
rules``) and fire as their tests say (``promtool test rules``), cover every way the pipeline
stops, and, like the Grafana dashboard, read only metrics the services export. promtool is
Debian's (package ``prometheus``): installed when missing on CI, a clear failure elsewhere,
never a skip."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.stack import promtool as promtool_module
from deploy.stack.promtool import PromtoolError, ensure_promtool
from tests.scrape import exported_samples, metric_names

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "alliance.json"

#: an alert for each way the pipeline stops or falls behind (issue 24)
REQUIRED_ALERTS = {
    "AllianceServiceDown",
    "AllianceConsumerLag",
    "AlliancePartitionStopped",
    "AlliancePartitionHalted",
    "AllianceDeadLetters",
    "AllianceOutboxBacklog",
    "AllianceWebhookFailureRate",
    "AllianceTrackerSpooling",
    "AllianceTrackerSpoolFilling",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_promtool()  # raises PromtoolError (how to install it) when it cannot


#: series Prometheus makes itself for every target (not exported by a service)
SYNTHETIC = {"up"}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, check=False, cwd=ALERTS.parent
    )


class TestAlertRules:
    def test_promtool_checks_the_rules(self, promtool: str) -> None:
        proc = run(promtool, "check", "rules", str(ALERTS))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"SUCCESS: {len(rules())} rules found" in proc.stdout

    @pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.host.yml"])
    def test_promtool_checks_the_compose_profiles_prometheus_config(
        self, promtool: str, config: str
    ) -> None:
        proc = run(promtool, "check", "config", str(ALERTS.parent / config))
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_each_alert_fires_as_its_unit_test_says(self, promtool: str) -> None:
        proc = run(promtool, "test", "rules", str(ALERT_TESTS))
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_every_way_the_pipeline_stops_has_an_alert(self) -> None:
        assert {rule["alert"] for rule in rules()} >= REQUIRED_ALERTS

    def test_every_alert_has_a_severity_a_summary_and_a_description(self) -> None:
        for rule in rules():
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]

    async def test_alerts_read_only_metrics_the_services_export(self) -> None:
        exported = await exported_samples() | SYNTHETIC
        for rule in rules():
            names = metric_names(rule["expr"])
            assert names, rule["alert"]
            assert names <= exported, (rule["alert"], names - exported)


class TestPromtoolInstall:
    """On CI (root, apt-get) a missing promtool is installed from Debian's ``prometheus``;
    elsewhere the tests fail with the command to run, never skip."""

    def test_a_missing_promtool_is_installed_from_debians_prometheus_when_root(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        asked: list[str] = []
        installed = {"promtool": False}

        def which(name: str) -> str | None:
            if name == "promtool":
                return "/usr/bin/promtool" if installed["promtool"] else None
            return "/usr/bin/apt-get"

        def install(package: str, recommends: bool = True) -> None:
            asked.append(package)
            installed["promtool"] = True

        monkeypatch.setattr(promtool_module.shutil, "which", which)
        monkeypatch.setattr(promtool_module.os, "geteuid", lambda: 0)
        monkeypatch.setattr(promtool_module, "apt_install", install)
        assert ensure_promtool() == "/usr/bin/promtool"
        assert asked == ["prometheus"]

    def test_without_root_a_missing_promtool_fails_saying_how_to_install_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(promtool_module.shutil, "which", lambda name: None)
        monkeypatch.setattr(promtool_module.os, "geteuid", lambda: 1000)
        with pytest.raises(PromtoolError, match="apt-get install prometheus"):
            ensure_promtool()


class TestMetricNames:
    @pytest.mark.parametrize(
        ("expr", "names"),
        [
            ('sum by (job, topic) (rate(a_total{x="b_total"}[5m])) > 0.25', {"a_total"}),
            ("changes(p[15m]) == 0 and min_over_time(lag[15m]) > 0", {"p", "lag"}),
            ("x / on (instance) group_left y unless z offset 5m", {"x", "y", "z"}),
            (
                "histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))",
                {"h_bucket"},
            ),
        ],
    )
    def test_the_names_of_an_expression_are_its_metrics(self, expr: str, names: set[str]) -> None:
        assert metric_names(expr) == names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


#: what the dashboard must show (issue 24): a panel reads each of these
DASHBOARD_METRICS = {
    "alliance_consumer_records_total",
    "alliance_consumer_lag",
    "alliance_consumer_batch_duration_seconds_bucket",
    "alliance_dead_letters_total",
    "alliance_consumer_halted_partitions",
    "alliance_outbox_backlog",
    "alliance_webhook_deliveries_total",
    "alliance_webhook_delivery_duration_seconds_bucket",
    "alliance_http_request_duration_seconds_bucket",
    "alliance_tracker_spool_bytes",
    "alliance_ledger_postings_total",
}


class TestDashboard:
    def test_it_is_a_grafana_dashboard_with_unique_panel_ids(self) -> None:
        board = dashboard()
        assert board["uid"]
        assert board["title"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
        datasources = {
            t["datasource"]["uid"] for p in board["panels"] for t in p.get("targets", [])
        }
        assert datasources == {"${datasource}"}  # the variable: any Prometheus, chosen at import

    async def test_every_query_reads_only_metrics_the_services_export(self) -> None:
        exported = await exported_samples()
        for title, expr in dashboard_exprs():
            names = metric_names(expr)
            assert names, title
            assert names <= exported, (title, names - exported)

    def test_a_panel_shows_each_metric_an_operator_needs(self) -> None:
        shown = set().union(*(metric_names(expr) for _, expr in dashboard_exprs()))
        assert shown >= DASHBOARD_METRICS, DASHBOARD_METRICS - shown
