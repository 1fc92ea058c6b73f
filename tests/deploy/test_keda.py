"""deploy/k8s KEDA objects: valid against KEDA's own CRD schemas (vendored in schemas/), and
each ScaledObject in agreement with the pipeline config of the group it scales."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_manifests import GROUPS, ROOTS, pipeline_config, rendered

KEDA_VERSION = "2.20.2"
SCHEMAS = Path(__file__).parent / "schemas" / f"keda-{KEDA_VERSION}"
PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
ANNOTATION = "streamfer.io/"

Doc = dict[str, Any]


def strict(schema: Doc) -> Doc:
    """The CRD schema with unknown fields refused, as ``kubectl apply`` (strict field
    validation) refuses them; maps typed by additionalProperties or left open by
    x-kubernetes-preserve-unknown-fields stay as they are."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):  # fmt: skip
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_schemas() -> dict[tuple[str, str], Doc]:
    """``(apiVersion, kind) -> openAPIV3Schema`` of each vendored CRD version served."""
    out = {}
    for path in sorted(SCHEMAS.glob("keda.sh_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                out[(f"{group}/{version['name']}", kind)] = strict(
                    version["schema"]["openAPIV3Schema"]
                )
    return out


@pytest.fixture(scope="module")
def keda_validate() -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (dev extra) not installed")
    schemas = crd_schemas()
    assert {k for _v, k in schemas} == {"ScaledObject", "TriggerAuthentication"}

    def validate(doc: Doc) -> None:
        schema = schemas[(doc["apiVersion"], doc["kind"])]
        jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)

    return validate


def keda_docs(root: str) -> Iterator[Doc]:
    return (d for d in rendered(root).values() if d["apiVersion"].startswith("keda.sh/"))


@pytest.mark.parametrize("root", ["keda-kafka", "keda-prometheus"])
def test_keda_objects_pass_the_crd_schemas(keda_validate: Any, root: str) -> None:
    kinds = []
    for doc in keda_docs(root):
        keda_validate(doc)
        kinds.append(doc["kind"])
    assert kinds.count("ScaledObject") == len(GROUPS)


def test_the_crd_check_catches_a_misspelt_field(keda_validate: Any) -> None:
    from jsonschema import ValidationError

    good = rendered("keda-kafka")[("ScaledObject", "streamfer-payments")]
    bad = copy.deepcopy(good)
    bad["spec"]["maxReplicas"] = bad["spec"].pop("maxReplicaCount")
    with pytest.raises(ValidationError, match="maxReplicas"):
        keda_validate(bad)
    bad = copy.deepcopy(good)
    bad["spec"]["triggers"][0]["authenticationRef"] = {"secret": "streamfer-kafka"}
    with pytest.raises(ValidationError, match="'name' is a required property"):
        keda_validate(bad)


def scaler_parameters() -> Doc:
    params: Doc = json.loads((SCHEMAS / "scaler-parameters.json").read_text())
    return params


@pytest.mark.parametrize("root", ["keda-kafka", "keda-prometheus"])
def test_trigger_metadata_uses_only_the_scalers_parameter_names(root: str) -> None:
    """The CRD types metadata as a free map: a misspelt key would be silently ignored."""
    for doc in keda_docs(root):
        for trigger in (doc["spec"] or {}).get("triggers", []):
            known = set(scaler_parameters()[trigger["type"]]["triggerMetadata"])
            unknown = set(trigger["metadata"]) - known
            assert not unknown, f"{doc['metadata']['name']}: {sorted(unknown)}"
            assert all(isinstance(v, str) for v in trigger["metadata"].values())


