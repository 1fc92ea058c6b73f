"""Plug-in references of a config: found by name, loaded, their ``processor_config`` checked.

A stream names its plug-in as ``package.module:Name`` or by the name a package registers
in the ``streamfer.processors`` entry-point group; ``load`` imports it (the plug-in's
module runs, as it would at start) and ``config_problems`` checks ``processor_config``
by the plug-in's own rules (``config_model``, ``validate_config``). Nothing is built
here: ``streamfer.pipeline.processors.plugins`` builds a plug-in with its context, and
documents the contract for plug-in authors.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from streamfer.errors import ConfigError
from streamfer.pipeline.config.problems import Problem, pydantic_problems

ENTRY_POINT_GROUP = "streamfer.processors"
Role = Literal["processor", "postprocessor"]

ConfigProblem = Problem  # what validate_config yields: key (in processor_config), problem, ...
_MODULE_FORM = "package.module:Name importable here (installed, or on PYTHONPATH)"


def installed() -> dict[str, EntryPoint]:
    """The plug-ins installed packages register, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


class PluginError(ConfigError):
    """A plug-in that cannot be found or loaded: ``problem`` and what is ``allowed``."""

    def __init__(self, role: Role, ref: str, problem: str, allowed: Sequence[str]) -> None:
        super().__init__(f"{role} {ref!r} | {problem}. Note: expected {'; '.join(allowed)}")
        self.problem = problem
        self.allowed = tuple(allowed)


def load(ref: str, role: Role = "processor") -> Any:
    """The class or factory ``ref`` names; PluginError saying why not."""
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        obj = _import(ref, module_name, role)
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise PluginError(
                    role, ref, f"module {module_name!r} has no {attr!r}", [_MODULE_FORM]
                )
            obj = getattr(obj, part)
    else:
        found = installed()
        entry = found.get(ref)
        if entry is None:
            raise PluginError(
                role, ref, "no installed plug-in of that name", [_MODULE_FORM, *sorted(found)]
            )
        try:
            obj = entry.load()
        except Exception as exc:  # the plug-in's own import failed: say how
            raise PluginError(
                role,
                ref,
                f"entry point {entry.value!r} failed to load ({type(exc).__name__}: {exc})",
                ["a completely installed package"],
            ) from exc
    if not callable(obj):
        raise PluginError(
            role, ref, f"names a {type(obj).__name__}", ["a class (or factory) taking a context"]
        )
    return obj


def _import(ref: str, module_name: str, role: Role) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path:  # MODULE:CLASS from the current directory first, as uvicorn does
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the module raised while importing
        problem = f"cannot import {module_name!r} ({type(exc).__name__}: {exc})"
        missing = getattr(exc, "name", None)
        if isinstance(exc, ModuleNotFoundError) and missing and module_name.startswith(missing):
            where = [p or f"{os.getcwd()} (current directory)" for p in sys.path]
            problem += f"; looked in {', '.join(where)}"
        raise PluginError(role, ref, problem, [_MODULE_FORM]) from exc


def config_problems(plugin: Any, raw: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with ``raw`` by the plug-in's own rules (keys within processor_config)."""
    return parsed_config(plugin, raw)[1]


def parsed_config(plugin: Any, raw: Mapping[str, Any]) -> tuple[Any, list[Problem]]:
    """``raw`` parsed by the plug-in's ``config_model`` (``raw`` itself without one) and the
    problems its rules find; the parsed value is None when there are problems."""
    model = getattr(plugin, "config_model", None)
    config: Any = raw
    if model is not None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None, [Problem("", "config_model is not a pydantic model", model)]
        try:
            config = model.model_validate(dict(raw))
        except ValidationError as exc:
            return None, pydantic_problems(exc, model)
    validate = getattr(plugin, "validate_config", None)
    if validate is None:
        return config, []
    try:
        found = list(validate(config))
    except Exception as exc:  # a bug in the plug-in's check: report it as one problem
        return None, [Problem("", f"validate_config raised {type(exc).__name__}: {exc}", None)]
    return config, [p if isinstance(p, Problem) else Problem("", str(p), None) for p in found]


def within(prefix: str, problem: Problem) -> Problem:
    """``problem`` with its key placed under ``prefix`` (e.g. ``streams[0].processor_config``)."""
    key = f"{prefix}.{problem.key}" if problem.key else prefix
    return dataclasses.replace(problem, key=key)
