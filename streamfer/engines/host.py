"""What this host offers engines: GPUs, TensorRT and the other GPU libraries, and where
caches live.

Every probe is lazy (GPU libraries are optional extras) and answers once per
process: the answer does not change while a pipeline runs. An optional library
is imported on first use (``import_optional``), or refused with an EngineError
that says how to install it.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import tempfile
from pathlib import Path
from types import ModuleType

from streamfer.errors import EngineError
from streamfer.paths import user_cache_dir

log = logging.getLogger(__name__)

CACHE_ENV = "STREAMFER_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$STREAMFER_CACHE_DIR``, else ``$XDG_CACHE_HOME/streamfer/engines`` (``~/.cache``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    return user_cache_dir() / "engines"


def resolve_cache_dir(cache_dir: Path | str | None) -> Path:
    """``cache_dir`` when given, else ``default_cache_dir()``."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def atomic_write(path: Path, data: bytes) -> None:
    """Write a cache file whole or not at all (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.cache
def gpu_count() -> int:
    """Number of CUDA devices the driver reports; 0 without a driver or GPU libraries."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        return int(cuda.Device.count())
    except ImportError:
        pass
    except Exception as exc:  # no driver / no device: pycuda raises its own types
        log.debug("pycuda sees no GPU: %s", exc)
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # ImportError or NVMLError: either way, no usable GPU
        log.debug("NVML sees no GPU: %s", exc)
        return 0


@functools.cache
def compute_capability(device: int = 0) -> str:
    """``"major.minor"`` of a CUDA device, e.g. ``"9.0"`` for an H100."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        major, minor = cuda.Device(device).compute_capability()
        return f"{major}.{minor}"
    except ImportError:
        pass
    except Exception as exc:
        raise EngineError(
            f"cuda device {device} | compute capability unavailable ({exc}). "
            "Note: expected a working NVIDIA driver and GPU"
        ) from exc
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            return f"{major}.{minor}"
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:
        raise EngineError(
            f"cuda device {device} | compute capability unavailable ({exc}). "
            "Note: expected pycuda or nvidia-ml-py (extra `gpu`) and a GPU"
        ) from exc


def import_optional(module: str, subject: str, how: str) -> ModuleType:
    """``import module`` (an optional GPU library), or an EngineError naming ``subject``
    and saying ``how`` to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineError(f"{subject} | not importable ({exc}). Note: expected {how}") from exc


def import_tensorrt() -> ModuleType:
    """``import tensorrt`` or an EngineError saying how to get it."""
    return import_optional(
        "tensorrt",
        "tensorrt",
        "the `gpu` extra (pip install 'streamfer[gpu]' with NVIDIA's package index) on a GPU host",
    )


def tensorrt_usable() -> bool:
    """True when TensorRT and pycuda import and a GPU is present."""
    try:
        import_tensorrt()
        importlib.import_module("pycuda.driver")
    except (EngineError, ImportError):
        return False
    return gpu_count() > 0