def test_the_trigger_authentication_maps_the_secrets_keys() -> None:
    auth = rendered("keda-kafka")[("TriggerAuthentication", "streamfer-kafka")]["spec"]
    (secret,) = yaml.safe_load_all((ROOTS["keda-kafka"] / "secret.example.yaml").read_text())
    known = set(scaler_parameters()["kafka"]["authParams"])
    for ref in auth["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
        assert ref["parameter"] in known
    assert {r["parameter"] for r in auth["secretTargetRef"]} == {"username", "password", "ca"}


def bounds_from_recording_rules() -> dict[str, float]:
    """``model -> p99 e2e bound (s)`` from deploy/prometheus/recording.rules.yml."""
    groups = yaml.safe_load((PROM / "recording.rules.yml").read_text())["groups"]
    out = {}
    for group in groups:
        for rule in group["rules"]:
            if rule.get("record") == "model:streamfer_e2e_latency_seconds:bound":
                out[rule["labels"]["model"]] = float(rule["expr"].removeprefix("vector(")[:-1])
    return out


def contradictions(scaled: Doc, root: str) -> list[str]:
    """What in a ScaledObject disagrees with its group's config, each naming the key."""
    meta, spec = scaled["metadata"], scaled["spec"]
    notes = meta["annotations"]
    group = notes[ANNOTATION + "config"].removesuffix(".yaml")
    config = pipeline_config(root, group)
    (stream,) = config["streams"]
    (trigger,) = spec["triggers"]
    partitions = int(notes[ANNOTATION + "input-partitions"])
    bound = float(notes[ANNOTATION + "latency-bound-s"])
    headroom = float(notes[ANNOTATION + "headroom"])
    wrong = []

    def check(key: str, got: Any, expected: Any) -> None:
        if got != expected:
            wrong.append(f"{meta['name']}: {key} is {got!r}, expected {expected!r}")

    check("spec.scaleTargetRef.name", spec["scaleTargetRef"]["name"], meta["name"])
    check("spec.maxReplicaCount", spec["maxReplicaCount"], partitions)
    check(f"metadata.annotations.{ANNOTATION}latency-bound-s", bound,
          bounds_from_recording_rules()[stream["model"]])  # fmt: skip
    md = trigger["metadata"]
    if trigger["type"] == "kafka":
        rate = float(notes[ANNOTATION + "replica-rate-per-s"])
        check("metadata.consumerGroup", md["consumerGroup"], config["consumer"]["group_id"])
        check("metadata.topic", md["topic"], stream["input_topic"])
        check("metadata.lagThreshold", md["lagThreshold"], str(math.floor(rate * bound * headroom)))
        check("metadata.activationLagThreshold", md["activationLagThreshold"], str(partitions))
        check("metadata.offsetResetPolicy", md["offsetResetPolicy"],
              config["consumer"].get("auto_offset_reset", "earliest"))  # fmt: skip
        for key, value in {"allowIdleConsumers": "false", "excludePersistentLag": "true",
                           "limitToPartitionsWithLag": "true",
                           "scaleToZeroOnInvalidOffset": "false"}.items():  # fmt: skip
            check(f"metadata.{key}", md.get(key), value)
        mechanisms = {"SCRAM-SHA-512": "scram_sha512", "SCRAM-SHA-256": "scram_sha256",
                      "PLAIN": "plaintext"}  # fmt: skip
        sasl = mechanisms.get(config["kafka"].get("sasl_mechanism", ""), "none")
        check("metadata.sasl", md.get("sasl", "none"), sasl)
        tls = (
            "enable" if config["kafka"].get("security_protocol", "").endswith("SSL") else "disable"
        )
        check("metadata.tls", md.get("tls", "disable"), tls)
    else:
        check("metadata.query", md["query"],
              f'max(streamfer_consumer_lag_seconds{{stream="{stream["name"]}"}})')  # fmt: skip
        check("metricType", trigger.get("metricType"), "Value")
        check("metadata.threshold", float(md["threshold"]), bound * headroom)
        check("metadata.activationThreshold", float(md["activationThreshold"]), bound)
    return wrong


@pytest.mark.parametrize("root", ["keda-kafka", "keda-prometheus"])
def test_scaled_objects_agree_with_the_configs_they_scale(root: str) -> None:
    groups = set()
    for doc in keda_docs(root):
        if doc["kind"] == "ScaledObject":
            assert contradictions(doc, root) == []
            assert ("Deployment", doc["spec"]["scaleTargetRef"]["name"]) in rendered(root)
            groups.add(doc["metadata"]["annotations"][ANNOTATION + "config"])
    assert groups == {f"{g}.yaml" for g in GROUPS}


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("spec", "maxReplicaCount"), 24, "spec.maxReplicaCount"),
        (("spec", "triggers", 0, "metadata", "topic"), "payments.tx.v2", "metadata.topic"),
        (("spec", "triggers", 0, "metadata", "consumerGroup"), "other", "metadata.consumerGroup"),
        (("spec", "triggers", 0, "metadata", "lagThreshold"), "10", "metadata.lagThreshold"),
        (("spec", "triggers", 0, "metadata", "offsetResetPolicy"), "latest",
         "metadata.offsetResetPolicy"),
        (("metadata", "annotations", ANNOTATION + "input-partitions"), "6",
         "spec.maxReplicaCount"),
    ],
)  # fmt: skip
def test_a_contradiction_fails_naming_the_key(path: tuple[Any, ...], value: Any,
                                              named: str) -> None:  # fmt: skip
    scaled = copy.deepcopy(rendered("keda-kafka")[("ScaledObject", "streamfer-payments")])
    node = scaled
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    wrong = contradictions(scaled, "keda-kafka")
    assert any(w.startswith(f"streamfer-payments: {named} is ") for w in wrong), wrong


def test_the_lag_thresholds_are_the_documented_calculation() -> None:
    """README.md shows each group's calculation with the numbers of the manifests."""
    readme = (ROOTS["keda-kafka"] / "README.md").read_text()
    for group in GROUPS:
        scaled = rendered("keda-kafka")[("ScaledObject", f"streamfer-{group}")]
        notes = scaled["metadata"]["annotations"]
        rate = int(notes[ANNOTATION + "replica-rate-per-s"])
        lag = scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"]
        assert f"{rate:,}" in readme and f"= **{int(lag):,}**" in readme, group
