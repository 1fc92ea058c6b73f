"""ONNX -> serialized TensorRT 11 engine, through the on-disk engine cache.

Written against the TensorRT 11 Python API: strongly typed networks
(``create_network(0)``), no precision flags (see ``precision.py``), one
optimisation profile for the batch axis, a workspace limit, a persisted timing
cache and ``build_serialized_network`` (which returns None on failure).
``tensorrt`` is passed in as a module so nothing imports it before it is needed.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from streamfer.engines.base import Precision, check_precision
from streamfer.engines.host import (
    atomic_write,
    compute_capability,
    import_tensorrt,
    resolve_cache_dir,
)
from streamfer.engines.onnx_model import OnnxModelInfo, read_onnx_info
from streamfer.engines.tensorrt.cache import BatchProfile, EngineCache, EngineKey
from streamfer.engines.tensorrt.precision import precision_recipe, prepare_onnx
from streamfer.errors import EngineError

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 2 << 30


class BuildProgress(Protocol):
    """Receives TensorRT's build phases (called from TensorRT's threads)."""

    def note(self, text: str) -> None: ...

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None: ...

    def step_complete(self, phase: str, step: int) -> None: ...

    def phase_finish(self, phase: str) -> None: ...


@dataclass(frozen=True)
class BuildSettings:
    precision: Precision = "fp32"
    profile: BatchProfile = field(default_factory=lambda: BatchProfile.for_max(64))
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    calibration: Mapping[str, np.ndarray] | None = None  # int8 only

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.workspace_bytes < 1 << 20:
            raise EngineError(
                f"workspace | {self.workspace_bytes} bytes is too small. Note: expected >= 1 MiB"
            )


@dataclass(frozen=True)
class BuiltEngine:
    """Serialized engine bytes plus where they came from."""

    data: bytes
    key: EngineKey
    path: Path
    from_cache: bool


def _progress_monitor(trt: ModuleType, progress: BuildProgress) -> Any:
    """Adapt ``BuildProgress`` to ``trt.IProgressMonitor`` (kept alive by the caller)."""

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            progress.step_complete(phase_name, step)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            progress.phase_finish(phase_name)

    return _Monitor()


def _parse(trt: ModuleType, logger: Any, builder: Any, onnx_path: Path) -> tuple[Any, Any]:
    network = builder.create_network(0)  # TensorRT 11: always strongly typed
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx_path))
    if not ok or parser.num_errors:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        detail = "; ".join(errors) or "no parser message"
        raise EngineError(
            f"{onnx_path} | TensorRT's ONNX parser failed ({len(errors)} errors): {detail}. "
            "Note: expected a graph TensorRT supports (check opset and operators)"
        )
    return network, parser


def _verify_precision(trt: ModuleType, network: Any, precision: str, onnx_path: Path) -> None:
    """The parsed network really holds FP16 tensors / Q-DQ layers for fp16 / int8."""
    if precision == "fp32":
        return
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    if precision == "fp16":
        found = sum(
            1
            for layer in layers
            for j in range(layer.num_outputs)
            if layer.get_output(j).dtype == trt.DataType.HALF
        )
    else:
        found = sum(1 for layer in layers if layer.type == trt.LayerType.QUANTIZE)
    if found == 0:
        raise EngineError(
            f"{onnx_path} | the parsed network has no {precision} layers. "
            f"Note: expected a {precision} graph; refusing to build FP32 under a {precision} label"
        )


def build_serialized_engine(
    trt: ModuleType,
    onnx_path: Path,
    info: OnnxModelInfo,
    settings: BuildSettings,
    timing_cache_path: Path,
    progress: BuildProgress | None = None,
) -> bytes:
    """Parse ``onnx_path`` (already cast to the precision) and build an engine."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, logger, builder, onnx_path)
    _verify_precision(trt, network, settings.precision, onnx_path)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    profile = builder.create_optimization_profile()
    for spec in info.inputs:
        profile.set_shape(spec.name, *settings.profile.shapes(spec))
    config.add_optimization_profile(profile)

    cached = timing_cache_path.read_bytes() if timing_cache_path.exists() else b""
    timing_cache = config.create_timing_cache(cached)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    monitor = None
    if progress is not None:
        monitor = _progress_monitor(trt, progress)
        config.progress_monitor = monitor

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f"{onnx_path} | TensorRT could not build the engine "
            f"(precision {settings.precision}, profile {settings.profile}). "
            "Note: see TensorRT's log above; expected a buildable network"
        )
    atomic_write(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


class EngineFromOnnx:
    """Lazy loader: the cached engine for an ONNX file, built when absent or stale."""

    def __init__(
        self,
        onnx_path: Path | str,
        settings: BuildSettings | None = None,
        *,
        cache_dir: Path | None = None,
        device: int = 0,
        progress: BuildProgress | None = None,
    ) -> None:
        self.onnx_path = Path(onnx_path)
        self.settings = settings or BuildSettings()
        self.cache = EngineCache(resolve_cache_dir(cache_dir) / "tensorrt")
        self.device = device
        self.progress = progress

    def key(self, trt: ModuleType, info: OnnxModelInfo) -> EngineKey:
        return EngineKey(
            onnx_sha256=info.sha256,
            tensorrt_version=str(trt.__version__),
            compute_capability=compute_capability(self.device),
            precision=self.settings.precision,
            recipe=precision_recipe(self.settings.precision, self.settings.calibration),
            profile=self.settings.profile,
        )

    def __call__(self, *, force: bool = False) -> BuiltEngine:
        trt = import_tensorrt()
        info = read_onnx_info(self.onnx_path)
        key = self.key(trt, info)
        model = info.path.stem
        cached = None if force else self.cache.load(key, model)
        if cached is not None:
            return BuiltEngine(cached, key, self.cache.engine_path(key, model), from_cache=True)
        note = self.progress.note if self.progress else log.info
        note(
            f"building {model} ({key.precision}, batch {key.profile.min}..{key.profile.max}) "
            f"with TensorRT {key.tensorrt_version}"
        )
        with tempfile.TemporaryDirectory(prefix="streamfer-trt-") as work:
            graph = prepare_onnx(
                self.onnx_path, self.settings.precision, Path(work), self.settings.calibration
            )
            data = build_serialized_engine(
                trt,
                graph,
                info,
                self.settings,
                self.cache.timing_cache_path(key.tensorrt_version, key.compute_capability),
                self.progress,
            )
        path = self.cache.store(
            key, model, data, {"onnx_path": str(info.path.resolve()), "metadata": info.metadata}
        )
        return BuiltEngine(data, key, path, from_cache=False)
