"""deploy/prometheus: checked by promtool itself, and against what the pipeline exports."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamfer.pipeline.health import HealthServer, HealthState
from streamfer.pipeline.metrics import DEFAULT_PORT, Metrics

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULE_FILES = sorted(PROM.glob("*.rules.yml"))
CONFIGS = ("prometheus.yml", "prometheus.compose.yml", "prometheus.k8s.yml")
# Read by the rules and deploy/k8s's Prometheus scaler before the pipeline exports them.
ANNOUNCED: set[str] = set()


def run(cmd: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, input=stdin.decode() if stdin else None, capture_output=True, text=True, timeout=60
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for f in RULE_FILES for group in load(f)["groups"] for rule in group["rules"]]


def test_rule_files_are_the_ones_the_configs_load() -> None:
    assert [p.name for p in RULE_FILES] == ["alerts.rules.yml", "recording.rules.yml"]
    for config in CONFIGS:
        assert sorted(load(PROM / config)["rule_files"]) == [p.name for p in RULE_FILES]


@pytest.mark.parametrize("config", CONFIGS)
def test_promtool_check_config(promtool: str, config: str) -> None:
    result = run([promtool, "check", "config", str(PROM / config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_promtool_check_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests(promtool: str) -> None:
    result = run([promtool, "test", "rules", str(PROM / "rules.test.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for r in rules() if "alert" in r}
    tested = {
        case["alertname"]
        for test in load(PROM / "rules.test.yml")["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts == tested


def test_promtool_check_metrics_on_a_live_exposition(
    promtool: str, populated_metrics: Metrics
) -> None:
    with (
        HealthServer(populated_metrics, HealthState(), port=0) as server,
        urllib.request.urlopen(server.url + "/metrics", timeout=5) as resp,
    ):
        body = resp.read()
    assert b"streamfer_e2e_latency_seconds_bucket" in body
    result = run([promtool, "check", "metrics"], stdin=body)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_rules_read_only_exported_metrics(
    exported_names: set[str], metric_names_in: Callable[[str], set[str]]
) -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    for rule in rules():
        unknown = metric_names_in(rule["expr"]) - exported_names - recorded - {"up"} - ANNOUNCED
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads {unknown}"
    # and the recording rules cover what the dashboards and alerts rely on
    assert "stream:streamfer_e2e_latency_seconds:p99_1m" in recorded


def test_latency_bounds_are_the_designed_ones() -> None:
    bounds = {
        r["labels"]["model"]: r["expr"]
        for r in rules()
        if r.get("record") == "model:streamfer_e2e_latency_seconds:bound"
    }
    assert bounds == {"fraud": "vector(0.05)", "camera": "vector(0.1)", "sensor": "vector(0.1)"}


def test_local_scrape_targets_are_what_a_local_run_opens() -> None:
    """The demo and one `streamfer run` serve on the default port: that is the only target
    (a target nothing serves would page as down); the other example configs' ports are
    named in the file's comment for when they run."""
    (job,) = [j for j in load(PROM / "prometheus.yml")["scrape_configs"]
              if j["job_name"] == "streamfer"]  # fmt: skip
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{DEFAULT_PORT}"]
    assert (load(PROM.parent / "configs" / "demo.yaml")["metrics"]).get("port") == DEFAULT_PORT
    text = (PROM / "prometheus.yml").read_text()
    for config in sorted((PROM.parent / "configs").glob("*.yaml")):
        port = (load(config).get("metrics") or {}).get("port", DEFAULT_PORT)
        assert str(port) in text, f"{config.name} serves on {port}: say so in prometheus.yml"


def test_promql_name_parser(metric_names_in: Callable[[str], set[str]]) -> None:
    expr = (
        'histogram_quantile(0.99, sum by (stream, le) (rate(streamfer_e2e_latency_seconds_bucket'
        '{stream=~"$stream", reason="a b"}[$__rate_interval]))) > on (stream) group_left '
        "stream:bound and up == 0 or vector(1e-3)"
    )
    assert metric_names_in(expr) == {"streamfer_e2e_latency_seconds_bucket", "stream:bound", "up"}


def test_announced_metrics_are_not_exported_yet(exported_names: set[str]) -> None:
    """Once the pipeline exports one, it leaves ANNOUNCED (and its rules are checked fully)."""
    assert not ANNOUNCED & exported_names


def test_not_ready_never_reads_partition_assignment() -> None:
    """An idle replica (no partitions) is ready: the alert must not count it as a failure."""
    (alert,) = [r for r in rules() if r.get("alert") == "StreamferNotReady"]
    assert alert["expr"].strip() == "streamfer_ready == 0"
    assert "partition" not in alert["annotations"]["description"]


def test_lag_seconds_alert_compares_each_stream_with_its_own_bound() -> None:
    (alert,) = [r for r in rules() if r.get("alert") == "StreamferConsumerLagSecondsHigh"]
    assert "stream:streamfer_consumer_lag_seconds:max" in alert["expr"]
    assert "on (stream) stream:streamfer_e2e_latency_seconds:bound" in alert["expr"]
