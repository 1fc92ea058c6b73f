"""Processor plug-ins: found by name, configured by their own rules, built with a context.

A stream names its plug-in as ``package.module:Name`` (importable: installed, or
on ``PYTHONPATH``) or by the name a package registers in the
``streamfer.processors`` entry-point group::

    [project.entry-points."streamfer.processors"]
    telemetry-anomaly = "telemetry_anomaly:TelemetryAnomaly"

``Name`` is a class (or any callable) taking a
:class:`~pipeline.processors.context.ProcessorContext`. Its ``processor_config``
is checked by the plug-in's own rules, when it declares them, both by
``streamfer validate`` and at start:

* ``config_model``: a pydantic model; ``processor_config`` is parsed through it
  (each problem reported under its key, like every other config key) and the
  context's ``config`` is the parsed, typed object;
* ``validate_config(config) -> Iterable[ConfigProblem | str]``: further checks
  on the parsed config (or the raw mapping when there is no ``config_model``);
  a ``ConfigProblem`` names its key relative to ``processor_config``.

Finding, loading and checking a plug-in live in :mod:`streamfer.pipeline.config.plugins`
(config validation runs them, and the config sits below the processors); they are
exported here too. This module adds ``build``: a plug-in made with its context.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from streamfer.errors import ConfigError, StreamferError
from streamfer.pipeline.config.plugins import (
    ENTRY_POINT_GROUP,
    ConfigProblem,
    PluginError,
    Role,
    config_problems,
    installed,
    load,
    parsed_config,
    within,
)
from streamfer.pipeline.config.problems import format_problems
from streamfer.pipeline.processors.context import ProcessorContext

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConfigProblem",
    "PluginError",
    "Role",
    "build",
    "config_problems",
    "installed",
    "load",
    "within",
]

_NEEDS: dict[Role, tuple[str, ...]] = {
    "processor": ("prepare", "results"),
    "postprocessor": ("results",),
}


def build(ref: str, context: ProcessorContext, role: Role = "processor") -> Any:
    """The plug-in ``ref`` built with ``context`` (its ``config`` parsed by the plug-in)."""
    plugin = load(ref, role)
    config, problems = parsed_config(plugin, context.config)
    if problems:
        where = f"stream {context.stream}"
        prefixed = [within("processor_config", p) for p in problems]
        raise ConfigError(format_problems(where, prefixed))
    try:
        built = plugin(dataclasses.replace(context, config=config))
    except StreamferError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{role} {ref!r} | building it for stream {context.stream} failed "
            f"({type(exc).__name__}: {exc}). Note: expected Name(context) to succeed"
        ) from exc
    missing = [m for m in _NEEDS[role] if not callable(getattr(built, m, None))]
    if missing:
        raise ConfigError(
            f"{role} {ref!r} | built a {type(built).__name__} without {', '.join(missing)}. "
            f"Note: a {role} has {' and '.join(f'{m}()' for m in _NEEDS[role])}"
        )
    return built
