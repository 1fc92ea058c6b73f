"""TensorRT runner: pinned host buffers, device buffers, one context and stream per thread.

CUDA work runs in the device's *primary* context, pushed around every call in
whichever worker thread makes it (``pycuda.autoinit`` would bind a private
context to the importing thread and break the others). Each thread gets its
own ``IExecutionContext``, CUDA stream and buffers sized for ``max_batch``, so
threads never share mutable state; copies and ``execute_async_v3`` are
asynchronous on that stream, with one synchronisation per batch.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from engines.base import EngineInfo, Precision, TensorSpec
from engines.host import import_tensorrt
from engines.onnx_model import OnnxFileRunner
from engines.tensorrt.builder import BuildProgress, BuildSettings, EngineFromOnnx
from engines.tensorrt.cache import BatchProfile
from streamfer.errors import EngineError

log = logging.getLogger(__name__)


def _import_cuda() -> Any:
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise EngineError(
            f"pycuda | not importable ({exc}). Note: expected the `gpu` extra "
            "(pip install 'streamfer[gpu]', builds against the CUDA toolkit)"
        ) from exc
    return cuda


class _Worker:
    """One thread's execution context, stream and buffers (sized for max_batch).

    Inputs are sized from their specs (the profile fixes every non-batch axis);
    outputs from the shapes the context reports once every input is at max_batch.
    """

    def __init__(
        self,
        cuda: Any,
        engine: Any,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        max_batch: int,
    ) -> None:
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineError(
                "tensorrt | create_execution_context() failed. Note: expected free GPU memory"
            )
        self.stream = cuda.Stream()
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, Any] = {}
        for spec in inputs:
            shape = (max_batch, *(int(d or 0) for d in spec.shape[1:]))
            self.context.set_input_shape(spec.name, shape)
            self._allocate(cuda, spec, math.prod(shape))
        for spec in outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise EngineError(
                    f"tensorrt output '{spec.name}' | shape {shape} at max batch {max_batch}. "
                    "Note: expected output shapes fixed by the input shapes"
                )
            self._allocate(cuda, spec, math.prod(shape))

    def _allocate(self, cuda: Any, spec: TensorSpec, elements: int) -> None:
        host = cuda.pagelocked_empty(elements, spec.dtype)
        dev = cuda.mem_alloc(max(host.nbytes, 1))
        self.host[spec.name] = host
        self.device[spec.name] = dev
        self.context.set_tensor_address(spec.name, int(dev))

    def free(self) -> None:
        for dev in self.device.values():
            dev.free()
        self.device.clear()
        self.host.clear()
        self.context = None


class TensorRTRunner(OnnxFileRunner):
    """Runs an ONNX model as a TensorRT engine (built or taken from the cache on activate)."""

    def __init__(
        self,
        onnx_path: Path | str,
        *,
        max_batch: int = 64,
        precision: Precision = "fp32",
        opt_batch: int | None = None,
        cache_dir: Path | None = None,
        workspace_bytes: int | None = None,
        calibration: Mapping[str, np.ndarray] | None = None,
        device: int = 0,
        progress: BuildProgress | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(onnx_path, max_batch, name)
        self.precision = precision
        settings = BuildSettings(
            precision=precision,
            profile=BatchProfile.for_max(max_batch, opt=opt_batch),
            calibration=calibration,
            **({"workspace_bytes": workspace_bytes} if workspace_bytes else {}),
        )
        self._load = EngineFromOnnx(
            self.onnx_path, settings, cache_dir=cache_dir, device=device, progress=progress
        )
        self._device = device
        self._trt: ModuleType | None = None
        self._cuda: Any = None
        self._ctx: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        self._local = threading.local()
        self._workers: list[_Worker] = []
        self._workers_lock = threading.Lock()
        self.engine_path: Path | None = None

    @property
    def info(self) -> EngineInfo:
        providers = (f"TensorRT {self._trt.__version__}",) if self._trt is not None else ()
        return EngineInfo("tensorrt", self.precision, f"cuda:{self._device}", providers)

    @contextmanager
    def _current(self) -> Iterator[None]:
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    # -- activation -------------------------------------------------------------
    def _activate_impl(self) -> None:
        trt = import_tensorrt()
        cuda = _import_cuda()
        try:
            cuda.init()
            self._ctx = cuda.Device(self._device).retain_primary_context()
        except Exception as exc:  # pycuda raises its own error types without a driver/GPU
            raise EngineError(
                f"cuda device {self._device} | unavailable ({type(exc).__name__}: {exc}). "
                "Note: expected an NVIDIA driver and a visible GPU"
            ) from exc
        self._cuda = cuda
        try:
            with self._current():
                self._engine = self._deserialize(trt)
            self._trt = trt
        except BaseException:
            self._ctx.detach()
            self._ctx = None
            raise

    def _deserialize(self, trt: ModuleType) -> Any:
        # The runtime must outlive the engines it deserializes: keep it with the runner.
        self._runtime = runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        built = self._load()
        engine = runtime.deserialize_cuda_engine(built.data)
        if engine is None and built.from_cache:
            log.warning("%s: TensorRT refused cached engine %s; rebuilding", self.name, built.path)
            self._load.cache.invalidate(built.path)
            built = self._load(force=True)
            engine = runtime.deserialize_cuda_engine(built.data)
        if engine is None:
            raise EngineError(
                f"{built.path} | TensorRT could not deserialize the engine. "
                f"Note: expected an engine for TensorRT {trt.__version__} on this GPU"
            )
        self.engine_path = built.path
        self._check_io(trt, engine)
        return engine

    def _check_io(self, trt: ModuleType, engine: Any) -> None:
        want = {s.name: s.dtype for s in (*self.input_specs, *self.output_specs)}
        got = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            got[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        if got != want:
            raise EngineError(
                f"{self.engine_path} | engine I/O {got}. Note: expected the ONNX I/O {want}"
            )

    def _deactivate_impl(self) -> None:
        with self._workers_lock:
            workers, self._workers = self._workers, []
        if self._ctx is None:
            return
        with self._current():
            for worker in workers:
                worker.free()
            self._engine = None
            self._runtime = None
        self._ctx.detach()
        self._ctx = None
        self._local = threading.local()

    # -- hot path -----------------------------------------------------------------
    def _worker(self) -> _Worker:
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None:
            worker = _Worker(
                self._cuda, self._engine, self.input_specs, self.output_specs, self.max_batch
            )
            self._local.worker = worker
            with self._workers_lock:
                self._workers.append(worker)
        return worker

    def _infer_impl(self, feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        cuda = self._cuda
        with self._current():
            w = self._worker()
            for spec in self.input_specs:
                arr = feeds[spec.name]
                host = w.host[spec.name][: arr.size].reshape(arr.shape)
                np.copyto(host, arr)
                cuda.memcpy_htod_async(w.device[spec.name], host, w.stream)
                w.context.set_input_shape(spec.name, arr.shape)
            if not w.context.execute_async_v3(w.stream.handle):
                raise EngineError(
                    f"{self.name} | execute_async_v3 failed at batch {batch}. "
                    "Note: see TensorRT's log; expected a successful enqueue"
                )
            views: dict[str, np.ndarray] = {}
            for spec in self.output_specs:
                shape = tuple(w.context.get_tensor_shape(spec.name))
                if any(d < 0 for d in shape):
                    raise EngineError(
                        f"{self.name} output '{spec.name}' | unresolved shape {shape}. "
                        "Note: expected output shapes fixed by the input shapes"
                    )
                view = w.host[spec.name][: math.prod(shape)].reshape(shape)
                cuda.memcpy_dtoh_async(view, w.device[spec.name], w.stream)
                views[spec.name] = view
            w.stream.synchronize()
        # The pinned buffers are reused by the next call: hand out copies.
        return {name: view.copy() for name, view in views.items()}
