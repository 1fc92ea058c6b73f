"""Camera frames decoded and letterboxed in worker processes, into shared memory.

``FramePool`` owns ``workers`` processes and one shared-memory slab that holds
the input tensor of the poll in flight (the consumer thread prepares one poll
at a time; the slab grows to the largest poll seen). ``decode(records)`` splits
the records into one contiguous run per worker; each worker decodes and letterboxes its run straight
into the slab's rows and returns, per row, the frame's meta or its codec
reason and message. The tensor is copied out of the slab before it is
released, so a batch never outlives its slab. The caller waits on the tasks
without holding the GIL; only the records' bytes and small results cross the
process boundary.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.shared_memory import SharedMemory
from typing import Any, NamedTuple

import numpy as np

from streamfer.errors import CodecError
from streamfer.models.preprocess import letterbox_geometry
from streamfer.streams.codecs import CodecLimits
from streamfer.streams.records import Record


class _Job(NamedTuple):
    """What a worker needs of one record (no tracker handles cross the boundary)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


# Per worker process: set by _init, read by _decode_run.
_worker: dict[str, Any] = {}


def _init(limits: CodecLimits, size: int, dtype: str) -> None:
    _worker.update(limits=limits, size=size, dtype=np.dtype(dtype), slabs={})


def _fit(width: int, height: int) -> tuple[int, int]:
    _, new_w, new_h = letterbox_geometry(width, height, _worker["size"])
    return new_w, new_h


def _decode_run(slab: str, rows: int, lo: int, jobs: list[_Job]) -> list[Any]:
    """Rows ``lo:lo+len(jobs)`` of the slab's tensor; per row a CameraMeta or
    ``(reason, message)``."""
    from streamfer.pipeline.processors.camera import camera_input
    from streamfer.streams.codecs import decode_camera

    size, dtype = _worker["size"], _worker["dtype"]
    shm = _worker["slabs"].get(slab)
    if shm is None:  # a new (grown) slab: let go of the old one
        for old in _worker["slabs"].values():
            old.close()
        _worker["slabs"] = {slab: SharedMemory(slab)}
        shm = _worker["slabs"][slab]
    feed = np.ndarray((rows, 3, size, size), dtype, buffer=shm.buf)
    out: list[Any] = []
    for i, job in enumerate(jobs, lo):
        rec = Record(job.topic, job.partition, job.offset, None, job.value, job.headers, 0, 0)
        try:
            frame = decode_camera(rec, _worker["limits"], fit=_fit)
            _, meta = camera_input(frame, size, feed[i])
        except CodecError as exc:
            out.append((exc.reason, str(exc)))
            continue
        out.append(meta)
    del feed
    return out


class FramePool:
    """``workers`` decode processes writing into one shared-memory slab."""

    def __init__(self, workers: int, size: int, dtype: np.dtype, limits: CodecLimits) -> None:
        self.workers, self.size, self.dtype = workers, size, np.dtype(dtype)
        self.limits = limits
        self._pool: ProcessPoolExecutor | None = None
        self._shm: SharedMemory | None = None
        self._rows = 0

    def _slab(self, rows: int) -> SharedMemory:
        if self._shm is None or rows > self._rows:
            self._release_slab()
            self._rows = max(rows, 16)
            row = 3 * self.size * self.size * self.dtype.itemsize
            self._shm = SharedMemory(create=True, size=row * self._rows)
        return self._shm

    def _release_slab(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def start(self) -> None:
        if self._pool is not None:
            return
        self._pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_init,
            initargs=(self.limits, self.size, self.dtype.str),
        )

    def decode(self, records: Sequence[Record]) -> tuple[np.ndarray, list[Any]]:
        """The input tensor of ``records`` (one row each; a rejected row's content is
        undefined) and per row a CameraMeta or a CodecError."""
        n = len(records)
        if self._pool is None:
            self.start()
        assert self._pool is not None
        shm = self._slab(n)
        jobs = [_Job(r.topic, r.partition, r.offset, r.value, r.headers) for r in records]
        tasks = max(1, min(self.workers, n))
        bounds = [n * k // tasks for k in range(tasks + 1)]
        futures = [
            self._pool.submit(_decode_run, shm.name, n, lo, jobs[lo:hi])
            for lo, hi in itertools.pairwise(bounds)
        ]
        out: list[Any] = []
        for future in futures:
            out.extend(future.result())
        view = np.ndarray((n, 3, self.size, self.size), self.dtype, buffer=shm.buf)
        feed = view.copy()
        del view
        return feed, [_result(got, rec) for got, rec in zip(out, records, strict=True)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._release_slab()


def _result(got: Any, record: Record) -> Any:
    if isinstance(got, tuple):
        reason, message = got
        return CodecError(message, reason)
    return got
