"""``streamfer config show``: the resolved configuration, every default filled in, and
where each value came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from streamfer.pipeline.config.sources import Path_, Resolved, load_resolved, masked
from streamfer.pipeline.config_docs import docs
from streamfer.streams.bootstrap import bootstrap_option

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pipeline YAML file, or the name of a shipped one (fraud, camera, sensor, demo, ...).",
)


@click.group()
def config() -> None:
    """Inspect and document pipeline configuration."""


config.add_command(docs)


@config.command()
@CONFIG_OPTION
@bootstrap_option
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True,
              help="yaml: each value with its source as a trailing comment; json: "
              '{"config": ..., "sources": ...}, sources shaped like config.')  # fmt: skip
def show(config_path: Path, bootstrap: str | None, fmt: str) -> None:
    """Print the configuration a run would use: the file, with STREAMFER__<SECTION>__<KEY>
    environment overrides and --bootstrap applied, every default filled in.

    Each value's source is file, env (NAME), flag (--bootstrap) or default. Secrets
    (any key holding password, secret or token) print as ***.
    """
    resolved = load_resolved(config_path, bootstrap=bootstrap)
    doc = masked(resolved.config.model_dump(mode="json"))
    if fmt == "json":
        out = {"config": doc, "sources": _sources_tree(doc, resolved, ())}
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"# {resolved.path}")
    click.echo("\n".join(_yaml_lines(doc, resolved, (), 0)))


def _is_leaf(value: Any) -> bool:
    if isinstance(value, dict):
        return not value
    if isinstance(value, list):
        return not value or not all(isinstance(v, dict) for v in value)
    return True


def _children(node: Any) -> list[tuple[str | int, Any]]:
    return list(node.items()) if isinstance(node, dict) else list(enumerate(node))


def _sources_tree(node: Any, resolved: Resolved, path: Path_) -> Any:
    if _is_leaf(node):
        return resolved.source(*path)
    tree = {k: _sources_tree(v, resolved, (*path, k)) for k, v in _children(node)}
    return tree if isinstance(node, dict) else list(tree.values())


def _flow(value: Any) -> str:
    """One YAML value on one line."""
    text: str = yaml.safe_dump([value], default_flow_style=True, width=1 << 20).strip()
    return text[1:-1]  # the one-element list's brackets


def _yaml_lines(node: dict[str, Any], resolved: Resolved, path: Path_, indent: int) -> list[str]:
    lines: list[str] = []
    pad = " " * indent
    for key, value in node.items():
        here = (*path, key)
        if _is_leaf(value):
            lines.append(f"{pad}{key}: {_flow(value)}  # {resolved.source(*here)}")
        elif isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines += _yaml_lines(value, resolved, here, indent + 2)
        else:
            lines.append(f"{pad}{key}:")
            for i, item in enumerate(value):
                item_lines = _yaml_lines(item, resolved, (*here, i), indent + 4)
                if item_lines:
                    first = item_lines[0]
                    item_lines[0] = f"{pad}  - {first.lstrip()}"
                lines += item_lines
    return lines
