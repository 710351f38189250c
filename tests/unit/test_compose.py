"""The Docker deployment files hold together without Docker: docker-compose.yml names the
services the design needs, every file it mounts exists in the repo, and the Prometheus
config, the alert rules and the Grafana dashboard parse and use only the router's metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "ops" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "hotline.json"
GRAFANA_DATASOURCES = ROOT / "ops" / "grafana" / "provisioning" / "datasources"
GRAFANA_PROVIDERS = ROOT / "ops" / "grafana" / "provisioning" / "dashboards"

HISTOGRAMS = ("hotline_dispatch_latency_seconds", "hotline_classification_seconds")
# The series the dashboards and alerts may query (counters carry `_total` on the wire).
ALLOWED_METRICS = frozenset(
    {
        "hotline_orders_received_total",
        "hotline_orders_dispatched_total",
        "hotline_manual_queue_size",
        "hotline_overdue_orders",
        "hotline_reopens_total",
        "hotline_supervised_total",
        "hotline_dead_letters_total",
        "hotline_consumer_lag",
        "hotline_consumer_rewinds_total",
        "hotline_unit_open_orders",
    }
    | {f"{name}_{suffix}" for name in HISTOGRAMS for suffix in ("bucket", "sum", "count")}
)
ALERTED_METRICS = {
    "hotline_overdue_orders",
    "hotline_dead_letters_total",
    "hotline_consumer_lag",
    "hotline_consumer_rewinds_total",
    "hotline_manual_queue_size",
}
METRIC_NAME = re.compile(r"\bhotline_[a-z0-9_]+")


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths of a service's bind mounts (short `src:dst[:ro]` or long syntax)."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                sources.append(volume["source"])
        else:
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                sources.append(source)
    return sources


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else list(command)


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard.get("templating", {}).get("list", [])]
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def test_compose_has_the_services_of_the_design(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "postgres", "worker", "api", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.1.")
    assert services["postgres"]["image"] == "postgres:16"
    assert "zookeeper" not in services


def test_kafka_runs_kraft_combined_with_single_replica_internal_topics(
    compose: dict[str, Any],
) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1"
    assert len(env["CLUSTER_ID"]) == 22  # a base64 UUID, as `kafka-storage random-uuid` gives


def test_app_services_share_the_image_and_reach_kafka_and_postgres(
    compose: dict[str, Any],
) -> None:
    worker, api = compose["services"]["worker"], compose["services"]["api"]
    assert command_of(worker)[:2] == ["hotline", "worker"]
    bind = command_of(worker)[command_of(worker).index("--web-bind") + 1]
    assert bind == "0.0.0.0"  # /metrics and /health reachable from Prometheus
    assert command_of(api)[:2] == ["hotline", "serve"] and "8080" in command_of(api)
    host = command_of(api)[command_of(api).index("--host") + 1]
    assert host == "0.0.0.0"  # reachable from Prometheus and the host, not just the container
    assert worker["deploy"]["replicas"] == 2
    for service in (worker, api):
        env = service["environment"]
        assert env["HOTLINE_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["HOTLINE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["HOTLINE_DATABASE_URL"]
        assert service["build"] == "."
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert worker["environment"]["HOTLINE_METRICS_PORT"] == "9108"
    assert (ROOT / "Dockerfile").is_file()


def test_every_mounted_file_exists_in_the_repo(compose: dict[str, Any]) -> None:
    sources = [s for service in compose["services"].values() for s in bind_sources(service)]
    assert sources, "expected Prometheus and Grafana to mount files from the repo"
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert missing == []


def test_prometheus_scrapes_workers_and_api_and_loads_the_alerts(compose: dict[str, Any]) -> None:
    config = load_yaml(PROMETHEUS)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker_sd = jobs["hotline-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"] and worker_sd["port"] == 9108
    assert jobs["hotline-api"]["static_configs"][0]["targets"] == ["api:8080"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./ops/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_alert_rules_cover_backlog_and_failures_with_chinese_summaries() -> None:
    rules = alert_rules()
    used = {name for rule in rules for name in METRIC_NAME.findall(rule["expr"])}
    assert ALERTED_METRICS <= used
    assert used <= ALLOWED_METRICS
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert re.search(r"[\u4e00-\u9fff]", rule["annotations"]["summary"])


def test_dashboard_queries_only_router_metrics_and_shows_all_of_them(
    dashboard: dict[str, Any],
) -> None:
    used = {name for expr in dashboard_exprs(dashboard) for name in METRIC_NAME.findall(expr)}
    assert used <= ALLOWED_METRICS, sorted(used - ALLOWED_METRICS)
    bases = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    expected = {re.sub(r"_(bucket|sum|count)$", "", name) for name in ALLOWED_METRICS}
    assert bases == expected
    assert any(p["type"] == "heatmap" for p in dashboard["panels"])


def test_dashboard_uses_the_provisioned_datasource_and_provider_path(
    compose: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    datasources = [
        ds for f in sorted(GRAFANA_DATASOURCES.glob("*.yml")) for ds in load_yaml(f)["datasources"]
    ]
    uids = {ds["uid"] for ds in datasources}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} <= uids
    assert {t["datasource"]["uid"] for p in panels for t in p["targets"]} <= uids
    providers = [
        p for f in sorted(GRAFANA_PROVIDERS.glob("*.yml")) for p in load_yaml(f)["providers"]
    ]
    grafana_mounts = compose["services"]["grafana"]["volumes"]
    for provider in providers:
        assert f"./ops/grafana/dashboards:{provider['options']['path']}:ro" in grafana_mounts


def test_dashboard_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not (cells & area), panel["title"]
        cells |= area


def test_referenced_metrics_are_the_ones_the_router_exposes() -> None:
    """Cross-check against the app: every allowed series comes out of `hotline.metrics`."""
    from prometheus_client import CollectorRegistry

    metrics_module = pytest.importorskip("hotline.metrics")
    registry = CollectorRegistry()
    metrics_module.Metrics(registry=registry)
    exposed = {
        sample_name
        for family in registry.collect()
        for sample_name in _sample_names(family.name, family.type)
    }
    assert ALLOWED_METRICS <= exposed, sorted(ALLOWED_METRICS - exposed)


def _sample_names(name: str, kind: str) -> set[str]:
    if kind == "counter":
        return {f"{name}_total"}
    if kind == "histogram":
        return {f"{name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return {name}
