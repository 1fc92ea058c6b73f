"""Config problems as readable lines: file, key path, bad value, allowed values."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

_SECRET_KEYS = ("password",)
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >="}


@dataclass(frozen=True)
class Problem:
    key: str
    problem: str
    value: Any = None
    allowed: Sequence[str] = field(default_factory=tuple)

    def render(self, source: str) -> str:
        value = "***" if _is_secret(self.key) else _short(self.value)
        line = f"{source}: {self.key} | {self.problem} (got {value})"
        if self.allowed:
            line += f". Note: allowed: {', '.join(str(a) for a in self.allowed)}"
        return line


def _is_secret(key: str) -> bool:
    """A secret's own key; the path of the file holding one (``sasl_password_file``) is shown."""
    return any(s in key for s in _SECRET_KEYS) and not key.endswith("_file")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_problems(source: str, problems: Sequence[Problem]) -> str:
    head = f"{source} | {len(problems)} problem{'s' if len(problems) != 1 else ''} in the config"
    return "\n".join([head, *("  " + p.render(source) for p in problems)])


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Union-with-None to the one model type inside, if any."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else annotation
    return annotation


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that owns the keys at ``loc`` (walks dicts, lists, optionals)."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if origin in (list, dict):
            current = typing.get_args(current)[-1]
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
            continue
        return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _allowed(err: Any, root: type[BaseModel]) -> list[str]:
    ctx = err.get("ctx") or {}
    if err["type"] == "literal_error":
        return [s.strip(" '") for s in ctx.get("expected", "").replace(" or ", ", ").split(",")]
    if err["type"] == "extra_forbidden":
        owner = _model_at(root, tuple(err["loc"][:-1]))
        return sorted(owner.model_fields) if owner else []
    return [f"{_BOUNDS[k]} {v}" for k, v in ctx.items() if k in _BOUNDS]


def pydantic_problems(exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(Problem(_key(loc), "unknown key", loc[-1], _allowed(err, root)))
        elif err["type"] == "missing":
            owner = _model_at(root, loc[:-1])
            problems.append(
                Problem(
                    _key(loc), "required key missing", None, [str(loc[-1])] if owner is None else []
                )
            )
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(_key(loc), msg, err.get("input"), _allowed(err, root)))
    return problems
