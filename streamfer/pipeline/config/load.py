"""Reading a config: the YAML file (a path or a shipped name), relative paths resolved, every
problem found (types, then the cross-field checks of ``config.checks``) in one ConfigError."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from streamfer.errors import ConfigError
from streamfer.paths import shipped_config, shipped_config_names
from streamfer.pipeline.config.checks import (
    kafka_problems,
    model_problems,
    plugin_problems,
    reference_problems,
    stream_problems,
    topic_problems,
)
from streamfer.pipeline.config.clients import ConsumerConfig
from streamfer.pipeline.config.kafka import KafkaConfig
from streamfer.pipeline.config.model import ModelConfig
from streamfer.pipeline.config.pipeline import PipelineConfig
from streamfer.pipeline.config.problems import Problem, format_problems, pydantic_problems
from streamfer.pipeline.config.stream import StreamConfig

_T = TypeVar("_T", bound=BaseModel)


def _resolve_paths(raw: Any, base: Path) -> Any:
    """Make relative file paths relative to the config file's directory."""
    if not isinstance(raw, dict):
        return raw
    raw = dict(raw)
    models = raw.get("models")
    if isinstance(models, dict):
        raw["models"] = {name: _with_path(m, ("path",), base) for name, m in models.items()}
    if isinstance(raw.get("kafka"), dict):
        files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_password_file")
        raw["kafka"] = _with_path(raw["kafka"], files, base)
    streams = raw.get("streams")
    if isinstance(streams, list):
        raw["streams"] = [
            {**s, "state": _with_path(s["state"], ("dir",), base)}
            if isinstance(s, dict) and isinstance(s.get("state"), dict)
            else s
            for s in streams
        ]
    return raw


def _with_path(section: Any, keys: tuple[str, ...], base: Path) -> Any:
    if not isinstance(section, dict):
        return section
    out = dict(section)
    for key in keys:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = os.path.normpath(base / value)
    return out


def _try(model: type[_T], raw: Any) -> _T | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None  # its structural errors are reported already


def _semantic_problems(raw: dict[str, Any]) -> Iterator[Problem]:
    """Cross-field checks on every section that parsed, even when others did not."""
    kafka = _try(KafkaConfig, raw.get("kafka", {}))
    if kafka is not None:
        yield from kafka_problems(kafka)
    raw_models = raw.get("models")
    models: dict[str, ModelConfig | None] = {}
    if isinstance(raw_models, dict):
        models = {str(n): _try(ModelConfig, m) for n, m in raw_models.items()}
    for name, model in models.items():
        if model is not None:
            yield from model_problems(name, model)
    raw_streams = raw.get("streams")
    raw_streams = raw_streams if isinstance(raw_streams, list) else []
    consumer = _try(ConsumerConfig, raw.get("consumer", {}))
    for i, s in enumerate(raw_streams):
        stream = _try(StreamConfig, s)
        if stream is not None:
            yield from topic_problems(i, stream, consumer.group_id if consumer else None)
            yield from stream_problems(i, stream, models)
            yield from plugin_problems(i, stream)
    yield from reference_problems(
        raw_streams, list(models) if isinstance(raw_models, dict) else None
    )


def parse_config(
    raw: Any, source: str = "<config>", base_dir: Path | None = None
) -> PipelineConfig:
    """Validate an already-loaded mapping; ``source`` names it in error messages."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source} | top level must be a mapping (got {type(raw).__name__}). "
            "Note: expected keys kafka, consumer, producer, models, streams, metrics, runtime"
        )
    raw = _resolve_paths(raw, base_dir or Path.cwd())
    problems: list[Problem] = []
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = pydantic_problems(exc, PipelineConfig)
    problems += _semantic_problems(raw)
    if problems:
        raise ConfigError(format_problems(source, sorted(problems, key=lambda p: p.key)))
    return cfg


def config_file(ref: str | Path) -> Path:
    """``ref`` when it is a path; a bare name (``fraud``) is the shipped config of that name."""
    path = Path(ref)
    if path.exists() or path.suffix or len(path.parts) != 1:
        return path
    shipped = shipped_config(str(ref))
    if shipped.is_file():
        return shipped
    names = ", ".join(shipped_config_names())
    raise ConfigError(
        f"{ref} | no such config file, nor a shipped config of that name. "
        f"Note: expected a YAML file's path or one of: {names}"
    )


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML config file (or a shipped one by name, see ``config_file``);
    ConfigError lists every problem."""
    path, raw = read_config(path)
    return parse_config(raw, str(path), path.resolve().parent)


def read_config(ref: str | Path) -> tuple[Path, Any]:
    """The config file ``ref`` names (see ``config_file``) and its YAML, not yet validated."""
    path = config_file(ref)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path} | cannot read the config file: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} | not valid YAML: {exc}") from None
    return path, raw
