"""deploy/k8s: manifests valid against the Kubernetes schemas, and consistent with the app."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from streamfer.pipeline.config import parse_config
from streamfer.pipeline.metrics import DEFAULT_PORT

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
KUBE_VERSIONS = ("1.30.0", "1.33.0")


def docs() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def deployment(name: str) -> dict[str, Any]:
    return docs()[("Deployment", name)]


def container(name: str) -> dict[str, Any]:
    (c,) = deployment(name)["spec"]["template"]["spec"]["containers"]
    return c


@pytest.fixture(scope="module")
def validate() -> Any:
    kv = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (dev extra) not installed"
    )
    return kv.validate


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_manifests_pass_strict_schema_validation(validate: Any, version: str) -> None:
    for doc in docs().values():
        validate(doc, version, strict=True)  # raises ValidationError naming the field


def test_strict_validation_catches_a_misspelt_field(validate: Any) -> None:
    bad = copy.deepcopy(deployment("streamfer-cpu"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(Exception, match="readinesProbe"):
        validate(bad, KUBE_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_everything_lives_in_the_streamfer_namespace() -> None:
    for (kind, name), doc in docs().items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == "streamfer", (kind, name)


@pytest.mark.parametrize("name", ["streamfer-cpu", "streamfer-gpu"])
def test_workers_probe_and_expose_the_health_server(
    name: str, cli_context: Callable[[list[str]], click.Context]
) -> None:
    c = container(name)
    run = cli_context(c["args"])
    assert run.command.name == "run"
    mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["config"]
    assert run.params["config_path"].parent == Path(mount)
    template = deployment(name)["spec"]["template"]
    assert c["ports"] == [{"name": "metrics", "containerPort": DEFAULT_PORT, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(DEFAULT_PORT),
        "prometheus.io/path": "/metrics",
    }
    selector = deployment(name)["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    # the drain (runtime.drain_timeout_s) fits inside the grace period
    data = docs()[("ConfigMap", "streamfer-config")]["data"]
    config = yaml.safe_load(data[run.params["config_path"].name])
    grace = template["spec"]["terminationGracePeriodSeconds"]
    assert config["runtime"]["drain_timeout_s"] < grace


def test_gpu_workers_land_on_the_gpu_pool_only() -> None:
    spec = deployment("streamfer-gpu")["spec"]["template"]["spec"]
    c = container("streamfer-gpu")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    cpu = container("streamfer-cpu")
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert "tolerations" not in deployment("streamfer-cpu")["spec"]["template"]["spec"]


def test_service_selects_every_worker_on_the_metrics_port() -> None:
    svc = docs()[("Service", "streamfer-metrics")]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["ports"][0]["port"] == DEFAULT_PORT
    for name in ("streamfer-cpu", "streamfer-gpu"):
        labels = deployment(name)["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()


def test_hpa_scales_the_cpu_workers_on_exported_lag(exported_names: set[str]) -> None:
    hpa = docs()[("HorizontalPodAutoscaler", "streamfer-cpu")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "streamfer-cpu"}  # fmt: skip
    (metric,) = hpa["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] in exported_names
    cpu_streams = yaml.safe_load(docs()[("ConfigMap", "streamfer-config")]["data"]["cpu.yaml"])
    selected = metric["external"]["metric"]["selector"]["matchLabels"]["stream"]
    assert selected in {s["name"] for s in cpu_streams["streams"]}


@pytest.mark.parametrize("key", ["cpu.yaml", "gpu.yaml"])
def test_configmap_configs_are_valid_pipeline_configs(key: str, tmp_path: Path) -> None:
    raw = yaml.safe_load(docs()[("ConfigMap", "streamfer-config")]["data"][key])
    for name, model in raw["models"].items():
        # the image ships the reference models at /app/models (see the Dockerfile)
        assert model["path"] == f"/app/models/{name}.onnx"
        stand_in = tmp_path / f"{name}.onnx"
        stand_in.write_bytes(b"")
        model["path"] = str(stand_in)
    cfg = parse_config(raw, f"configmap {key}")
    assert cfg.metrics.port == DEFAULT_PORT and cfg.metrics.host == "0.0.0.0"
    assert cfg.kafka.bootstrap_servers is None  # from $STREAMFER_BOOTSTRAP of the pod
