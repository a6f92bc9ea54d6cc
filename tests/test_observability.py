"""Prometheus, alert rules, Grafana and compose files, checked with the real tools.

promtool and prometheus come from Debian's prometheus package and docker-compose from
Debian's docker-compose package; `make test` installs them when it runs as root (CI).
Elsewhere these tests are skipped with the command that would install them.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from prometheus_client import CollectorRegistry

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from service.metrics import Metrics
from tests.conftest import ServerThread

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "gan-serving.json"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: apt-get install {package} (make test does it as root)")
    return path


def exported_metric_names() -> set[str]:
    """Every sample name the service can export: counters with _total, histograms with their series."""
    names: set[str] = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def metric_names_in(expression: str) -> set[str]:
    return set(re.findall(r"\bgan_[a-z_]+\b", expression))


def alert_rules() -> list[dict[str, object]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_expressions() -> dict[str, list[str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in panels}


def test_promtool_accepts_the_config_and_the_alert_rules() -> None:
    promtool = tool("promtool", "prometheus")
    for command in (["check", "config", PROMETHEUS / "prometheus.yml"], ["check", "rules", PROMETHEUS / "alerts.yml"]):
        result = subprocess.run([promtool, *map(str, command)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_errors_saturation_latency_and_readiness_with_exported_metrics() -> None:
    rules = alert_rules()
    names = {str(rule["alert"]) for rule in rules}
    assert {"GanHighErrorRatio", "GanQueueSaturated", "GanHighP99Latency", "GanServerNotReady"} <= names
    exported = exported_metric_names()
    for rule in rules:
        unknown = metric_names_in(str(rule["expr"])) - exported
        assert not unknown, f"alert {rule['alert']} uses metrics the service does not export: {unknown}"


def test_the_load_failure_alert_fires_for_a_new_model_whose_first_load_fails(tmp_path: Path) -> None:
    # A model added to a running server's repository with a broken file: its counter starts at 1.
    promtool = tool("promtool", "prometheus")
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    failures = 'gan_model_load_failures_total{{instance="a",job="gan-serve",model="{}"}}'
    series = {
        'up{instance="a",job="gan-serve"}': "1x40",
        failures.format("old"): "0x15 1x25",  # a new version of a served model failed
        failures.format("new"): "_x15 1x25",  # a new model failed its first load
        failures.format("stale"): "3x40",  # failed before Prometheus started
    }

    rule = next(rule for rule in alert_rules() if rule["alert"] == "GanModelLoadFailures")
    description = rule["annotations"]["description"]  # type: ignore[index]

    def firing(model: str) -> dict[str, object]:
        labels = {"severity": "ticket", "model": model, "instance": "a", "job": "gan-serve"}
        annotations = {"summary": f"model {model} failed to load", "description": description}
        return {"exp_labels": labels, "exp_annotations": annotations}

    test = {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": "GanModelLoadFailures", "exp_alerts": []},
            {"eval_time": "18m", "alertname": "GanModelLoadFailures", "exp_alerts": [firing("old"), firing("new")]},
            {"eval_time": "30m", "alertname": "GanModelLoadFailures", "exp_alerts": []},
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "tests": [test]}))
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_certificate_alert_fires_before_expiry_and_never_without_tls(tmp_path: Path) -> None:
    promtool = tool("promtool", "prometheus")
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    expiry = 'gan_tls_certificate_expiry_timestamp_seconds{{instance="{}",job="gan-serve"}}'
    day = 86400
    series = {expiry.format("soon"): f"{10 * day}x40", expiry.format("later"): f"{100 * day}x40"}
    series[expiry.format("plaintext")] = "0x40"
    rule = next(rule for rule in alert_rules() if rule["alert"] == "GanTlsCertificateExpiring")
    labels = {"severity": "ticket", "instance": "soon", "job": "gan-serve"}
    annotations = {
        "summary": "the TLS certificate of soon expires within 14 days",
        "description": str(rule["annotations"]["description"]).replace(  # type: ignore[index]
            "{{ $value | humanizeTimestamp }}", "1970-01-11 00:00:00 +0000 UTC"
        ),
    }
    test = {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "GanTlsCertificateExpiring", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "GanTlsCertificateExpiring",
                "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
            },
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "tests": [test]}))
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_shows_what_operators_need_using_exported_metrics_only() -> None:
    panels = dashboard_expressions()
    titles = " | ".join(panels).lower()
    for needed in ("throughput", "p50", "p99", "queue depth", "batch size", "errors by reason", "versions ready"):
        assert needed in titles, f"no panel for {needed!r} in: {titles}"
    exported = exported_metric_names()
    for title, expressions in panels.items():
        for expression in expressions:
            unknown = metric_names_in(expression) - exported
            assert not unknown, f"panel {title!r} uses metrics the service does not export: {unknown}"
            assert metric_names_in(expression), f"panel {title!r} queries no gan_ metric: {expression}"


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {inside: host for host, inside, *_ in (v.split(":") for v in compose["services"]["grafana"]["volumes"])}
    provisioning = ROOT / mounts["/etc/grafana/provisioning"].removeprefix("./")
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["uid"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "gan-serving.yml").read_text())["providers"][0]
    dashboards = ROOT / mounts[provider["options"]["path"]].removeprefix("./")
    assert (dashboards / DASHBOARD.name).is_file()


@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"]])
def test_docker_compose_validates_the_stack(profile: list[str]) -> None:
    compose = tool("docker-compose", "docker-compose")
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), *profile, "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


# --- a real Prometheus against the live service ------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def prometheus(server: ServerThread, tmp_path: Path) -> Iterator[str]:
    binary = tool("prometheus", "prometheus")
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{server.server.metrics_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    port = free_port()
    flags = [f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}"]
    process = subprocess.Popen(
        [binary, *flags, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(base: str, expression: str) -> list[dict[str, object]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
    try:
        reply = json.loads(urllib.request.urlopen(url, timeout=5).read())
    except OSError:
        return []  # not listening yet
    return list(reply["data"]["result"]) if reply.get("status") == "success" else []


def poll(base: str, expression: str, seconds: float, traffic: object = None) -> list[dict[str, object]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(traffic):
            traffic()
        result = query(base, expression)
        if result and result[0]["value"][1] not in ("NaN", "0"):  # type: ignore[index]
            return result
        time.sleep(0.3)
    raise AssertionError(f"Prometheus never answered {expression!r} with a value within {seconds} s")


def test_prometheus_scrapes_the_service_and_computes_latency_quantiles(server: ServerThread, prometheus: str) -> None:
    stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))

    def traffic() -> None:
        for seed in range(5):
            stub.Generate(pb.GenerateRequest(model="digits", count=2, seed=seed), timeout=30)

    up = poll(prometheus, 'up{job="gan-serve"}', 60)
    assert up[0]["value"][1] == "1"  # type: ignore[index]
    p99 = poll(
        prometheus,
        'histogram_quantile(0.99, sum by (le) (rate(gan_request_duration_seconds_bucket{method="Generate"}[10s])))',
        60,
        traffic,
    )
    assert 0 < float(p99[0]["value"][1]) < 10  # type: ignore[index]
    rules = json.loads(urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=5).read())["data"]["groups"]
    assert {rule["name"] for group in rules for rule in group["rules"]} >= {"GanServerNotReady", "GanHighP99Latency"}
    assert all(rule["health"] != "err" for group in rules for rule in group["rules"])
