"""TensorRT runner: pinned host buffers, device buffers, one context and stream per thread.

CUDA work runs in the device's *primary* context, pushed around every call in
whichever worker thread makes it (``streamfer.engines.gpu.device.PrimaryContext``).
Each thread gets its own ``IExecutionContext``, CUDA stream and buffers sized
for ``max_batch``, so threads never share mutable state; copies and
``execute_async_v3`` are asynchronous on that stream, with one
synchronisation per batch.

Two ways in:

* ``infer(feeds)``: host arrays, copied up through the thread's pinned buffers;
* ``infer_device(inputs, outputs=...)``: inputs already in device memory
  (``DeviceTensor``, e.g. ``GpuFrameBatch.tensor`` from the GPU frame path).
  The engine reads them in place (``set_tensor_address``), after waiting on
  the stream for their ``ready`` event; only the outputs named in
  ``outputs`` are copied back.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from streamfer.engines.base import DEFAULT_MAX_BATCH, EngineInfo, Precision, TensorSpec
from streamfer.engines.gpu.device import DeviceTensor, PrimaryContext
from streamfer.engines.host import import_tensorrt
from streamfer.engines.onnx_model import OnnxFileRunner
from streamfer.engines.tensorrt.builder import BuildProgress, BuildSettings, EngineFromOnnx
from streamfer.engines.tensorrt.cache import BatchProfile
from streamfer.errors import EngineError

log = logging.getLogger(__name__)


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
            shape = self.output_shape(spec, f"tensorrt at max batch {max_batch}")
            self._allocate(cuda, spec, math.prod(shape))

    def output_shape(self, spec: TensorSpec, subject: str) -> tuple[int, ...]:
        """``spec``'s shape for the input shapes now set; EngineError while they leave it open."""
        shape = tuple(self.context.get_tensor_shape(spec.name))
        if any(d < 0 for d in shape):
            raise EngineError(
                f"{subject} output '{spec.name}' | unresolved shape {shape}. "
                "Note: expected output shapes fixed by the input shapes"
            )
        return shape

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
        max_batch: int = DEFAULT_MAX_BATCH,
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
        self._context = PrimaryContext(device)
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
        with self._context.current():
            yield

    # -- activation -------------------------------------------------------------
    def _activate_impl(self) -> None:
        trt = import_tensorrt()
        self._cuda = self._context.retain()
        try:
            with self._current():
                self._engine = self._deserialize(trt)
            self._trt = trt
        except BaseException:
            self._context.release()
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
        if not self._context.retained:
            return
        with self._current():
            for worker in workers:
                worker.free()
            self._engine = None
            self._runtime = None
        self._context.release()
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
                # infer_device may have pointed the input elsewhere: back to our buffer
                w.context.set_tensor_address(spec.name, int(w.device[spec.name]))
                w.context.set_input_shape(spec.name, arr.shape)
            return self._execute(w, batch, self.output_specs)

    def _execute(
        self, w: _Worker, batch: int, outputs: Sequence[TensorSpec]
    ) -> dict[str, np.ndarray]:
        """Enqueue the engine and copy ``outputs`` back (context pushed, inputs bound)."""
        if not w.context.execute_async_v3(w.stream.handle):
            raise EngineError(
                f"{self.name} | execute_async_v3 failed at batch {batch}. "
                "Note: see TensorRT's log; expected a successful enqueue"
            )
        views: dict[str, np.ndarray] = {}
        for spec in outputs:
            shape = w.output_shape(spec, self.name)
            view = w.host[spec.name][: math.prod(shape)].reshape(shape)
            self._cuda.memcpy_dtoh_async(view, w.device[spec.name], w.stream)
            views[spec.name] = view
        w.stream.synchronize()
        # The pinned buffers are reused by the next call: hand out copies.
        return {name: view.copy() for name, view in views.items()}

    # -- device inputs ------------------------------------------------------------
    def infer_device(
        self, inputs: Mapping[str, DeviceTensor], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run one batch whose inputs are already in device memory; return ``outputs``.

        Each input must match its spec exactly (dtype, non-batch dims, one batch
        size for all, 1 <= batch <= max_batch); the engine reads it in place once
        its ``ready`` event has fired. ``outputs`` names the outputs to copy back
        (default: all): the others stay on the device.
        """
        if not self.is_active:
            raise EngineError(
                f"{self.name} | infer_device() called on an inactive runner. "
                "Note: expected activate() or a `with runner:` block first"
            )
        batch = self._check_device_inputs(inputs)
        wanted = self._output_subset(outputs)
        with self._current():
            w = self._worker()
            for spec in self.input_specs:
                tensor = inputs[spec.name]
                if tensor.ready is not None:
                    w.stream.wait_for_event(tensor.ready)
                w.context.set_tensor_address(spec.name, tensor.ptr)
                w.context.set_input_shape(spec.name, tensor.shape)
            return self._execute(w, batch, wanted)

    def _check_device_inputs(self, inputs: Mapping[str, DeviceTensor]) -> int:
        specs = {s.name: s for s in self.input_specs}
        if inputs.keys() != specs.keys():
            raise EngineError(
                f"{self.name} device inputs | got {sorted(inputs)}. "
                f"Note: expected exactly {sorted(specs)}"
            )
        batches = set()
        for name, spec in specs.items():
            tensor = inputs[name]
            tail_ok = len(tensor.shape) == len(spec.shape) and all(
                want is None or want == got
                for want, got in zip(spec.shape[1:], tensor.shape[1:], strict=False)
            )
            batch = tensor.shape[0] if tensor.shape else 0
            if tensor.dtype != spec.dtype or not tail_ok or not 1 <= batch <= self.max_batch:
                raise EngineError(
                    f"{self.name} device input '{name}' | got {tensor.dtype.name} "
                    f"{list(tensor.shape)}. Note: expected {spec.describe(self.max_batch)}"
                )
            batches.add(batch)
        if len(batches) != 1:
            raise EngineError(
                f"{self.name} device inputs | batch sizes {sorted(batches)} differ. "
                "Note: expected one batch size for every input"
            )
        return batches.pop()

    def _output_subset(self, outputs: Sequence[str] | None) -> tuple[TensorSpec, ...]:
        if outputs is None:
            return self.output_specs
        known = {s.name: s for s in self.output_specs}
        unknown = [name for name in outputs if name not in known]
        if unknown:
            raise EngineError(
                f"{self.name} outputs | unknown {unknown}. "
                f"Note: expected names from {sorted(known)}"
            )
        return tuple(known[name] for name in dict.fromkeys(outputs))
