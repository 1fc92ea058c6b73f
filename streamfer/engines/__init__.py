"""Inference engines behind one runner interface (TensorRT on GPUs, ONNX Runtime on CPU).

``create_runner(path, target=...)`` picks and creates a lazy runner; use it as a
context manager and call ``infer(feeds)``.

The names below are loaded on first use: importing a module of this package (the
configuration reads ``streamfer.engines.versions``) does not load ONNX or a runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamfer.engines.base import EngineInfo, Runner, TensorSpec
    from streamfer.engines.select import create_runner

__all__ = ["EngineInfo", "Runner", "TensorSpec", "create_runner"]
_HOME = {"EngineInfo": "base", "Runner": "base", "TensorSpec": "base", "create_runner": "select"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
