"""Strict test doubles for ``tensorrt`` and ``pycuda.driver``.

They build and run nothing on a GPU. The builder side records what streamfer
hands it (the ONNX file parsed, the configs built with, their optimisation
profiles and timing caches) so tests can assert the build contract; the
runtime side "runs" an engine by evaluating its ONNX file with ONNX Runtime
on bytes read from (fake or real) device memory at the addresses the runner
bound, so the runner's buffer plumbing is checked end to end.

Strict means: every class has ``__slots__`` and no catch-all ``__getattr__``,
so code using an attribute the double lacks fails here as it would on the
real module; and ``test_tensorrt_api.py`` checks every runtime-side
attribute of the double against the real classes of TensorRT's lean runtime
(``tensorrt_lean_bindings``), so the double cannot offer what TensorRT does
not. The builder side has no real counterpart without a GPU host; its
contract is asserted in ``test_tensorrt_builder.py``.
"""

from __future__ import annotations

import itertools
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class _Enum:
    def __init__(self, **members: str) -> None:
        for name, value in members.items():
            setattr(self, name, value)


_NPTYPES: dict[str, type] = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}
_DATATYPE_OF = {np.dtype(t): name for name, t in _NPTYPES.items()}


class Memory(Protocol):
    """Device memory as the fake engine sees it."""

    def read(self, ptr: int, nbytes: int) -> bytes: ...

    def write(self, ptr: int, data: bytes) -> None: ...


# -- builder side ---------------------------------------------------------------------


@dataclass
class FakeTensor:
    dtype: str = "FLOAT"


@dataclass
class FakeLayer:
    type: str = "MATRIX_MULTIPLY"
    outputs: list[FakeTensor] = field(default_factory=lambda: [FakeTensor()])

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_output(self, index: int) -> FakeTensor:
        return self.outputs[index]


@dataclass
class FakeInput:
    """A network input as the parser saw it in the ONNX file (-1: a dynamic axis)."""

    name: str
    shape: tuple[int, ...]


def onnx_inputs(model: str) -> list[FakeInput]:
    """The graph inputs of an ONNX file (initializers excluded), as TensorRT's parser
    makes network inputs of them."""
    import onnx

    graph = onnx.load(model, load_external_data=False).graph
    constants = {t.name for t in graph.initializer}
    out = []
    for value in graph.input:
        if value.name in constants:
            continue
        dims = value.type.tensor_type.shape.dim
        out.append(FakeInput(value.name, tuple(d.dim_value if d.dim_value else -1 for d in dims)))
    return out


class FakeNetwork:
    __slots__ = ("flags", "inputs", "layers", "parsed_from")

    def __init__(self, layers: list[FakeLayer], flags: int) -> None:
        self.layers = layers
        self.flags = flags
        self.parsed_from: str | None = None
        self.inputs: list[FakeInput] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> FakeInput:
        return self.inputs[index]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> FakeLayer:
        return self.layers[index]


class FakeProfile:
    __slots__ = ("shapes",)
    RECORDED = ("shapes",)  # what the tests read; not TensorRT API

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        dims = tuple(tuple(int(d) for d in s) for s in (min, opt, max))
        if not all(len(d) == len(dims[0]) for d in dims):
            raise ValueError(f"profile shapes of different ranks for {input}: {dims}")
        self.shapes[input] = dims


def profile_problems(network: FakeNetwork, profile: FakeProfile) -> list[str]:
    """What TensorRT refuses in an optimization profile: an input of the network without
    shapes, shapes for a name that is no input, a rank that differs from the input's, a
    fixed axis given other sizes, or not min <= opt <= max."""
    names = {i.name for i in network.inputs}
    problems = [f"profile shapes for {n!r}, not an input" for n in profile.shapes if n not in names]
    for spec in network.inputs:
        dims = profile.shapes.get(spec.name)
        if dims is None:
            problems.append(f"optimization profile is missing values for input {spec.name!r}")
            continue
        low, opt, high = dims
        if len(low) != len(spec.shape):
            problems.append(f"{spec.name!r}: profile rank {len(low)}, input {spec.shape}")
            continue
        for axis, size in enumerate(spec.shape):
            if size != -1 and not low[axis] == opt[axis] == high[axis] == size:
                problems.append(f"{spec.name!r}: fixed axis {axis} ({size}) given {dims}")
            if not 1 <= low[axis] <= opt[axis] <= high[axis]:
                problems.append(f"{spec.name!r}: axis {axis} not 1 <= min <= opt <= max: {dims}")
    return problems


