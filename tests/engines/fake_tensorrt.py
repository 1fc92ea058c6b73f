"""Stand-ins for the few ``tensorrt`` objects the builder touches.

They record calls and return canned results; they build nothing. Tests that
use them check streamfer's logic around TensorRT (profile shapes, parse and
build errors, precision checks, the cache), never that an engine works: that
is what the ``gpu`` tests do on a machine with TensorRT.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any


class _Enum:
    def __init__(self, **members: str) -> None:
        for name, value in members.items():
            setattr(self, name, value)


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

    def get_output(self, i: int) -> FakeTensor:
        return self.outputs[i]


@dataclass
class FakeNetwork:
    layers: list[FakeLayer]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, i: int) -> FakeLayer:
        return self.layers[i]


@dataclass
class Script:
    """What the fake TensorRT will do, and what it saw."""

    parse_errors: list[str] = field(default_factory=list)
    layers: list[FakeLayer] = field(default_factory=lambda: [FakeLayer()])
    engine: bytes | None = b"FAKE-ENGINE-NOT-BUILT-BY-TENSORRT"
    profile_shapes: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    workspace: int | None = None
    timing_cache_in: list[bytes] = field(default_factory=list)
    builds: int = 0
    network_flags: int | None = None


def make_fake_tensorrt(script: Script, version: str = "11.4.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity: str) -> None:
            self.severity = severity

    class OnnxParser:
        def __init__(self, network: FakeNetwork, logger: Logger) -> None:
            self.num_errors = 0

        def parse_from_file(self, path: str) -> bool:
            self.num_errors = len(script.parse_errors)
            return not script.parse_errors

        def get_error(self, i: int) -> str:
            return script.parse_errors[i]

    class Profile:
        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            script.profile_shapes[name] = (lo, opt, hi)

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+timing"

    class Config:
        progress_monitor: Any = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            assert pool == "WORKSPACE"
            script.workspace = size

        def add_optimization_profile(self, profile: Profile) -> int:
            return 0

        def create_timing_cache(self, data: bytes) -> TimingCache:
            script.timing_cache_in.append(bytes(data))
            self._cache = TimingCache(bytes(data))
            return self._cache

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            assert ignore_mismatch is False
            return True

        def get_timing_cache(self) -> TimingCache:
            return self._cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> FakeNetwork:
            script.network_flags = flags
            return FakeNetwork(script.layers)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: FakeNetwork, config: Config) -> bytes | None:
            script.builds += 1
            return script.engine

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    trt.Logger = Logger  # type: ignore[attr-defined]
    trt.OnnxParser = OnnxParser  # type: ignore[attr-defined]
    trt.Builder = Builder  # type: ignore[attr-defined]
    trt.IProgressMonitor = IProgressMonitor  # type: ignore[attr-defined]
    trt.MemoryPoolType = _Enum(WORKSPACE="WORKSPACE")  # type: ignore[attr-defined]
    trt.DataType = _Enum(HALF="HALF", FLOAT="FLOAT")  # type: ignore[attr-defined]
    trt.LayerType = _Enum(QUANTIZE="QUANTIZE")  # type: ignore[attr-defined]
    return trt
