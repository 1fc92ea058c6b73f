"""``streamfer models``: the model versions on disk and which one each stream serves."""

from __future__ import annotations

from pathlib import Path

import click

from streamfer.engines.versions import discover, select
from streamfer.errors import EngineError
from streamfer.pipeline.config import PipelineConfig, load_config
from streamfer.pipeline.config_cli import CONFIG_OPTION


@click.group()
def models() -> None:
    """Model versions: what is on disk and what the streams serve."""


@models.command()
@CONFIG_OPTION
def status(config_path: Path) -> None:
    """Print each model's versions and the one each stream would serve.

    "Would serve": what a worker started now, or one sent SIGHUP now, loads under
    the config's version policy. Versions in order, oldest first; ``*`` marks it.
    Exits 1 when a model in use has no version it can serve.
    """
    cfg = load_config(config_path)
    click.echo(status_text(cfg))
    if any(_serves(cfg, s.model) is None for s in cfg.streams):
        raise SystemExit(1)


def _serves(cfg: PipelineConfig, model: str) -> str | None:
    m = cfg.models[model]
    try:
        chosen = select(m.path, m.version)
    except EngineError:
        return None
    return chosen.name if chosen.name is not None else "(file)"


def status_text(cfg: PipelineConfig) -> str:
    """The report of ``streamfer models status``."""
    lines = []
    for name, m in cfg.models.items():
        poll = f", polled every {m.poll_s:g} s" if m.poll_s else ""
        lines.append(f"model {name}: {m.path} (version: {m.version}{poll})")
        versions, chosen = [], None
        try:
            versions = discover(m.path)
            chosen = select(m.path, m.version)
        except EngineError as exc:
            lines.append(f"  cannot serve: {exc}")
        for v in versions:
            mark = "*" if chosen is not None and v == chosen else " "
            what = v.name if v.name is not None else "(one file)"
            notes = [] if v.present else ["no model.onnx"]
            if v.card is not None:
                notes.append(f"card {v.card.name}")
            lines.append(f"  {mark} {what}" + (f"  [{', '.join(notes)}]" if notes else ""))
    for s in cfg.streams:
        serves = _serves(cfg, s.model)
        lines.append(f"stream {s.name}: model {s.model} version {serves or 'none (see above)'}")
    return "\n".join(lines)