class FakeTimingCache:
    __slots__ = ("data",)
    RECORDED = ("data",)  # what the tests read; not TensorRT API

    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+timing"


class FakeConfig:
    __slots__ = ("_created", "profiles", "progress_monitor", "timing_cache", "workspace")

    def __init__(self) -> None:
        self.profiles: list[FakeProfile] = []
        self.timing_cache: FakeTimingCache | None = None
        self.workspace: int | None = None
        self.progress_monitor: Any = None
        self._created: list[FakeTimingCache] = []

    def set_memory_pool_limit(self, pool: str, pool_size: int) -> None:
        if pool != "WORKSPACE":
            raise ValueError(f"unknown memory pool {pool!r}")
        self.workspace = pool_size

    def add_optimization_profile(self, profile: FakeProfile) -> int:
        if not isinstance(profile, FakeProfile) or not profile.shapes:
            raise TypeError(f"expected a profile with shapes, got {profile!r}")
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> FakeTimingCache:
        cache = FakeTimingCache(bytes(serialized_timing_cache))
        self._created.append(cache)
        return cache

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        if cache not in self._created or ignore_mismatch is not False:
            raise ValueError("timing cache not created by this config, or mismatches ignored")
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> FakeTimingCache | None:
        return self.timing_cache


@dataclass
class Built:
    """One ``build_serialized_network`` call: what it was given."""

    network: FakeNetwork
    config: FakeConfig


@dataclass
class Script:
    """What the fake TensorRT will do, and what it saw."""

    parse_errors: list[str] = field(default_factory=list)
    layers: list[FakeLayer] = field(default_factory=lambda: [FakeLayer()])
    engine: bytes | None = b"FAKE-ENGINE-NOT-BUILT-BY-TENSORRT"
    parsed: list[str] = field(default_factory=list)  # ONNX paths given to the parser
    built: list[Built] = field(default_factory=list)
    build_errors: list[str] = field(default_factory=list)  # why a build returned None
    # runtime: the ONNX file the fake engine evaluates, and the memory it reads and writes
    model: Path | None = None
    memory: Memory | None = None
    executions: list[dict[str, int]] = field(default_factory=list)  # tensor addresses per run

    @property
    def builds(self) -> int:
        return len(self.built)


# -- runtime side ---------------------------------------------------------------------


class FakeEngine:
    """An "engine" whose execution is its ONNX file evaluated by ONNX Runtime."""

    __slots__ = ("_inputs", "_outputs", "_script", "_session")

    def __init__(self, script: Script) -> None:
        import onnxruntime as ort

        from streamfer.engines.onnx_model import read_onnx_info

        assert script.model is not None
        info = read_onnx_info(script.model)
        self._inputs = {s.name: s for s in info.inputs}
        self._outputs = {s.name: s for s in info.outputs}
        self._session = ort.InferenceSession(str(script.model), providers=["CPUExecutionProvider"])
        self._script = script

    @property
    def num_io_tensors(self) -> int:
        return len(self._inputs) + len(self._outputs)

    def get_tensor_name(self, index: int) -> str:
        return [*self._inputs, *self._outputs][index]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name in self._inputs else "OUTPUT"

    def get_tensor_dtype(self, name: str) -> str:
        spec = self._inputs.get(name) or self._outputs[name]
        return _DATATYPE_OF[spec.dtype]

    def create_execution_context(self) -> FakeExecutionContext:
        return FakeExecutionContext(self)


