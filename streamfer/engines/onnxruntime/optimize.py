"""``engines build --target onnxruntime``: write ONNX Runtime's optimised graph and check it.

ONNX Runtime optimises a graph every time it creates a session, so this file
is not needed to serve a model: the runner loads the original ONNX. The build
proves, ahead of deployment, that the model loads, optimises and runs at batch
1 and at ``max_batch`` on this onnxruntime, and that the optimised graph gives
the same outputs as the unoptimised one. It is saved at the ``extended`` level,
which ONNX Runtime documents as portable; ``all`` adds layout changes specific
to the CPU it ran on, which the runner applies at load time anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamfer.engines.base import DEFAULT_MAX_BATCH, random_feeds
from streamfer.engines.host import resolve_cache_dir
from streamfer.engines.onnx_model import OnnxModelInfo, load_onnx, read_onnx_info
from streamfer.engines.onnxruntime.loader import GraphOptimization, SessionFromOnnx, SessionSettings
from streamfer.errors import EngineError

SAVE_LEVEL: GraphOptimization = "extended"
RTOL, ATOL = 1e-3, 1e-4


@dataclass(frozen=True)
class OptimizedModel:
    """What the build produced and how it was checked."""

    source: Path
    path: Path
    level: str
    nodes_before: int
    nodes_after: int
    providers: tuple[str, ...]
    checked_batches: tuple[int, ...]
    max_abs_diff: float
    seconds: float


def optimized_model_path(info: OnnxModelInfo, cache_dir: Path | None) -> Path:
    """``<cache>/onnxruntime/<stem>-<sha256[:16]>-ort<version>.onnx``."""
    root = resolve_cache_dir(cache_dir) / "onnxruntime"
    return root / f"{info.path.stem}-{info.sha256[:16]}-ort{ort.__version__}.onnx"


def _run(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(o) for o in session.run(None, feeds)]


def optimize_onnx(
    onnx_path: Path | str,
    *,
    cache_dir: Path | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    intra_op_threads: int | None = None,
    note: Callable[[str], None] = lambda _text: None,
) -> OptimizedModel:
    """Save the optimised graph in the cache and verify it against the original."""
    if max_batch < 1:
        raise EngineError(f"max_batch | {max_batch} is invalid. Note: expected >= 1")
    started = time.perf_counter()
    info = read_onnx_info(onnx_path)
    out = optimized_model_path(info, cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)

    note(f"optimising {info.path} (level {SAVE_LEVEL}) -> {out}")
    settings = SessionSettings(intra_op_threads=intra_op_threads)
    writer = SessionSettings(
        intra_op_threads=intra_op_threads, graph_optimization=SAVE_LEVEL, optimized_model_path=out
    )
    SessionFromOnnx(info.path, writer)()
    if not out.exists():
        raise EngineError(
            f"{info.path} | onnxruntime wrote no optimised model. Note: expected {out}"
        )

    note("checking the optimised graph against the original")
    plain = SessionSettings(intra_op_threads=intra_op_threads, graph_optimization="disabled")
    reference = SessionFromOnnx(info.path, plain)()
    candidate = SessionFromOnnx(out, plain)()
    batches = tuple(sorted({1, max_batch}))
    worst = 0.0
    for batch in batches:
        feeds = random_feeds(info.inputs, batch, seed=batch)
        for spec, want, got in zip(
            info.outputs, _run(reference, feeds), _run(candidate, feeds), strict=True
        ):
            if want.shape != got.shape or not np.allclose(got, want, rtol=RTOL, atol=ATOL):
                raise EngineError(
                    f"{out} output '{spec.name}' | differs from the original at batch {batch} "
                    f"(shapes {got.shape} vs {want.shape}). Note: expected equal outputs "
                    f"within rtol={RTOL}, atol={ATOL}"
                )
            if want.size:
                worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want))))

    note("loading it the way the runner does (all optimisations)")
    providers = tuple(SessionFromOnnx(info.path, settings)().get_providers())
    return OptimizedModel(
        source=info.path,
        path=out,
        level=SAVE_LEVEL,
        nodes_before=info.node_count,
        nodes_after=len(load_onnx(out).graph.node),
        providers=providers,
        checked_batches=batches,
        max_abs_diff=worst,
        seconds=time.perf_counter() - started,
    )
