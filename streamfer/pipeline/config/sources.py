"""A pipeline config with the environment's overrides and the ``--bootstrap`` flag applied,
and where each of its values came from.

``STREAMFER__<SECTION>__<KEY>=value`` sets ``<key>`` of a top-level section (``kafka``,
``consumer``, ``producer``, ``metrics``, ``runtime``) over the file's value; the value
is read as a YAML scalar (``5``, ``true``, ``null``, ``lz4``). An unknown section or
key fails, naming the variable. The bootstrap servers follow the one precedence of
``streamfer.streams.bootstrap``.

Every value's source is ``file``, ``env (NAME)``, ``flag (--bootstrap)`` or ``default``.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from streamfer.errors import ConfigError
from streamfer.pipeline.config.load import parse_config, read_config
from streamfer.pipeline.config.pipeline import PipelineConfig
from streamfer.streams.bootstrap import resolve_bootstrap

ENV_PREFIX = "STREAMFER__"
MASK = "***"
SECRET_WORDS = ("password", "secret", "token")

Path_ = tuple[str | int, ...]


def sections() -> dict[str, type[BaseModel]]:
    """The top-level mapping sections an environment variable may set keys of."""
    out: dict[str, type[BaseModel]] = {}
    for name, field in PipelineConfig.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out[name] = ann
    return out


@dataclass(frozen=True)
class EnvOverride:
    env: str
    section: str
    key: str
    value: Any


def _scalar_types(annotation: Any) -> set[type]:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_scalar_types(a) for a in args))
    if origin is typing.Literal:
        return {type(a) for a in args}
    return {annotation} if isinstance(annotation, type) else set()


def _parse_value(text: str, annotation: Any) -> Any:
    """``text`` read as a YAML scalar; a number for a field that takes no number stays text
    (``10:30`` is a host, not YAML 1.1's base-60 630)."""
    try:
        value = yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list)):
        return text
    numeric = {int, float, bool}
    if type(value) in numeric and not (_scalar_types(annotation) & numeric):
        return text
    return value


def env_overrides(environ: Mapping[str, str] | None = None) -> list[EnvOverride]:
    """Every ``STREAMFER__<SECTION>__<KEY>`` of the environment, checked against the config's
    sections and keys."""
    env = os.environ if environ is None else environ
    known = sections()
    out = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("__")
        model = known.get(section)
        if model is None or not sep:
            raise ConfigError(
                f"{name} | not a config override: no section {section!r}. "
                f"Note: expected {ENV_PREFIX}<SECTION>__<KEY> with a section of: "
                f"{', '.join(known)}"
            )
        field = model.model_fields.get(key)
        if field is None:
            raise ConfigError(
                f"{name} | section {section} has no key {key!r}. "
                f"Note: allowed: {', '.join(model.model_fields)}"
            )
        out.append(EnvOverride(name, section, key, _parse_value(env[name], field.annotation)))
    return out


@dataclass(frozen=True)
class Resolved:
    """A validated config and the source of each of its values (keyed by path)."""

    path: Path
    config: PipelineConfig
    sources: dict[Path_, str]

    def source(self, *path: str | int) -> str:
        return self.sources.get(path, "default")


def load_resolved(
    ref: str | Path,
    *,
    bootstrap: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Resolved:
    """Read config file ``ref``, apply the environment's overrides and the bootstrap
    precedence, validate; ConfigError lists every problem."""
    env = os.environ if environ is None else environ
    path, raw = read_config(ref)
    overrides = env_overrides(env)
    sources: dict[Path_, str] = {}
    label = str(path)
    if isinstance(raw, dict):
        file_raw = raw
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
        for o in overrides:
            section = raw.get(o.section)
            if section is None:
                section = raw[o.section] = {}
            if isinstance(section, dict):
                section[o.key] = o.value
                sources[(o.section, o.key)] = f"env ({o.env})"
        file_kafka = file_raw.get("kafka")
        file_servers = file_kafka.get("bootstrap_servers") if isinstance(file_kafka, dict) else None
        servers = resolve_bootstrap(
            bootstrap, file_servers if isinstance(file_servers, str) else None, env
        )
        raw.setdefault("kafka", {})
        if isinstance(raw["kafka"], dict):  # else parse_config reports it
            raw["kafka"]["bootstrap_servers"] = servers.servers
        sources[("kafka", "bootstrap_servers")] = servers.source
        if overrides:
            label = f"{path} (with {', '.join(o.env for o in overrides)})"
        sources.update({p: "file" for p in _leaves(file_raw) if p not in sources})
    cfg = parse_config(raw, label, path.resolve().parent)
    sources.update(_latency_sources(cfg, sources))
    sources.update(_state_sources(cfg, sources))
    return Resolved(path, cfg, sources)


# a stream's latency key -> the pipeline-wide key that sets it for every stream
_WIDE = {"linger_ms": ("producer", "linger_ms"),
         "fetch_max_wait_ms": ("consumer", "fetch_max_wait_ms"),
         "commit_interval_ms": ("runtime", "commit_interval_ms")}  # fmt: skip


def _latency_sources(cfg: PipelineConfig, sources: Mapping[Path_, str]) -> dict[Path_, str]:
    """Where each stream's latency values came from when the file did not set them: the
    pipeline-wide key, else the stream's profile (``streamfer.pipeline.latency``)."""
    out: dict[Path_, str] = {}
    for i, s in enumerate(cfg.streams):
        profile = s.latency_profile
        if ("streams", i, "latency", "profile") not in sources:
            out[("streams", i, "latency", "profile")] = f"default ({s.kind} stream)"
        for key in ("linger_ms", "fetch_max_wait_ms", "fetch_min_bytes", "commit_interval_ms"):
            if ("streams", i, "latency", key) in sources:
                continue
            wide = _WIDE.get(key)
            if wide is not None and wide in sources:
                out[("streams", i, "latency", key)] = f"{'.'.join(wide)} ({sources[wide]})"
            else:
                out[("streams", i, "latency", key)] = f"profile ({profile})"
        if ("streams", i, "batching", "max_wait_ms") not in sources:
            out[("streams", i, "batching", "max_wait_ms")] = f"profile ({profile})"
    return out


def _state_sources(cfg: PipelineConfig, sources: Mapping[Path_, str]) -> dict[Path_, str]:
    """An unset ``state.flush_interval_ms`` says what it means for its stream's delivery."""
    out: dict[Path_, str] = {}
    for i, s in enumerate(cfg.streams):
        path: Path_ = ("streams", i, "state", "flush_interval_ms")
        if path not in sources:
            ms = s.state_flush_interval_s * 1000
            out[path] = f"default ({f'{ms:.0f} ms' if ms else 'at every commit'}, {s.delivery})"
    return out


def _leaves(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """The paths of a raw mapping's values, mappings and lists included."""
    out: list[Path_] = []
    items: Any = ()
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    for key, value in items:
        path = (*prefix, key)
        out.append(path)
        out.extend(_leaves(value, path))
    return out


def is_secret(key: str | int) -> bool:
    """A key whose value is masked: its name holds password, secret or token (a ``*_file``
    key names the file a secret is read from, which is not the secret)."""
    name = str(key).lower()
    return any(w in name for w in SECRET_WORDS) and not name.endswith("_file")


def masked(node: Any) -> Any:
    """``node`` with the value of every secret key (at any depth) replaced by ``***``."""
    if isinstance(node, dict):
        return {k: (MASK if is_secret(k) and v is not None else masked(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [masked(v) for v in node]
    return node
