"""deploy/k8s: every rendered manifest valid against the Kubernetes schemas, and consistent
with the app (configs, ports, probes, images, disruption budgets, engine cache)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from k8s_manifests import GROUPS, K8S, ROOTS, pipeline_config, rendered

from streamfer.pipeline.config import parse_config
from streamfer.pipeline.metrics import DEFAULT_PORT

KUBE_VERSIONS = ("1.30.0", "1.33.0")
ROOT = K8S.parents[1]
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)


def deployment(name: str, root: str = "keda-kafka") -> dict[str, Any]:
    return rendered(root)[("Deployment", name)]


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
@pytest.mark.parametrize("root", sorted(ROOTS))
def test_rendered_manifests_pass_strict_schema_validation(
    validate: Any, version: str, root: str
) -> None:
    """Core kinds against Kubernetes' schemas; KEDA's kinds are test_keda.py's."""
    checked = 0
    for doc in rendered(root).values():
        if not doc["apiVersion"].startswith("keda.sh/"):
            validate(doc, version, strict=True)  # raises ValidationError naming the field
            checked += 1
    assert checked >= 10


def test_the_secret_example_passes_and_holds_only_placeholders(validate: Any) -> None:
    (secret,) = yaml.safe_load_all((K8S / "secret.example.yaml").read_text())
    validate(secret, KUBE_VERSIONS[-1], strict=True)
    data = secret["stringData"]
    assert "PLACEHOLDER" in data["password"] and "PLACEHOLDER" in data["ca.crt"]
    assert "EXAMPLE ONLY: PLACEHOLDER VALUES" in (K8S / "secret.example.yaml").read_text()
    for root in ROOTS:  # never applied with the manifests: it would overwrite the real one
        assert ("Secret", "streamfer-kafka") not in rendered(root)
    for group in GROUPS:
        assert pipeline_config("keda-kafka", group)["kafka"]["sasl_username"] == data["username"]


