"""A renderer for the subset of kustomize that deploy/k8s uses, so CI needs no kustomize.

Supported in a ``kustomization.yaml`` (``Kustomization`` or ``Component``): ``resources``
(files, or directories holding a kustomization), ``components``, ``namespace``,
``labels`` (``pairs``, ``includeSelectors``, ``includeTemplates``) and ``images``
(``name``, ``newName``, ``newTag``, ``digest``). Any other field raises
:class:`KustomizeError` rather than being ignored, so a manifest change that needs more of
kustomize fails here first. Order as in kustomize: a kustomization's resources, then its
components (each adds its resources, then transforms everything so far), then its own
transformers. ``test_kustomize.py`` compares the output with ``kubectl kustomize`` where
one is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from streamfer.errors import StreamferError

Doc = dict[str, Any]
SUPPORTED = {"apiVersion", "kind", "resources", "components", "namespace", "labels", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "ClusterTriggerAuthentication"}  # fmt: skip
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
KINDS = {
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
    "Component": "kustomize.config.k8s.io/v1alpha1",
}


class KustomizeError(StreamferError):
    """A kustomization this renderer cannot build (or kustomize would refuse)."""


def build(directory: Path) -> list[Doc]:
    """The resources ``kustomize build directory`` prints, in no particular order."""
    docs = _build(directory, "Kustomization")
    seen: dict[tuple[str, str, str], Path] = {}
    for doc in docs:
        key = identity(doc)
        if key in seen:
            raise KustomizeError(f"{directory} | {key} defined twice. Note: kustomize refuses "
                                 "resources with the same kind, namespace and name")  # fmt: skip
        seen[key] = directory
    return docs


def identity(doc: Doc) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def _load(directory: Path, kind: str) -> Doc:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{path} | missing. Note: a resource or component directory "
                             "needs a kustomization.yaml")  # fmt: skip
    spec: Doc = yaml.safe_load(path.read_text())
    unknown = sorted(set(spec) - SUPPORTED)
    if unknown:
        raise KustomizeError(
            f"{path} | unsupported field(s) {unknown}. Note: this renderer "
            f"knows {sorted(SUPPORTED)}; extend it and its tests first"
        )
    if (spec.get("kind"), spec.get("apiVersion")) != (kind, KINDS[kind]):
        raise KustomizeError(f"{path} | kind {spec.get('kind')!r} apiVersion "
                             f"{spec.get('apiVersion')!r}. Note: expected {kind} "
                             f"{KINDS[kind]}")  # fmt: skip
    return spec


def _build(directory: Path, kind: str, docs: list[Doc] | None = None) -> list[Doc]:
    spec = _load(directory, kind)
    out = list(docs or [])
    for ref in spec.get("resources") or []:
        path = (directory / ref).resolve()
        if path.is_dir():
            out += _build(path, "Kustomization")
        elif path.is_file():
            out += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        else:
            raise KustomizeError(f"{directory / 'kustomization.yaml'} | resource {ref!r} "
                                 "not found. Note: a file or a directory")  # fmt: skip
    for ref in spec.get("components") or []:
        out = _build((directory / ref).resolve(), "Component", out)
    _transform(out, spec)
    return out


def _transform(docs: list[Doc], spec: Doc) -> None:
    namespace = spec.get("namespace")
    for doc in docs:
        if namespace and doc["kind"] not in CLUSTER_SCOPED:
            doc.setdefault("metadata", {})["namespace"] = namespace
        for entry in spec.get("labels") or []:
            _label(doc, entry)
        for image in spec.get("images") or []:
            for container in _containers(doc):
                container["image"] = _retag(container["image"], image)


def _label(doc: Doc, entry: Doc) -> None:
    pairs: dict[str, str] = entry["pairs"]
    selectors = bool(entry.get("includeSelectors", False))
    templates = selectors or bool(entry.get("includeTemplates", False))
    doc.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    spec = doc.get("spec") or {}
    if doc["kind"] in WORKLOADS and templates and "template" in spec:
        spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    if selectors:
        if doc["kind"] in WORKLOADS or doc["kind"] == "PodDisruptionBudget":
            spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
        elif doc["kind"] == "Service":
            spec.setdefault("selector", {}).update(pairs)


def _containers(doc: Doc) -> list[Doc]:
    if doc["kind"] not in WORKLOADS:
        return []
    pod = doc["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _retag(ref: str, image: Doc) -> str:
    """``ref`` with kustomize's ``images`` entry applied when its name matches."""
    name, sep, digest = ref.partition("@")
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    if name != image["name"]:
        return ref
    name = image.get("newName", name)
    if "digest" in image:
        return f"{name}@{image['digest']}"
    if "newTag" in image:
        return f"{name}:{image['newTag']}"
    return name + (f":{tag}" if tag else "") + (f"{sep}{digest}" if sep else "")
