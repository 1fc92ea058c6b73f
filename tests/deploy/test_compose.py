"""deploy/docker-compose.yml and the root Dockerfile, checked without a Docker engine.

There is no compose-spec validator offline here, so these tests check the structure
and, more usefully, that every name, path and port refers to something that exists.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from streamfer.pipeline.config import config_file
from streamfer.pipeline.metrics import DEFAULT_PORT

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALLOWED_SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "ports", "volumes",
    "depends_on", "healthcheck", "restart", "hostname", "stop_grace_period",
}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def test_structure(compose: dict[str, Any]) -> None:
    assert set(compose) <= {"name", "services", "volumes", "networks"}
    assert set(services(compose)) == {
        "kafka", "streamfer", "load-payments", "load-sensor", "load-camera", "prometheus",
        "grafana",
    }  # fmt: skip
    named_volumes = set(compose.get("volumes") or {})
    for name, svc in services(compose).items():
        assert set(svc) <= ALLOWED_SERVICE_KEYS, name
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", []):
            assert dep in services(compose), f"{name} depends on unknown {dep}"
        for port in svc.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", port), f"{name}: quote ports as 'host:container'"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named_volumes, f"{name} uses undeclared volume {source}"
        env = svc.get("environment", {})
        assert all(isinstance(v, str) for v in env.values()), f"{name}: quote env values"


def test_kafka_is_a_single_kraft_node_of_kafka_4(compose: dict[str, Any]) -> None:
    kafka = services(compose)["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):  # fmt: skip
        assert env[key] == "1"
    bootstrap = services(compose)["streamfer"]["environment"]["STREAMFER_BOOTSTRAP"]
    assert f"INTERNAL://{bootstrap}" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")


def test_streamfer_service_runs_a_shipped_config_on_the_scraped_port(
    compose: dict[str, Any],
) -> None:
    svc = services(compose)["streamfer"]
    assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == (
        ROOT / "Dockerfile"
    )
    command = svc["command"]
    assert command[:2] == ["run", "--config"]
    config = yaml.safe_load((ROOT / command[2]).read_text())  # image WORKDIR is the repo root
    port = config.get("metrics", {}).get("port", DEFAULT_PORT)
    assert f"{port}:{port}" in svc["ports"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text())
    (job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "streamfer"]
    assert job["static_configs"][0]["targets"] == [f"streamfer:{port}"]


def test_commands_parse_and_load_feeds_the_pipelines_inputs(
    compose: dict[str, Any], cli_context: Callable[[list[str]], click.Context]
) -> None:
    run = cli_context(services(compose)["streamfer"]["command"])
    config = yaml.safe_load((ROOT / run.params["config_path"]).read_text())
    inputs = {s["input_topic"] for s in config["streams"]}
    fed = set()
    for name, svc in services(compose).items():
        if name.startswith("load-"):
            assert svc["image"] == services(compose)["streamfer"]["image"]
            assert svc["environment"] == services(compose)["streamfer"]["environment"]
            fed.add(cli_context(svc["command"]).params["topic"])
    assert fed == inputs


def test_prometheus_and_grafana_mount_the_provisioned_files(compose: dict[str, Any]) -> None:
    prom = services(compose)["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prom["volumes"]
    config_flag = next(a for a in prom["command"] if a.startswith("--config.file="))
    config = config_flag.split("=", 1)[1].removeprefix("/etc/prometheus/")
    assert (DEPLOY / "prometheus" / config).is_file()

    grafana = services(compose)["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/streamfer.yml").read_text()
    )["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090:9090" in prom["ports"]


def test_dockerfile_installs_the_wheel_and_serves_the_default_port(
    cli_context: Callable[[list[str]], click.Context],
) -> None:
    text = (ROOT / "Dockerfile").read_text()
    copied = set()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _dest = shlex.split(line)[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
                copied.add(source)
    # what the wheel is built from, and nothing of the source tree in the final stage
    assert {"pyproject.toml", "setup.py", "streamfer", "deploy/kafka", "deploy/configs"} <= copied
    assert "pip wheel" in text and "COPY --from=wheel /dist /dist" in text
    final_stage = text[text.rindex("FROM ") :]
    lines = final_stage.splitlines()
    source_copies = [ln for ln in lines if ln.startswith("COPY ") and "--from" not in ln]
    assert source_copies == []
    assert f"EXPOSE {DEFAULT_PORT}" in text
    assert f"127.0.0.1:{DEFAULT_PORT}/healthz" in text
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert entrypoint is not None and json.loads(entrypoint.group(1)) == ["streamfer"]
    assert cmd is not None
    run = cli_context(json.loads(cmd.group(1)))
    assert run.command.name == "run" and config_file(run.params["config_path"]).is_file()


def test_dockerignore_keeps_local_environments_out_of_the_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".cache", ".git"} <= set(ignored)
