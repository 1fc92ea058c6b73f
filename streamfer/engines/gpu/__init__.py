"""GPU frame path (extra `gpu`): camera frames decoded and letterboxed on the GPU.

Nothing here imports a GPU library at import time, and nothing here reads
records: the caller checks each frame's header (``streamfer.pipeline.processors.
camera_frames`` runs the CPU codec's checks) and hands over plain
:class:`GpuFrame` values. How the camera stream wires it in (one batch at a
time)::

    from streamfer.engines.gpu import GpuFrame, GpuFramePreprocessor, resolve_preprocess_device

    device = resolve_preprocess_device(stream.preprocess.device, runner.info.kind)
    if device == "gpu":
        spec = runner.input_specs[0]                      # e.g. images float32 [N, 3, 256, 256]
        pre = GpuFramePreprocessor(
            input_size=spec.shape[-1], dtype=spec.dtype, max_batch=runner.max_batch
        )
        pre.activate()                                    # at start, beside runner.activate()
        ...
        frames = [GpuFrame(jpeg, "jpeg", width, height) for ...]  # header sizes, checked
        with pre.preprocess(frames) as batch:
            for f in batch.failed:                        # index into frames, what decoded
                dead_letter(f.index, f.got)
            if batch.kept:
                outputs = runner.infer_device({spec.name: batch.tensor}, outputs=["output0"])
                metas = [CameraMeta(lb, w, h, seq, ts) for lb, (w, h) in
                         zip(batch.letterboxes, batch.sizes)]      # rows = batch.kept
        pre.deactivate()                                  # at stop

``batch.kept[r]`` is the index (into ``frames``) of tensor row ``r``; the
letterboxes are ``streamfer.models.preprocess.letterbox_geometry``'s, so
``to_frame_boxes`` / ``streamfer.models.detect.unletterbox`` map boxes back exactly
as on the CPU path. Release a batch (leave its ``with``) only after the
engine has read it: ``infer_device`` returns once its outputs are on the
host. A preprocessor serves one thread at a time and holds ``depth`` batch
buffers (default 2): preprocess the next batch in another thread while one
is inferred, with one preprocessor per preprocessing thread.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

from streamfer.engines.gpu.device import DeviceTensor
from streamfer.engines.gpu.preprocessor import (
    DecodeFailure,
    GpuFrame,
    GpuFrameBatch,
    GpuFramePreprocessor,
)
from streamfer.errors import EngineError

PreprocessDevice = Literal["auto", "gpu", "cpu"]
_GPU_MODULES = ("pycuda.driver", "nvidia.nvimgcodec", "cuda.bindings.nvrtc")

__all__ = [
    "DecodeFailure",
    "DeviceTensor",
    "GpuFrame",
    "GpuFrameBatch",
    "GpuFramePreprocessor",
    "PreprocessDevice",
    "gpu_libraries_missing",
    "resolve_preprocess_device",
]


def gpu_libraries_missing() -> list[str]:
    """The GPU frame path's modules that are not installed (found without importing them)."""
    missing = []
    for name in _GPU_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package is absent
            found = False
        if not found:
            missing.append(name)
    return missing


def resolve_preprocess_device(setting: str, engine_kind: str) -> Literal["gpu", "cpu"]:
    """``preprocess.device`` for a stream whose engine is ``engine_kind``.

    ``auto`` is ``gpu`` when the engine is TensorRT and the GPU libraries are
    installed, else ``cpu``; ``gpu`` is refused where it cannot work (the
    tensor stays on the device, so only TensorRT can read it).
    """
    if setting == "cpu":
        return "cpu"
    missing = gpu_libraries_missing()
    if setting == "auto":
        return "gpu" if engine_kind == "tensorrt" and not missing else "cpu"
    if setting != "gpu":
        raise EngineError(
            f"preprocess.device | {setting!r} is unknown. Note: expected auto, gpu or cpu"
        )
    if engine_kind != "tensorrt":
        raise EngineError(
            f"preprocess.device | gpu with engine {engine_kind}. "
            "Note: expected a TensorRT engine (it reads the batch in device memory)"
        )
    if missing:
        raise EngineError(
            f"preprocess.device | gpu but {', '.join(missing)} not installed. "
            "Note: expected the `gpu` extra (pycuda, nvidia-nvimgcodec-cu13, cuda-bindings)"
        )
    return "gpu"
