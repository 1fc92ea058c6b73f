"""The ``models`` section: a model's file or versions, its engine and the batch it is built for."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from streamfer.engines.base import DEFAULT_MAX_BATCH, Precision, Target
from streamfer.pipeline.config.base import Frozen

MAX_BATCH = 4096  # the largest batch a model or a stream may be configured for


class ModelConfig(Frozen):
    """``path``: one ONNX file, or a directory of versions (``<dir>/<version>/model.onnx``,
    an optional card ``model.md`` or ``card.json``; see ``streamfer.engines.versions``).
    The model section is re-read on SIGHUP (``streamfer.pipeline.reload``).
    """

    path: Path
    """The ONNX file, or a directory of versions (<dir>/<version>/model.onnx); relative to the
    config file."""
    version: str = Field(default="latest", min_length=1)
    """Which version of a directory serves: latest (numbers and semver-like names in numeric order,
    above other names in lexical order) or a pinned name."""
    poll_s: float | None = Field(default=None, gt=0)
    """How often a running worker looks for a new version and swaps it in; unset: only on SIGHUP."""
    target: Target = "auto"
    """Engine: TensorRT on an NVIDIA GPU, ONNX Runtime on the CPU, or auto (TensorRT when it and a
    GPU are there)."""
    precision: Precision = "fp32"
    """TensorRT build precision (ONNX Runtime runs the file as it is)."""
    max_batch: int = Field(default=DEFAULT_MAX_BATCH, ge=1, le=MAX_BATCH)
    """Largest batch the engine is built for; a stream's batching.max_batch may not exceed it."""
    intra_op_threads: int | None = Field(default=None, ge=1)
    """ONNX Runtime threads per inference; unset: the runtime's choice."""
