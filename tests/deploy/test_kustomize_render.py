"""tests/deploy/kustomize_render.py renders what kustomize renders, for the subset it knows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_manifests import ROOTS
from kustomize_render import KustomizeError, build, identity

KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
COMPONENT = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def by_id(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {identity(d): d for d in docs}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """base (namespace, labels, images) + a component + a root adding its own resource."""
    write(
        tmp_path / "base" / "kustomization.yaml",
        KUSTOMIZATION
        + """
namespace: shop
labels:
  - pairs: {team: a}
    includeTemplates: true
images:
  - {name: app, newName: reg.example/app}
  - {name: side, newTag: "2"}
  - {name: pinned, digest: "sha256:abc"}
resources: [ns.yaml, deploy.yaml]
""",
    )
    write(
        tmp_path / "base" / "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
    )
    write(
        tmp_path / "base" / "deploy.yaml",
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers: [{name: init, image: pinned:1}]
      containers: [{name: a, image: "app:1.0"}, {name: b, image: side}, {name: c, image: other:3}]
""",
    )
    write(
        tmp_path / "comp" / "kustomization.yaml",
        COMPONENT
        + """
labels:
  - pairs: {scaled: "yes"}
    includeSelectors: true
resources: [extra.yaml]
""",
    )
    write(
        tmp_path / "comp" / "extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: shop}\n",
    )
    write(
        tmp_path / "kustomization.yaml", KUSTOMIZATION + "resources: [base]\ncomponents: [comp]\n"
    )
    return tmp_path


def test_namespace_labels_images_and_components(tree: Path) -> None:
    docs = by_id(build(tree))
    assert set(docs) == {("Namespace", "", "shop"), ("Deployment", "shop", "web"),
                         ("ConfigMap", "shop", "extra")}  # fmt: skip
    web = docs[("Deployment", "shop", "web")]
    # base labels: metadata and template, not the selector
    assert web["metadata"]["labels"] == {"team": "a", "scaled": "yes"}
    assert web["spec"]["template"]["metadata"]["labels"] == {"app": "web", "team": "a",
                                                             "scaled": "yes"}  # fmt: skip
    # the component's selector labels reach what came before it, selectors included
    assert web["spec"]["selector"]["matchLabels"] == {"app": "web", "scaled": "yes"}
    assert docs[("ConfigMap", "shop", "extra")]["metadata"]["labels"] == {"scaled": "yes"}
    pod = web["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == ["reg.example/app:1.0", "side:2", "other:3"]
    assert pod["initContainers"][0]["image"] == "pinned@sha256:abc"


def test_an_unsupported_field_fails_naming_it(tree: Path) -> None:
    path = tree / "base" / "kustomization.yaml"
    path.write_text(path.read_text() + "patches: []\n")
    with pytest.raises(KustomizeError, match=r"unsupported field\(s\) \['patches'\]"):
        build(tree)


def test_a_duplicate_resource_fails(tree: Path) -> None:
    write(
        tree / "comp" / "extra.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n",
    )
    with pytest.raises(KustomizeError, match="defined twice"):
        build(tree)


def test_a_component_listed_as_a_resource_fails(tree: Path) -> None:
    write(tree / "kustomization.yaml", KUSTOMIZATION + "resources: [base, comp]\n")
    with pytest.raises(KustomizeError, match="expected Kustomization"):
        build(tree)


def _kustomize() -> list[str]:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.skip("neither kustomize nor kubectl on PATH: the renderer is not cross-checked")


@pytest.mark.parametrize("root", sorted(ROOTS))
def test_the_renderer_agrees_with_kustomize_on_deploy_k8s(root: str) -> None:
    result = subprocess.run([*_kustomize(), str(ROOTS[root])], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert by_id(build(ROOTS[root])) == by_id(list(yaml.safe_load_all(result.stdout)))


def test_the_renderer_agrees_with_kustomize_on_the_fixture(tree: Path) -> None:
    result = subprocess.run([*_kustomize(), str(tree)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert by_id(build(tree)) == by_id(list(yaml.safe_load_all(result.stdout)))
