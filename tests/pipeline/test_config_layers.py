"""The config package sits below the processors: it finds and checks plug-ins itself
(``config.plugins``), so no import of it, also inside a function, reaches a processor
module or the postprocessors (which import the config: that was an import circle)."""

from __future__ import annotations

import ast
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "streamfer" / "pipeline" / "config"
ABOVE = ("streamfer.pipeline.processors", "streamfer.pipeline.postprocess")


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_config_imports_nothing_above_it() -> None:
    offenders = [
        f"{path.name}:{line} {name}"
        for path in sorted(CONFIG.glob("*.py"))
        for line, name in imports(path)
        if name.startswith(ABOVE)
    ]
    assert offenders == []


def test_every_config_option_has_a_description() -> None:
    """Descriptions are the docstrings under the fields: they must reach pydantic."""
    from streamfer.pipeline.config import PipelineConfig
    from streamfer.pipeline.config_docs import walk

    options = list(walk(PipelineConfig))
    assert len(options) > 80
    assert all(o.description for o in options)
    by_key = {o.key: o.description for o in options}
    assert by_key["consumer.max_poll_records"].startswith("Most records one poll returns")