def test_strict_validation_catches_a_misspelt_field(validate: Any) -> None:
    bad = copy.deepcopy(deployment("streamfer-payments"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(Exception, match="readinesProbe"):
        validate(bad, KUBE_VERSIONS[-1], strict=True)


def test_everything_namespaced_lives_in_the_streamfer_namespace() -> None:
    for root in ROOTS:
        for (kind, name), doc in rendered(root).items():
            if kind != "Namespace":
                assert doc["metadata"]["namespace"] == "streamfer", (root, kind, name)
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "streamfer", name


def test_each_root_has_one_autoscaler_per_stream_group() -> None:
    for root in ROOTS:
        docs = rendered(root)
        scalers = [(k, n) for k, n in docs if k in {"ScaledObject", "HorizontalPodAutoscaler"}]
        assert sorted(n for _k, n in scalers) == sorted(f"streamfer-{g}" for g in GROUPS), root
        assert len({k for k, _n in scalers}) == 1, root  # never two autoscalers on one target


@pytest.mark.parametrize("group", GROUPS)
def test_workers_probe_and_expose_the_health_server(
    group: str, cli_context: Callable[[list[str]], click.Context]
) -> None:
    name = f"streamfer-{group}"
    c = container(name)
    run = cli_context(c["args"])
    assert run.command.name == "run"
    mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["config"]
    assert run.params["config_path"] == Path(mount) / f"{group}.yaml"
    assert {e["name"]: e["value"] for e in c["env"]}["STREAMFER_CONFIG"] == str(
        run.params["config_path"]
    )
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
    assert "replicas" not in deployment(name)["spec"]  # the autoscaler owns it
    config = pipeline_config("keda-kafka", group)
    assert config["runtime"]["drain_timeout_s"] < template["spec"]["terminationGracePeriodSeconds"]
    # the Secret's files are where the config reads them
    secret_mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["kafka-credentials"]
    volume = {v["name"]: v for v in template["spec"]["volumes"]}["kafka-credentials"]
    files = {Path(secret_mount) / item["path"] for item in volume["secret"]["items"]}
    assert {
        Path(config["kafka"]["sasl_password_file"]),
        Path(config["kafka"]["ssl_cafile"]),
    } == files


@pytest.mark.parametrize(("group", "suffix"), [("payments", ""), ("vehicles", ""),
                                              ("cameras", "-gpu")])  # fmt: skip
def test_images_carry_the_release_version_and_an_explicit_pull_policy(
    group: str, suffix: str
) -> None:
    assert VERSION is not None
    c = container(f"streamfer-{group}")
    assert c["image"] == f"streamfer:{VERSION.group(1)}{suffix}"
    assert c["imagePullPolicy"] == "IfNotPresent"  # explicit, and right for a fixed tag


def test_gpu_workers_land_on_the_gpu_pool_only() -> None:
    spec = deployment("streamfer-cameras")["spec"]["template"]["spec"]
    c = container("streamfer-cameras")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    for cpu in ("streamfer-payments", "streamfer-vehicles"):
        assert "nvidia.com/gpu" not in container(cpu)["resources"]["limits"]
        assert "tolerations" not in deployment(cpu)["spec"]["template"]["spec"]


def test_the_engine_cache_is_a_claim_that_outlives_pods() -> None:
    spec = deployment("streamfer-cameras")["spec"]["template"]["spec"]
    volume = {v["name"]: v for v in spec["volumes"]}["engine-cache"]
    assert "emptyDir" not in volume
    claim = rendered("keda-kafka")[
        ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    ]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes share it
    env = {e["name"]: e["value"] for e in container("streamfer-cameras")["env"]}
    mount = {m["name"]: m["mountPath"] for m in container("streamfer-cameras")["volumeMounts"]}
    assert Path(env["STREAMFER_CACHE_DIR"]).is_relative_to(mount["engine-cache"])


def test_every_deployment_has_a_disruption_budget_selecting_exactly_its_pods() -> None:
    docs = rendered("keda-kafka")
    deployments = {n: d for (k, n), d in docs.items() if k == "Deployment"}
    budgets = {n: d for (k, n), d in docs.items() if k == "PodDisruptionBudget"}
    assert set(budgets) == set(deployments)
    for name, pdb in budgets.items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        for other, dep in deployments.items():
            labels = dep["spec"]["template"]["metadata"]["labels"]
            assert (selector.items() <= labels.items()) == (other == name), (name, other)
        # a lone replica can still be drained off its node
        assert pdb["spec"] == {"maxUnavailable": 1, "selector": pdb["spec"]["selector"]}


def test_service_selects_every_worker_on_the_metrics_port() -> None:
    svc = rendered("keda-kafka")[("Service", "streamfer-metrics")]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["ports"][0]["port"] == DEFAULT_PORT
    for group in GROUPS:
        labels = deployment(f"streamfer-{group}")["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()


def test_hpa_overlay_scales_each_group_on_its_own_exported_lag(
    exported_names: set[str],
) -> None:
    docs = rendered("hpa")
    for group in GROUPS:
        hpa = docs[("HorizontalPodAutoscaler", f"streamfer-{group}")]["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": f"streamfer-{group}"}  # fmt: skip
        (metric,) = hpa["metrics"]
        assert metric["external"]["metric"]["name"] in exported_names
        (stream,) = pipeline_config("hpa", group)["streams"]
        assert metric["external"]["metric"]["selector"]["matchLabels"] == {"stream": stream["name"]}
        kafka = rendered("keda-kafka")[("ScaledObject", f"streamfer-{group}")]["spec"]
        assert hpa["maxReplicas"] == kafka["maxReplicaCount"]
        (trigger,) = kafka["triggers"]
        assert metric["external"]["target"]["averageValue"] == trigger["metadata"]["lagThreshold"]


@pytest.mark.parametrize("group", GROUPS)
def test_configmap_configs_are_valid_pipeline_configs(group: str, tmp_path: Path) -> None:
    raw = pipeline_config("keda-kafka", group)
    for name, model in raw["models"].items():
        # the image links the wheel's reference models at /app/models (see the Dockerfiles)
        assert model["path"] == f"/app/models/{name}.onnx"
        stand_in = tmp_path / f"{name}.onnx"
        stand_in.write_bytes(b"")
        model["path"] = str(stand_in)
    for key in ("sasl_password_file", "ssl_cafile"):  # the Secret's files, mounted
        stand_in = tmp_path / Path(raw["kafka"][key]).name
        stand_in.write_text("placeholder\n")
        raw["kafka"][key] = str(stand_in)
    cfg = parse_config(raw, f"configmap {group}.yaml")
    assert cfg.metrics.port == DEFAULT_PORT and cfg.metrics.host == "0.0.0.0"
    assert cfg.kafka.bootstrap_servers is None  # from $STREAMFER_BOOTSTRAP of the pod
    assert cfg.kafka.security_protocol == "SASL_SSL"
    assert cfg.kafka.topic_replication_factor == 3
    assert cfg.consumer.group_id == f"streamfer-{group}"
