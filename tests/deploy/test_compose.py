"""deploy/docker-compose.yml, Dockerfile and Dockerfile.gpu, checked without a Docker engine.

The compose file is validated against the Compose Specification's JSON schema (vendored in
schemas/compose-spec); the rest checks that every name, path and port refers to something
that exists, and runs the images' HEALTHCHECK and ENTRYPOINT scripts here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from streamfer.pipeline.config import config_file
from streamfer.pipeline.health import HealthServer, HealthState
from streamfer.pipeline.metrics import DEFAULT_PORT, Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec" / "compose-spec.json"
DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")
ALLOWED_SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "ports", "volumes",
    "depends_on", "healthcheck", "restart", "hostname", "stop_grace_period",
}  # fmt: skip
LOADERS = ("load-payments", "load-sensor", "load-camera")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def demo_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(config_file("demo").read_text())
    return config


def test_structure(compose: dict[str, Any]) -> None:
    assert set(compose) <= {"name", "services", "volumes", "networks"}
    assert set(services(compose)) == {
        "kafka", "topics", "streamfer", *LOADERS, "prometheus", "grafana",
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


def test_the_compose_file_passes_the_compose_specification() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (dev extra) not installed")
    schema = json.loads(SCHEMA.read_text())
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
    doc["services"]["streamfer"]["depends_on"]["topics"]["condition"] = "service_done"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)


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


def test_kafka_keeps_its_log_on_the_data_volume(compose: dict[str, Any]) -> None:
    kafka = services(compose)["kafka"]
    mounts = dict(v.split(":")[:2] for v in kafka["volumes"])
    assert kafka["environment"]["KAFKA_LOG_DIRS"] == mounts["kafka-data"]


def test_streamfer_service_runs_a_shipped_config_on_the_scraped_port(
    compose: dict[str, Any],
) -> None:
    svc = services(compose)["streamfer"]
    assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == (
        ROOT / "Dockerfile"
    )
    # no command: the image runs $STREAMFER_CONFIG, which its HEALTHCHECK reads too
    assert "command" not in svc and svc["environment"]["STREAMFER_CONFIG"] == "demo"
    port = demo_config().get("metrics", {}).get("port", DEFAULT_PORT)
    assert f"{port}:{port}" in svc["ports"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text())
    (job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "streamfer"]
    assert job["static_configs"][0]["targets"] == [f"streamfer:{port}"]


def created_topics(compose: dict[str, Any]) -> dict[str, int]:
    """``topic -> partitions`` the one-shot topics service creates."""
    script = services(compose)["topics"]["command"][0]
    (loop,) = re.findall(r"for topic in ([^;]+);", script)
    partitions = re.findall(r"--partitions (\d+)", script)
    assert len(partitions) == 1 and "--if-not-exists" in script, script
    return {topic: int(partitions[0]) for topic in loop.split()}


def test_input_topics_exist_before_the_worker_and_the_loaders_start(
    compose: dict[str, Any], cli_context: Callable[[list[str]], click.Context]
) -> None:
    topics = services(compose)["topics"]
    assert topics["image"] == services(compose)["kafka"]["image"]
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert topics["restart"] == "no"
    inputs = {s["input_topic"] for s in demo_config()["streams"]}
    assert set(created_topics(compose)) == inputs
    for name in ("streamfer", *LOADERS):
        depends = services(compose)[name]["depends_on"]
        assert depends["topics"] == {"condition": "service_completed_successfully"}, name
    for name in LOADERS:  # a loader that created a topic would give it its own count
        params = cli_context(services(compose)[name]["command"]).params
        assert params["partitions"] == created_topics(compose)[params["topic"]], name


def test_commands_parse_and_load_feeds_the_pipelines_inputs(
    compose: dict[str, Any], cli_context: Callable[[list[str]], click.Context]
) -> None:
    inputs = {s["input_topic"] for s in demo_config()["streams"]}
    fed = set()
    for name in LOADERS:
        svc = services(compose)[name]
        assert svc["image"] == services(compose)["streamfer"]["image"]
        assert svc["environment"] == services(compose)["streamfer"]["environment"]
        assert svc["healthcheck"] == {"disable": True}  # a producer serves no /healthz
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


def instruction(text: str, name: str) -> list[str]:
    """The JSON (exec form) argument of the one ``name`` instruction (continuations joined)."""
    joined = text.replace("\\\n", " ")
    (found,) = re.findall(rf"^{name} (?:--\S+ +)*(?:CMD +)?(\[.*\])$", joined, re.M)
    value: list[str] = json.loads(found)
    return value


def final_stage(text: str) -> str:
    return text[text.rindex("\nFROM ") :]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_installs_the_wheels_and_only_copies_from_stages(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    copied = set()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _dest = shlex.split(line)[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"{dockerfile} copies missing {source}"
                copied.add(source)
    # what the wheels are built from, and nothing of the source tree in the final stage
    assert {"pyproject.toml", "setup.py", "streamfer", "deploy/kafka", "deploy/configs",
            "examples"} <= copied  # fmt: skip
    assert "--wheel-dir /dist . ./examples/telemetry-anomaly" in text
    final = final_stage(text)
    copies = [ln for ln in final.splitlines() if ln.startswith("COPY ") and "--from" not in ln]
    assert copies == []
    assert "COPY --from=wheel /dist /dist" in final
    assert "COPY --from=wheel /src/examples /app/examples" in final
    assert "streamfer_example_telemetry_anomaly-*.whl" in final
    assert "/app/models" in final  # the configs in deploy/k8s read the models there
    assert "STREAMFER_CONFIG=demo" in final
    assert f"EXPOSE {DEFAULT_PORT}" in final
    assert "USER streamfer" in final
    assert instruction(text, "CMD") == []
    assert config_file("demo").is_file()


def test_the_gpu_image_builds_pycuda_in_a_devel_stage_and_runs_on_cudnn_runtime() -> None:
    text = (ROOT / "Dockerfile.gpu").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    assert [alias for _image, alias in stages] == ["wheel", "pycuda", ""]
    assert stages[1][0] == "nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU}"
    assert stages[2][0] == "nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${UBUNTU}"
    pycuda_stage = text[text.index(" AS pycuda") : text.rindex("\nFROM ")]
    assert '--wheel-dir /dist "pycuda>=2025.1"' in pycuda_stage
    assert "CUDA_ROOT=/usr/local/cuda" in pycuda_stage
    final = final_stage(text)
    assert "COPY --from=pycuda /dist /dist" in final
    assert '"${wheel}[gpu]"' in final and "/dist/pycuda-*.whl" in final
    assert '"pycuda>=2025.1"' in (ROOT / "pyproject.toml").read_text()  # the gpu extra's range


def test_both_images_share_their_entrypoint_and_healthcheck() -> None:
    cpu, gpu = ((ROOT / d).read_text() for d in DOCKERFILES)
    for name in ("ENTRYPOINT", "HEALTHCHECK", "CMD"):
        assert instruction(cpu, name) == instruction(gpu, name), name


def test_the_healthcheck_asks_the_port_of_the_config_named_by_streamfer_config(
    tmp_path: Path,
) -> None:
    """The HEALTHCHECK's command, run here against a health server on the config's port."""
    command = instruction((ROOT / "Dockerfile").read_text(), "HEALTHCHECK")
    assert command[:2] == ["python3", "-c"]
    shipped = config_file("sensor")  # any config but the default port
    config = yaml.safe_load(shipped.read_text())
    for model in config["models"].values():
        model["path"] = str((shipped.parent / model["path"]).resolve())
    path = tmp_path / "pipeline.yaml"
    env = {**os.environ, "STREAMFER_CONFIG": str(path)}

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", command[2]], env=env, timeout=60,
                              capture_output=True, text=True)  # fmt: skip

    with HealthServer(Metrics(), HealthState(), port=0) as server:
        config["metrics"] = {"port": server.port}
        path.write_text(yaml.safe_dump(config))
        ok = check()
        assert ok.returncode == 0, ok.stderr
    gone = check()  # the server is gone: the same check fails
    assert gone.returncode != 0 and "Connection refused" in gone.stderr


def test_the_entrypoint_runs_streamfer_config_without_arguments(tmp_path: Path) -> None:
    """The ENTRYPOINT's script, with a stand-in ``streamfer`` that prints its arguments."""
    entrypoint = instruction((ROOT / "Dockerfile").read_text(), "ENTRYPOINT")
    stand_in = tmp_path / "streamfer"
    stand_in.write_text('#!/bin/sh\necho "$#:$*"\n')
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "STREAMFER_CONFIG": "/etc/streamfer/my config.yaml"}  # fmt: skip

    def args_of(*cmd: str) -> str:
        done = subprocess.run([*entrypoint, *cmd], env=env, capture_output=True, text=True,
                              timeout=30, check=True)  # fmt: skip
        return done.stdout.strip()

    # three arguments: the path with a space stays one
    assert args_of() == "3:run --config /etc/streamfer/my config.yaml"
    assert args_of("produce", "camera", "--fps", "5") == "4:produce camera --fps 5"


def test_dockerignore_keeps_local_environments_out_of_the_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".cache", ".git"} <= set(ignored)
