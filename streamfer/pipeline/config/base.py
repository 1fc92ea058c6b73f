"""What every config section is (a frozen pydantic model that refuses unknown keys), and how a
section takes a default that a lower layer owns (``option_default``)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """A config section: immutable once parsed, an unknown key is a problem. A field's
    description is the docstring under it (``streamfer config docs`` prints it)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def option_default(options: Any, name: str) -> Any:
    """The default of a dataclass option of a lower layer (a client option of
    ``streamfer.streams.client``, a codec limit), written once there."""
    return next(f.default for f in fields(options) if f.name == name)
