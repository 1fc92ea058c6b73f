"""Lazy ONNX Runtime session loaders (Polygraphy naming: ``SessionFromOnnx``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnxruntime as ort

from streamfer.engines.host import gpu_count
from streamfer.engines.onnx_model import check_model_path
from streamfer.errors import EngineError

log = logging.getLogger(__name__)

GraphOptimization = Literal["disabled", "basic", "extended", "all"]
_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class SessionSettings:
    """How a session is created. ``None`` means ONNX Runtime's own default."""

    intra_op_threads: int | None = None
    providers: tuple[str, ...] | None = None  # None: CUDA when usable, else CPU
    graph_optimization: GraphOptimization = "all"
    optimized_model_path: Path | None = None  # where ORT writes the optimised graph

    def __post_init__(self) -> None:
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise EngineError(
                f"intra_op_threads | {self.intra_op_threads} is invalid. "
                "Note: expected None (ONNX Runtime default) or >= 1"
            )
        if self.graph_optimization not in _LEVELS:
            raise EngineError(
                f"graph_optimization | {self.graph_optimization!r} is unknown. "
                f"Note: expected one of {sorted(_LEVELS)}"
            )


def resolve_providers(requested: tuple[str, ...] | None) -> list[str]:
    """The providers to ask for: explicit ones (checked) or CUDA+CPU when usable.

    CUDA is only asked for when this onnxruntime build has it (onnxruntime-gpu)
    and a GPU is present; ``get_available_providers()`` alone lists compiled-in
    providers even on hosts without a GPU.
    """
    available = ort.get_available_providers()
    if requested is not None:
        unknown = [p for p in requested if p not in available]
        if unknown:
            raise EngineError(
                f"onnxruntime providers | {unknown} not available in onnxruntime "
                f"{ort.__version__}. Note: expected a subset of {available}"
            )
        return list(requested)
    if CUDA in available and gpu_count() > 0:
        return [CUDA, CPU]
    return [CPU]


def session_options(settings: SessionSettings) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = _LEVELS[settings.graph_optimization]
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    # Idle intra-op workers would spin after every run, burning the cores the Kafka
    # client and the rest of the pipeline need between batches: they sleep instead.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if settings.intra_op_threads is not None:
        opts.intra_op_num_threads = settings.intra_op_threads
    if settings.optimized_model_path is not None:
        opts.optimized_model_filepath = str(settings.optimized_model_path)
    return opts


class SessionFromOnnx:
    """Callable that creates an ``InferenceSession`` from an ONNX file when called."""

    def __init__(self, path: Path | str, settings: SessionSettings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or SessionSettings()

    def __call__(self) -> ort.InferenceSession:
        path = check_model_path(self.path)
        providers = resolve_providers(self.settings.providers)
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(self.settings), providers=providers
            )
        except Exception as exc:  # ORT raises pybind11 types (Fail, InvalidGraph, ...)
            raise EngineError(
                f"{path} | onnxruntime could not load the model ({type(exc).__name__}: {exc}). "
                "Note: expected a valid ONNX model for this onnxruntime version "
                f"({ort.__version__})"
            ) from exc
        used = session.get_providers()
        if used != providers:
            log.warning("%s: asked onnxruntime for %s, it uses %s", path, providers, used)
        return session
