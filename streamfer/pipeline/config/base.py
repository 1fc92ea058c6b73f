"""What every config section is: a frozen pydantic model that refuses unknown keys."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """A config section: immutable once parsed, an unknown key is a problem. A field's
    description is the docstring under it (``streamfer config docs`` prints it)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def client_default(options: Any, name: str) -> Any:
    """A client option's default, written once in ``streamfer.streams.client``."""
    return next(f.default for f in fields(options) if f.name == name)
