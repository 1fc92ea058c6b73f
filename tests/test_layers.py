"""Layers point one way: streamfer <- engines, models, streams <- pipeline <- bench.

``streamfer``'s own modules (the exception root, paths) import none of its subpackages; ``engines``,
``models`` and ``streams`` never import ``pipeline`` or ``bench``, and ``engines`` never
imports ``streams`` (frames reach it as plain values); ``pipeline`` never imports ``bench``.
Checked on the source (every import statement, also those inside functions), so a lazy
import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "streamfer"
FORBIDDEN = {
    "streamfer": {"engines", "models", "streams", "pipeline", "bench"},
    "engines": {"streams", "pipeline", "bench"},
    "models": {"pipeline", "bench"},
    "streams": {"pipeline", "bench"},
    "pipeline": {"bench"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
    return {m.split(".")[1] for m in modules if m.startswith("streamfer.") and m.count(".") >= 1}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_lower_layers(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (
            ROOT.glob("*.py") if package == "streamfer" else (ROOT / package).rglob("*.py")
        )
    }
    assert {k: v for k, v in offenders.items() if v} == {}
