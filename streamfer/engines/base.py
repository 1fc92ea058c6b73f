"""The one runner interface every engine implements.

Shaped after Polygraphy's ``backend/base``: a runner is built cheaply, does
its expensive work in ``activate()``, validates feeds in ``infer()`` and lets
subclasses implement only the ``*_impl`` methods. Unlike Polygraphy, the hot
path does no introspection: everything ``infer()`` checks is precomputed once
per runner.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streamfer.errors import EngineError
from streamfer.lifecycle import Lifecycle

EngineKind = Literal["onnxruntime", "tensorrt"]
Target = Literal["auto", "tensorrt", "onnxruntime"]  # what a model config asks for
Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
# The largest batch a runner takes when none is asked for (the TensorRT profile's max);
# model configs and the engines CLI default to it.
DEFAULT_MAX_BATCH = 64


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise EngineError(
            f"precision | {precision!r} is unknown. Note: expected one of {PRECISIONS}"
        )


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: the batch axis is ``None`` at index 0.

    Other axes are ``None`` only where the model leaves them dynamic.
    """

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self, max_batch: int | None = None) -> str:
        """``float32 [N, 30]`` (with ``N <= max`` when a bound is given)."""
        dims = ["N" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(self.shape)]
        text = f"{self.dtype.name} [{', '.join(dims)}]"
        return text if max_batch is None else f"{text} with 1 <= N <= {max_batch}"


@dataclass(frozen=True)
class EngineInfo:
    """What runs a model: engine kind, precision, device and providers in use."""

    kind: EngineKind
    precision: str
    device: str
    providers: tuple[str, ...]


