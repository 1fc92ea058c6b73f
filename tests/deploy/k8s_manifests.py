"""deploy/k8s as the cluster receives it: each kustomization root rendered (kustomize_render)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from kustomize_render import build

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# every root an operator applies (README.md); base/ is applied only through them
ROOTS = {
    "keda-kafka": K8S,
    "keda-prometheus": K8S / "overlays" / "keda-prometheus",
    "hpa": K8S / "overlays" / "hpa",
}
GROUPS = ("payments", "vehicles", "cameras")

Doc = dict[str, Any]


@cache
def _rendered(root: str) -> tuple[Doc, ...]:
    return tuple(build(ROOTS[root]))


def rendered(root: str) -> dict[tuple[str, str], Doc]:
    """``(kind, name) -> document`` of one root's build (a fresh copy per call)."""
    docs = yaml.safe_load(yaml.safe_dump(list(_rendered(root))))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pipeline_config(root: str, group: str) -> Doc:
    """The raw pipeline config of a stream group, from the rendered ConfigMap."""
    data = rendered(root)[("ConfigMap", "streamfer-config")]["data"]
    config: Doc = yaml.safe_load(data[f"{group}.yaml"])
    return config
