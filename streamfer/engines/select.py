"""Pick and create a runner: TensorRT on a GPU host, ONNX Runtime elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from streamfer.engines.base import (
    DEFAULT_MAX_BATCH,
    EngineKind,
    Precision,
    Runner,
    Target,
    check_precision,
)
from streamfer.engines.host import tensorrt_usable
from streamfer.engines.onnx_model import check_model_path
from streamfer.errors import EngineError

TARGETS: tuple[str, ...] = get_args(Target)


def resolve_target(target: str) -> EngineKind:
    """``auto`` -> ``tensorrt`` when TensorRT and pycuda import and a GPU is present."""
    if target not in TARGETS:
        raise EngineError(f"target | {target!r} is unknown. Note: expected one of {TARGETS}")
    if target == "auto":
        return "tensorrt" if tensorrt_usable() else "onnxruntime"
    return "tensorrt" if target == "tensorrt" else "onnxruntime"


def refuse_low_precision_on_onnxruntime(path: Path, precision: str, target: str) -> None:
    """ONNX Runtime runs the graph as exported: fp16/int8 are never silently run as fp32."""
    if precision != "fp32":
        why = "TensorRT is not usable on this host" if target == "auto" else "target onnxruntime"
        raise EngineError(
            f"{path} | precision {precision} requested but {why}. Note: expected "
            "precision fp32 for ONNX Runtime, or TensorRT (extra `gpu`) and a GPU for fp16/int8"
        )


def create_runner(
    onnx_path: Path | str,
    *,
    target: Target = "auto",
    precision: Precision = "fp32",
    max_batch: int = DEFAULT_MAX_BATCH,
    intra_op_threads: int | None = None,
    cache_dir: Path | None = None,
) -> Runner:
    """A runner for ``onnx_path``; nothing is loaded or built until ``activate()``.

    Only the file's existence is checked here, so a typo fails at start-up.
    ONNX Runtime runs the graph as exported (fp32); fp16 and int8 are TensorRT
    precisions and are refused rather than silently run as fp32.
    """
    path = check_model_path(onnx_path)
    check_precision(precision)
    kind = resolve_target(target)
    if kind == "tensorrt":
        from streamfer.engines.tensorrt.runner import TensorRTRunner

        return TensorRTRunner(path, max_batch=max_batch, precision=precision, cache_dir=cache_dir)
    refuse_low_precision_on_onnxruntime(path, precision, target)
    from streamfer.engines.onnxruntime.loader import SessionSettings
    from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner

    return OnnxRuntimeRunner(
        path, max_batch=max_batch, settings=SessionSettings(intra_op_threads=intra_op_threads)
    )