class _FeedCheck:
    """Validation data for one input, computed once per runner."""

    __slots__ = ("dtype", "fixed", "name", "ndim", "spec", "tail")

    def __init__(self, spec: TensorSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.dtype = spec.dtype
        self.ndim = len(spec.shape)
        self.tail = spec.shape[1:]
        # Fully known non-batch dims compare as one tuple; else per axis.
        self.fixed = all(d is not None for d in self.tail)

    def tail_ok(self, shape: tuple[int, ...]) -> bool:
        got = shape[1:]
        if self.fixed:
            return got == self.tail
        return all(want is None or want == have for want, have in zip(self.tail, got, strict=True))


def _mismatch(check: _FeedCheck, arr: object) -> str:
    """Which part of the spec a rejected feed breaks (error path only)."""
    if not isinstance(arr, np.ndarray):
        return "not a numpy array"
    if arr.dtype != check.dtype:
        return f"wrong dtype {arr.dtype.name}"
    if arr.ndim != check.ndim:
        return f"wrong rank {arr.ndim}"
    return "wrong non-batch dimensions"


class FeedValidator:
    """Checks a feed dict against input specs; raises EngineError naming the tensor."""

    def __init__(self, model: str, specs: Sequence[TensorSpec], max_batch: int) -> None:
        self._model = model
        self._checks = tuple(_FeedCheck(s) for s in specs)
        self._names = frozenset(s.name for s in specs)
        self._max_batch = max_batch

    def __call__(self, feeds: Mapping[str, object]) -> int:
        """Validate ``feeds``; return the batch size shared by all inputs."""
        if feeds.keys() != self._names:
            self._raise_names(feeds)
        batch = -1
        for check in self._checks:
            arr = feeds[check.name]
            if (
                not isinstance(arr, np.ndarray)
                or arr.dtype != check.dtype
                or arr.ndim != check.ndim
                or not check.tail_ok(arr.shape)
            ):
                raise self._error(check, arr, _mismatch(check, arr))
            n = arr.shape[0]
            if not 1 <= n <= self._max_batch:
                raise self._error(check, arr, f"batch size {n} is out of range")
            if batch < 0:
                batch = n
            elif n != batch:
                raise self._error(
                    check, arr, f"batch size {n} differs from the other inputs' {batch}"
                )
        return batch

    def _error(self, check: _FeedCheck, arr: object, problem: str) -> EngineError:
        if isinstance(arr, np.ndarray):
            got = f"{arr.dtype.name} {list(arr.shape)}"
        else:
            got = f"a {type(arr).__name__}"
        return EngineError(
            f"{self._model} input '{check.name}' | {problem}: got {got}. "
            f"Note: expected {check.spec.describe(self._max_batch)}"
        )

    def _raise_names(self, feeds: Mapping[str, object]) -> None:
        missing = sorted(self._names - feeds.keys())
        unknown = sorted(str(k) for k in feeds.keys() - self._names)
        parts = []
        if missing:
            parts.append(f"missing input {', '.join(repr(m) for m in missing)}")
        if unknown:
            parts.append(f"unknown input {', '.join(repr(u) for u in unknown)}")
        expected = ", ".join(f"'{c.name}' {c.spec.describe()}" for c in self._checks)
        raise EngineError(
            f"{self._model} feeds | {'; '.join(parts)} (got {sorted(map(str, feeds))}). "
            f"Note: expected exactly {expected}"
        )


class Runner(Lifecycle, ABC, start="activate", stop="deactivate"):
    """Runs one model: lazy until ``activate()``, then ``infer()`` any number of times;
    ``with runner:`` activates it and deactivates it on the way out.

    Subclasses implement ``_activate_impl``, ``_deactivate_impl``, ``_infer_impl``
    and the spec/metadata properties. ``infer`` may be called from several
    threads at once; each engine documents how it keeps them apart.
    """

    def __init__(self, name: str, max_batch: int) -> None:
        if max_batch < 1:
            raise EngineError(f"{name} | max_batch {max_batch} is invalid. Note: expected >= 1")
        self.name = name
        self.max_batch = max_batch
        self._active = False
        self._validate: FeedValidator | None = None
        self._lock = threading.Lock()

    # -- contract -------------------------------------------------------------
    @property
    @abstractmethod
    def input_specs(self) -> tuple[TensorSpec, ...]: ...

    @property
    @abstractmethod
    def output_specs(self) -> tuple[TensorSpec, ...]: ...

    @property
    @abstractmethod
    def metadata(self) -> dict[str, str]:
        """The ONNX model's ``metadata_props``."""

    @property
    @abstractmethod
    def info(self) -> EngineInfo: ...

    @abstractmethod
    def _activate_impl(self) -> None: ...

    @abstractmethod
    def _deactivate_impl(self) -> None: ...

    @abstractmethod
    def _infer_impl(self, feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]: ...

    # -- lifecycle ------------------------------------------------------------
    @property
    def is_active(self) -> bool:
        return self._active

    def activate(self) -> None:
        """Load (and if needed build) the engine; idempotent."""
        with self._lock:
            if self._active:
                return
            self._activate_impl()
            self._validate = FeedValidator(self.name, self.input_specs, self.max_batch)
            self._active = True

    def deactivate(self) -> None:
        """Release the engine and its buffers; idempotent."""
        with self._lock:
            if not self._active:
                return
            self._active = False
            self._validate = None
            self._deactivate_impl()

    # -- hot path -------------------------------------------------------------
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. Feeds must match ``input_specs`` exactly (no casting)."""
        validate = self._validate
        if validate is None:
            raise EngineError(
                f"{self.name} | infer() called on an inactive runner. "
                "Note: expected activate() or a `with runner:` block first"
            )
        batch = validate(feeds)
        return self._infer_impl(feeds, batch)


def random_feeds(specs: Sequence[TensorSpec], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Feeds of the right dtype and shape: floats uniform in [0, 1), other types zero.

    For smoke checks and benchmarks, not for accuracy: dynamic non-batch axes get 1.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = (batch, *(1 if d is None else d for d in spec.shape[1:]))
        if np.issubdtype(spec.dtype, np.floating):
            feeds[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds
