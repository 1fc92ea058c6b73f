"""CUDA plumbing shared by the TensorRT runner and the GPU frame path (pycuda).

Everything runs in the device's *primary* context, the one the CUDA runtime
(and so nvImageCodec and TensorRT) uses too, pushed around each piece of work
in whichever thread does it: ``pycuda.autoinit`` would bind a private context
to the importing thread and break the others. Objects holding device memory,
streams or events are freed inside a push, never by the garbage collector
(pycuda then warns that they "could not be cleaned up").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamfer.engines.host import import_optional
from streamfer.errors import EngineError


def import_cuda() -> Any:
    """``pycuda.driver`` or an EngineError saying how to get it."""
    return import_optional(
        "pycuda.driver",
        "pycuda",
        "the `gpu` extra (pip install 'streamfer[gpu]', builds against the CUDA toolkit)",
    )


@dataclass(frozen=True)
class DeviceTensor:
    """A tensor in device memory: its address, shape and dtype, and when it is ready.

    ``ready`` is a ``pycuda.driver.Event`` recorded after the last write (on
    whatever stream wrote it); a consumer on another stream waits for it
    there. None means the memory is already complete.
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    ready: Any = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class PrimaryContext:
    """The primary context of one device, retained on ``retain()`` and pushed by ``current()``."""

    def __init__(self, device: int = 0) -> None:
        self.device = device
        self.cuda: Any = None
        self._ctx: Any = None

    def retain(self) -> Any:
        """Initialise CUDA and retain the context; returns ``pycuda.driver``."""
        cuda = import_cuda()
        try:
            cuda.init()
            self._ctx = cuda.Device(self.device).retain_primary_context()
        except Exception as exc:  # pycuda raises its own error types without a driver/GPU
            raise EngineError(
                f"cuda device {self.device} | unavailable ({type(exc).__name__}: {exc}). "
                "Note: expected an NVIDIA driver and a visible GPU"
            ) from exc
        self.cuda = cuda
        return cuda

    @property
    def retained(self) -> bool:
        return self._ctx is not None

    @contextmanager
    def current(self) -> Iterator[None]:
        """The context pushed on this thread for the duration of the block."""
        if self._ctx is None:
            raise EngineError(
                f"cuda device {self.device} | context used before retain() or after release(). "
                "Note: expected activate() first"
            )
        self._ctx.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def compute_capability(self) -> str:
        major, minor = self.cuda.Device(self.device).compute_capability()
        return f"{major}.{minor}"

    def release(self) -> None:
        """Drop this holder's reference to the context (idempotent)."""
        if self._ctx is not None:
            self._ctx.detach()
            self._ctx = None