class FakeExecutionContext:
    __slots__ = ("_addresses", "_engine", "_shapes")

    def __init__(self, engine: FakeEngine) -> None:
        self._engine = engine
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        if name not in self._engine._inputs:
            return False
        self._shapes[name] = tuple(int(d) for d in shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        engine = self._engine
        if name in engine._inputs:
            return self._shapes.get(name, (-1,))
        if set(self._shapes) != set(engine._inputs):
            return (-1,) * len(engine._outputs[name].shape)
        # As TensorRT resolves output shapes from input shapes: run the graph on zeros.
        feeds = {n: np.zeros(self._shapes[n], s.dtype) for n, s in engine._inputs.items()}
        return tuple(engine._session.run([name], feeds)[0].shape)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self._engine._inputs and name not in self._engine._outputs:
            return False
        self._addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        engine, script = self._engine, self._engine._script
        memory = script.memory
        if memory is None or set(self._addresses) != {*engine._inputs, *engine._outputs}:
            return False
        feeds = {}
        for name, spec in engine._inputs.items():
            shape = self._shapes[name]
            nbytes = int(np.prod(shape)) * spec.dtype.itemsize
            raw = memory.read(self._addresses[name], nbytes)
            feeds[name] = np.frombuffer(raw, spec.dtype).reshape(shape)
        results = engine._session.run(list(engine._outputs), feeds)
        for name, value in zip(engine._outputs, results, strict=True):
            out = np.ascontiguousarray(value, dtype=engine._outputs[name].dtype)
            memory.write(self._addresses[name], out.tobytes())
        script.executions.append(dict(self._addresses))
        return True


def make_fake_tensorrt(script: Script, version: str = "11.4.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]

    class Logger:
        __slots__ = ("min_severity",)
        WARNING = "WARNING"

        def __init__(self, min_severity: str = "WARNING") -> None:
            self.min_severity = min_severity

    class OnnxParser:
        __slots__ = ("network", "num_errors")

        def __init__(self, network: FakeNetwork, logger: Logger) -> None:
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, model: str) -> bool:
            script.parsed.append(model)
            self.num_errors = len(script.parse_errors)
            if not script.parse_errors:
                self.network.parsed_from = model
                self.network.inputs = onnx_inputs(model)
            return not script.parse_errors

        def get_error(self, index: int) -> str:
            return script.parse_errors[index]

    class Builder:
        __slots__ = ("_networks",)

        def __init__(self, logger: Logger) -> None:
            self._networks: list[FakeNetwork] = []

        def create_network(self, flags: int = 0) -> FakeNetwork:
            network = FakeNetwork(script.layers, flags)
            self._networks.append(network)
            return network

        def create_builder_config(self) -> FakeConfig:
            return FakeConfig()

        def create_optimization_profile(self) -> FakeProfile:
            return FakeProfile()

        def build_serialized_network(self, network: FakeNetwork, config: FakeConfig) -> Any:
            if network not in self._networks or network.parsed_from is None:
                raise ValueError("network not created by this builder or never parsed into")
            script.built.append(Built(network, config))
            problems = [p for prof in config.profiles for p in profile_problems(network, prof)]
            if problems or not config.profiles:
                # TensorRT logs the problem and returns None, as the fake does
                script.build_errors.extend(problems or ["no optimization profile"])
                return None
            return script.engine

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class Runtime:
        __slots__ = ("_logger",)

        def __init__(self, logger: Logger) -> None:
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> FakeEngine | None:
            if script.model is None or bytes(serialized_engine) != script.engine:
                return None
            return FakeEngine(script)

    def nptype(trt_type: str) -> type:
        return _NPTYPES[trt_type]

    trt.Logger = Logger  # type: ignore[attr-defined]
    trt.OnnxParser = OnnxParser  # type: ignore[attr-defined]
    trt.Builder = Builder  # type: ignore[attr-defined]
    trt.IProgressMonitor = IProgressMonitor  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.nptype = nptype  # type: ignore[attr-defined]
    trt.MemoryPoolType = _Enum(WORKSPACE="WORKSPACE")  # type: ignore[attr-defined]
    trt.DataType = _Enum(**{name: name for name in _NPTYPES})  # type: ignore[attr-defined]
    trt.TensorIOMode = _Enum(INPUT="INPUT", OUTPUT="OUTPUT")  # type: ignore[attr-defined]
    trt.LayerType = _Enum(QUANTIZE="QUANTIZE")  # type: ignore[attr-defined]
    return trt


# Doubles of classes that TensorRT's lean runtime also has, by their TensorRT names
# (with the module-level ``Runtime`` and ``Logger`` of ``make_fake_tensorrt``).
REAL_COUNTERPARTS: dict[str, Any] = {
    "ICudaEngine": FakeEngine,
    "IExecutionContext": FakeExecutionContext,
    "IOptimizationProfile": FakeProfile,
    "ITimingCache": FakeTimingCache,
}


# -- pycuda.driver ----------------------------------------------------------------------


class FakeDeviceMemory:
    """Device memory as numpy byte arrays at made-up addresses; counts context pushes so
    that CUDA objects created or freed outside a pushed context fail the test."""

    def __init__(self) -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self.pushed = 0
        self._next = itertools.count(1)

    def require_context(self, what: str) -> None:
        if self.pushed <= 0:
            raise RuntimeError(f"{what} without a pushed CUDA context")

    def alloc(self, nbytes: int) -> int:
        self.require_context("mem_alloc")
        ptr = next(self._next) << 32  # far apart: an overrun never lands in another block
        self.blocks[ptr] = np.zeros(max(int(nbytes), 1), np.uint8)
        return ptr

    def _find(self, ptr: int, nbytes: int) -> np.ndarray:
        for base, block in self.blocks.items():
            if base <= ptr and ptr + nbytes <= base + block.size:
                return block[ptr - base : ptr - base + nbytes]
        raise RuntimeError(f"address {ptr:#x} (+{nbytes} bytes) is not allocated device memory")

    def read(self, ptr: int, nbytes: int) -> bytes:
        return self._find(ptr, nbytes).tobytes()

    def write(self, ptr: int, data: bytes) -> None:
        self._find(ptr, len(data))[:] = np.frombuffer(data, np.uint8)


def make_fake_cuda(memory: FakeDeviceMemory) -> types.ModuleType:
    cuda = types.ModuleType("pycuda.driver")
    handles = itertools.count(0x5000)

    class DeviceAllocation:
        __slots__ = ("ptr",)

        def __init__(self, nbytes: int) -> None:
            self.ptr = memory.alloc(nbytes)

        def __int__(self) -> int:
            return self.ptr

        def free(self) -> None:
            memory.require_context("DeviceAllocation.free")
            memory.blocks.pop(self.ptr)

    class PrimaryContext:
        __slots__ = ("attached",)

        def __init__(self) -> None:
            self.attached = True

        def push(self) -> None:
            memory.pushed += 1

        def detach(self) -> None:
            if memory.pushed:
                raise RuntimeError("context detached while still pushed")
            self.attached = False

    class Context:
        @staticmethod
        def pop() -> None:
            memory.pushed -= 1

    class Device:
        __slots__ = ("ordinal",)

        def __init__(self, ordinal: int) -> None:
            self.ordinal = ordinal

        @staticmethod
        def count() -> int:
            return 1

        def retain_primary_context(self) -> PrimaryContext:
            return PrimaryContext()

        def compute_capability(self) -> tuple[int, int]:
            return (9, 0)

    class Event:
        __slots__ = ("recorded",)

        def __init__(self) -> None:
            memory.require_context("Event()")
            self.recorded = False

        def record(self, stream: Any = None) -> Event:
            self.recorded = True
            return self

        def synchronize(self) -> Event:
            return self

        def time_since(self, start: Event) -> float:
            return 0.0

    class Stream:
        __slots__ = ("handle", "waited")

        def __init__(self) -> None:
            memory.require_context("Stream()")
            self.handle = next(handles)
            self.waited: list[Event] = []

        def synchronize(self) -> None:
            memory.require_context("Stream.synchronize")

        def wait_for_event(self, event: Event) -> None:
            if not event.recorded:
                raise RuntimeError("waited for an event that was never recorded")
            self.waited.append(event)

    def _ptr(dev: Any) -> int:
        return int(dev)

    def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Any = None) -> None:
        memory.require_context("memcpy_htod_async")
        memory.write(_ptr(dest), np.ascontiguousarray(src).tobytes())

    def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Any = None) -> None:
        memory.require_context("memcpy_dtoh_async")
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(
            memory.read(_ptr(src), dest.nbytes), np.uint8
        )

    def pagelocked_empty(shape: Any, dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype)

    cuda.init = lambda: None  # type: ignore[attr-defined]
    cuda.Device = Device  # type: ignore[attr-defined]
    cuda.Context = Context  # type: ignore[attr-defined]
    cuda.Stream = Stream  # type: ignore[attr-defined]
    cuda.Event = Event  # type: ignore[attr-defined]
    cuda.mem_alloc = DeviceAllocation  # type: ignore[attr-defined]
    cuda.memcpy_htod_async = memcpy_htod_async  # type: ignore[attr-defined]
    cuda.memcpy_dtoh_async = memcpy_dtoh_async  # type: ignore[attr-defined]
    cuda.memcpy_htod = memcpy_htod_async  # type: ignore[attr-defined]
    cuda.memcpy_dtoh = memcpy_dtoh_async  # type: ignore[attr-defined]
    cuda.pagelocked_empty = pagelocked_empty  # type: ignore[attr-defined]
    return cuda
