"""The runtime's size limits and import shape, checked on the source.

For ``streamfer/pipeline``, ``streamfer/streams`` and ``streamfer/engines`` (subpackages
included): no ``.py`` file longer than ``MAX_FILE_LINES`` lines; no class with more than
``MAX_CLASS_METHODS`` methods (functions defined directly in its body). Among the modules of
``pipeline`` and of ``streams``: no import circle, counting every import statement, also those
inside functions, ``from x import y`` where ``y`` is a submodule, and relative imports; a
package's ``__init__`` counts as the package module; imports under ``if TYPE_CHECKING:`` are
left out (they never run). ``engines`` imports neither ``streams`` nor ``pipeline`` (type-only
imports count there: they still tie the packages). A failure lists every offender as
``path:line`` with its numbers, so the reader knows what to split. Needs no broker: only the
source is parsed; the last tests check the checker on a small made-up package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "streamfer"
SIZED_PACKAGES = ("pipeline", "streams", "engines")
ACYCLIC_PACKAGES = ("pipeline", "streams")
MAX_FILE_LINES = 400
MAX_CLASS_METHODS = 20


@dataclass(frozen=True)
class Edge:
    """One import statement of ``source`` that loads ``target`` (both dotted module names)."""

    source: str
    target: str
    where: str  # path:line of the import statement


def python_files(package_dir: Path) -> list[Path]:
    return sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)


def where(path: Path, line: int) -> str:
    try:
        shown = path.relative_to(REPO)
    except ValueError:
        shown = path
    return f"{shown}:{line}"


def long_files(paths: list[Path], limit: int) -> list[str]:
    out = []
    for path in paths:
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            out.append(f"{where(path, 1)} has {lines} lines (limit {limit})")
    return out


def large_classes(paths: list[Path], limit: int) -> list[str]:
    out = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            methods = [
                n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
            if len(methods) > limit:
                out.append(
                    f"{where(path, node.lineno)} class {node.name} has {len(methods)} methods "
                    f"(limit {limit})"
                )
    return out


def module_name(path: Path, src_root: Path) -> str:
    """Dotted name of a source file; a package's ``__init__.py`` names the package."""
    parts = list(path.relative_to(src_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.AST, type_checking: bool = False) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth; under ``if TYPE_CHECKING:`` only if asked."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if not type_checking and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the else branch is what runs
            continue
        stack.extend(ast.iter_child_nodes(node))


def _longest_known(name: str, known: set[str]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> list[tuple[str, str]]:
    """Per name the statement imports: (the module it names, that module or its submodule
    named in ``from x import y``), relative imports made absolute from ``package``."""
    if isinstance(node, ast.Import):
        return [(alias.name, alias.name) for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
    return [(base, f"{base}.{alias.name}") for alias in node.names]


def import_edges(paths: list[Path], src_root: Path) -> list[Edge]:
    """Edges between the given modules, one per import statement and target."""
    names = {path: module_name(path, src_root) for path in paths}
    known = set(names.values())
    edges: list[Edge] = []
    for path, name in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            targets = [
                sub if sub in known else _longest_known(base, known)
                for base, sub in _imported(node, package)
            ]
            for target in dict.fromkeys(targets):
                if target is not None and target != name:
                    edges.append(Edge(name, target, where(path, node.lineno)))
    return edges


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (each one holds at least one circle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def shortest_circle(graph: Mapping[str, set[str]], start: str, members: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself inside one component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph.get(node, set()) & members):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if succ not in previous:
                    previous[succ] = node
                    following.append(succ)
        frontier = following
    return [start]


def import_circles(edges: list[Edge]) -> list[str]:
    """One report per circle component: a shortest circle, then every import inside it."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
    reports = []
    for component in strongly_connected(graph):
        members = set(component)
        circle = " -> ".join(shortest_circle(graph, component[0], members))
        inside = sorted(
            (e for e in edges if e.source in members and e.target in members),
            key=lambda e: e.where,
        )
        lines = [f"{len(members)} modules import each other, e.g. {circle}:"]
        lines += [f"    {e.where} {e.source} imports {e.target}" for e in inside]
        reports.append("\n".join(lines))
    return reports


def _within(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(f"{root}.") for root in roots)


def forbidden_imports(paths: list[Path], src_root: Path, forbidden: tuple[str, ...]) -> list[str]:
    """Import statements (type-only ones too: they still tie the packages) naming a module in
    or under one of ``forbidden``."""
    out: list[tuple[Path, int, str]] = []
    for path in paths:
        name = module_name(path, src_root)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree, type_checking=True):
            hits = {
                base if _within(base, forbidden) else sub
                for base, sub in _imported(node, package)
                if _within(sub, forbidden)
            }
            out += [(path, node.lineno, f"{name} imports {hit}") for hit in sorted(hits)]
    return [f"{where(path, line)} {text}" for path, line, text in sorted(out)]


def _failure(title: str, offenders: list[str]) -> str:
    return f"{len(offenders)} {title}:\n" + "\n".join(f"  {o}" for o in offenders)


@pytest.mark.parametrize("package", SIZED_PACKAGES)
def test_no_file_over_the_line_limit(package: str) -> None:
    offenders = long_files(python_files(ROOT / package), MAX_FILE_LINES)
    assert not offenders, _failure(f"files over {MAX_FILE_LINES} lines", offenders)


@pytest.mark.parametrize("package", SIZED_PACKAGES)
def test_no_class_over_the_method_limit(package: str) -> None:
    offenders = large_classes(python_files(ROOT / package), MAX_CLASS_METHODS)
    assert not offenders, _failure(f"classes over {MAX_CLASS_METHODS} methods", offenders)


@pytest.mark.parametrize("package", ACYCLIC_PACKAGES)
def test_no_import_circle(package: str) -> None:
    edges = import_edges(python_files(ROOT / package), REPO)
    offenders = import_circles(edges)
    assert not offenders, _failure(f"import circles in streamfer/{package}", offenders)


def test_engines_import_neither_streams_nor_pipeline() -> None:
    forbidden = ("streamfer.streams", "streamfer.pipeline")
    offenders = forbidden_imports(python_files(ROOT / "engines"), REPO, forbidden)
    assert not offenders, _failure("imports of streams/ or pipeline/ in engines/", offenders)


# The checker itself, on a small made-up package: each form of import it must see.

FAKE_PACKAGE = {
    "__init__.py": "from fake.a import A\n",
    "a.py": "A = 1\ndef late():\n    from fake.sub import b\n",  # inside a function
    "sub/__init__.py": "",
    "sub/b.py": "from .. import c\n",  # relative, a submodule named in `from x import y`
    "c.py": "import fake.a\n",  # plain import closes a -> sub.b -> c -> a
    "d.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from fake.e import E\n"
        "else:\n    from fake import a\n"
    ),
    "e.py": "from fake.d import x\n",  # d -> e only under TYPE_CHECKING: no circle
    "low.py": (
        "import typing\nif typing.TYPE_CHECKING:\n    import fake.sub.b\n"
        "def f():\n    from .sub import b\n"
    ),
    "big.py": "class Big:\n" + "".join(f"    def m{i}(self): ...\n" for i in range(5)),
}


def _write_fake(tmp_path: Path) -> list[Path]:
    for rel, text in FAKE_PACKAGE.items():
        path = tmp_path / "fake" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return python_files(tmp_path / "fake")


def test_checker_sees_function_relative_and_submodule_imports(tmp_path: Path) -> None:
    reports = import_circles(import_edges(_write_fake(tmp_path), tmp_path))
    assert len(reports) == 1, reports
    circle = "fake.a -> fake.sub.b -> fake.c -> fake.a"
    assert f"3 modules import each other, e.g. {circle}:" in reports[0]
    assert "fake/a.py:3 fake.a imports fake.sub.b" in reports[0]
    assert "fake/sub/b.py:1 fake.sub.b imports fake.c" in reports[0]


def test_checker_skips_type_checking_but_not_its_else(tmp_path: Path) -> None:
    edges = import_edges(_write_fake(tmp_path), tmp_path)
    assert ("fake.d", "fake.e") not in {(e.source, e.target) for e in edges}
    assert ("fake.d", "fake.a") in {(e.source, e.target) for e in edges}


def test_checker_counts_lines_and_methods(tmp_path: Path) -> None:
    paths = _write_fake(tmp_path)
    assert large_classes(paths, 4) == [
        f"{tmp_path}/fake/big.py:1 class Big has 5 methods (limit 4)"
    ]
    assert large_classes(paths, 5) == []
    assert long_files(paths, 5) == [f"{tmp_path}/fake/big.py:1 has 6 lines (limit 5)"]
    assert long_files(paths, 6) == []


def test_checker_finds_forbidden_imports_type_only_ones_too(tmp_path: Path) -> None:
    offenders = forbidden_imports(_write_fake(tmp_path), tmp_path, ("fake.sub",))
    assert offenders == [
        f"{tmp_path}/fake/a.py:3 fake.a imports fake.sub",
        f"{tmp_path}/fake/low.py:3 fake.low imports fake.sub.b",
        f"{tmp_path}/fake/low.py:5 fake.low imports fake.sub",
    ]
