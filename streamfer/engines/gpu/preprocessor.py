"""Camera frames -> the detector's input tensor, on the GPU, one batch at a time.

``GpuFramePreprocessor.preprocess(frames)`` takes a batch of :class:`GpuFrame`
(complete JPEGs, or uint8 pixels, each with the size its header gave; the
caller has checked the headers, e.g. ``streamfer.pipeline.processors.camera_frames``)
and returns a :class:`GpuFrameBatch` whose ``tensor`` is the letterboxed,
normalised batch ``[n, 3, size, size]`` in device memory, in the engine's input
dtype:

1. JPEGs are decoded together by nvImageCodec into device memory, on this
   batch's stream; one that does not decode to its header's size leaves the
   batch as a :class:`DecodeFailure` (what the decoder gave);
2. pixel frames (raw frames, PNGs the caller decoded) are packed into pinned
   memory and go up as uint8 in one copy;
3. one kernel launch letterboxes every frame into the output buffer, which
   the TensorRT runner reads in place (``TensorRTRunner.infer_device``):
   nothing comes back to the host between decode and inference.

Geometry is ``streamfer.models.preprocess.letterbox_geometry``, the CPU path's own, so
``to_frame_boxes`` maps detections back the same way on both paths.

Buffers come from ``depth`` slots (output tensor, descriptor table, staging
memory, stream, events); a batch holds its slot until ``release()`` (or the
end of its ``with`` block), so a batch being inferred is never overwritten
by the next one. With every slot out, ``preprocess`` waits for one to come
back (bounded: ``acquire_timeout_s``). One preprocessor serves one thread at
a time; use one per preprocessing thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from streamfer.engines.gpu.decoder import BatchDecoder, DecodedImage, JpegBatchDecoder
from streamfer.engines.gpu.device import DeviceTensor, PrimaryContext
from streamfer.engines.gpu.kernels import BLOCK, FRAME_DESC, KERNELS, arch_of, letterbox_cubin
from streamfer.errors import EngineError
from streamfer.lifecycle import Lifecycle
from streamfer.models.preprocess import Letterbox, letterbox_geometry

log = logging.getLogger(__name__)

_ALIGN = 256  # staging offsets: aligned rows read faster and any dtype view stays legal


class GpuFrame(NamedTuple):
    """One frame for the GPU path, its header already checked by the caller.

    ``kind`` ``jpeg``: ``data`` is a complete JPEG of ``width`` x ``height``; ``raw``:
    ``data`` is its ``height`` x ``width`` x ``channels`` uint8 pixels (BGR, or gray when
    ``channels`` is 1), as bytes or a contiguous array.
    """

    data: bytes | np.ndarray
    kind: Literal["jpeg", "raw"]
    width: int
    height: int
    channels: int = 3


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """A JPEG the decoder refused: its index in the batch and what the decoder gave
    (``nothing``, or the ``WxH`` it found instead of the header's size)."""

    index: int
    got: str


class _Slot:
    """One batch's device resources; reused once its batch is released."""

    def __init__(self, cuda: Any, out_bytes: int, max_batch: int) -> None:
        self.stream = cuda.Stream()
        self.start = cuda.Event()
        self.decoded = cuda.Event()
        self.ready = cuda.Event()
        self.out = cuda.mem_alloc(out_bytes)
        self.desc_host = cuda.pagelocked_empty(max_batch, FRAME_DESC)
        self.desc_dev = cuda.mem_alloc(self.desc_host.nbytes)
        self.stage_host: np.ndarray | None = None
        self.stage_dev: Any = None
        self.images: list[DecodedImage] = []  # keep decoded memory alive until release

    def staging(self, cuda: Any, nbytes: int) -> tuple[np.ndarray, Any]:
        """Pinned and device staging of at least ``nbytes`` (grown by doubling)."""
        if self.stage_host is None or self.stage_host.nbytes < nbytes:
            self._free_staging()
            size = 1 << max(20, (nbytes - 1).bit_length())
            self.stage_host = cuda.pagelocked_empty(size, np.uint8)
            self.stage_dev = cuda.mem_alloc(size)
        return self.stage_host, self.stage_dev

    def _free_staging(self) -> None:
        if self.stage_dev is not None:
            self.stage_dev.free()
        self.stage_host = self.stage_dev = None

    def free(self) -> None:
        self.images.clear()
        self._free_staging()
        self.out.free()
        self.desc_dev.free()


@dataclass
class GpuFrameBatch(Lifecycle, start=None, stop="release"):
    """One preprocessed batch: rows of ``tensor`` are the frames ``kept`` (input indices).

    ``letterboxes[r]`` and ``sizes[r]`` (frame width, height) belong to row ``r``;
    ``failed`` name the frames that have no row. Release it (or leave its
    ``with`` block) once the engine has read ``tensor``.
    """

    tensor: DeviceTensor
    kept: list[int]
    letterboxes: list[Letterbox]
    sizes: list[tuple[int, int]]
    failed: list[DecodeFailure]
    _owner: GpuFramePreprocessor | None = field(repr=False, default=None)
    _slot: _Slot | None = field(repr=False, default=None)

    def __len__(self) -> int:
        return len(self.kept)

    def host_tensor(self) -> np.ndarray:
        """A host copy of ``tensor`` (tests, previews, a CPU engine); waits for it."""
        if self._owner is None or self._slot is None:
            raise EngineError("gpu frame batch | released. Note: expected a live batch")
        return self._owner._download(self._slot, self.tensor)

    def kernel_ms(self) -> float:
        """GPU time of the letterbox launch (waits for it)."""
        if self._slot is None:
            raise EngineError("gpu frame batch | released. Note: expected a live batch")
        self._slot.ready.synchronize()
        return float(self._slot.ready.time_since(self._slot.decoded))

    def release(self) -> None:
        """Hand the slot back (idempotent); waits for the batch's own GPU work first."""
        owner, slot = self._owner, self._slot
        self._owner = self._slot = None
        if owner is not None and slot is not None:
            owner._release(slot)


class GpuFramePreprocessor(Lifecycle, start="activate", stop="deactivate"):
    """Letterboxes batches of camera frames into device memory; lazy until ``activate()``."""

    def __init__(
        self,
        input_size: int,
        dtype: np.dtype | type[np.floating[Any]],
        max_batch: int,
        *,
        device: int = 0,
        depth: int = 2,
        decoder_threads: int = 0,
        cache_dir: Path | None = None,
        acquire_timeout_s: float = 30.0,
        decoder: BatchDecoder | None = None,
    ) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in KERNELS:
            raise EngineError(
                f"gpu preprocess | input dtype {self.dtype.name}. "
                f"Note: expected one of {sorted(d.name for d in KERNELS)}"
            )
        if input_size < 8 or max_batch < 1 or depth < 1:
            raise EngineError(
                f"gpu preprocess | input_size={input_size} max_batch={max_batch} depth={depth}. "
                "Note: expected input_size >= 8, max_batch >= 1, depth >= 1"
            )
        self.size = input_size
        self.max_batch = max_batch
        self.depth = depth
        self.acquire_timeout_s = acquire_timeout_s
        self.cache_dir = cache_dir
        self._context = PrimaryContext(device)
        self._decoder = decoder or JpegBatchDecoder(device, decoder_threads)
        self._cuda: Any = None
        self._module: Any = None
        self._kernel: Any = None
        self._slots: list[_Slot] = []
        self._free: queue.Queue[_Slot] = queue.Queue()
        self._lock = threading.Lock()

    @property
    def is_active(self) -> bool:
        return self._kernel is not None

    # -- lifecycle ------------------------------------------------------------------
    def activate(self) -> None:
        """Retain the GPU, load the kernel (compiled once, cached), allocate the slots."""
        if self.is_active:
            return
        cuda = self._context.retain()
        try:
            with self._context.current():
                arch = arch_of(self._context.compute_capability())
                self._module = cuda.module_from_buffer(letterbox_cubin(arch, self.cache_dir))
                kernel = self._module.get_function(KERNELS[self.dtype])
                kernel.prepare("PPi")
                out_bytes = self.max_batch * 3 * self.size * self.size * self.dtype.itemsize
                for _ in range(self.depth):
                    slot = _Slot(cuda, out_bytes, self.max_batch)
                    self._slots.append(slot)
                    self._free.put(slot)
                self._decoder.activate()
            self._cuda = cuda
            self._kernel = kernel
        except BaseException:
            self._teardown()
            raise

    def deactivate(self) -> None:
        """Free every slot (waiting for their work) and the context; idempotent."""
        if self._context.retained:
            self._teardown()

    def _teardown(self) -> None:
        self._kernel = None
        self._decoder.deactivate()
        if self._context.retained:
            with self._context.current():
                for slot in self._slots:
                    slot.stream.synchronize()
                    slot.free()
                self._module = None
        self._slots.clear()
        self._free = queue.Queue()
        self._context.release()

    # -- hot path -------------------------------------------------------------------
    def preprocess(self, frames: Sequence[GpuFrame]) -> GpuFrameBatch:
        """Letterbox ``frames`` into one device batch (JPEGs that do not decode: ``failed``)."""
        if not self.is_active:
            raise EngineError(
                "gpu preprocess | preprocess() on an inactive preprocessor. "
                "Note: expected activate() or a `with` block first"
            )
        if len(frames) > self.max_batch:
            raise EngineError(
                f"gpu preprocess | batch of {len(frames)} frames. "
                f"Note: expected at most max_batch={self.max_batch}"
            )
        slot = self._acquire()
        try:
            with self._lock, self._context.current():
                return self._run(slot, frames)
        except BaseException:
            self._release(slot)
            raise

    def _acquire(self) -> _Slot:
        try:
            return self._free.get(timeout=self.acquire_timeout_s)
        except queue.Empty:
            raise EngineError(
                f"gpu preprocess | all {self.depth} batch buffers still held after "
                f"{self.acquire_timeout_s:g} s. Note: expected each batch to be released "
                "once the engine has read it"
            ) from None

    def _release(self, slot: _Slot) -> None:
        if not self._context.retained:
            return  # deactivated meanwhile: the slot was freed with the others
        with self._context.current():
            slot.ready.synchronize()
            slot.images.clear()
        self._free.put(slot)

    def _run(self, slot: _Slot, frames: Sequence[GpuFrame]) -> GpuFrameBatch:
        slot.start.record(slot.stream)
        pixels: dict[int, tuple[DecodedImage, bool]] = {}  # index -> (image, is BGR)
        failed = self._decode_jpegs(slot, frames, pixels)
        self._upload_host_frames(slot, frames, pixels)
        kept = sorted(pixels)
        slot.images = [pixels[i][0] for i in kept]
        letterboxes = self._describe(slot, [pixels[i] for i in kept])
        slot.decoded.record(slot.stream)
        n = len(kept)
        if n:
            self._cuda.memcpy_htod_async(slot.desc_dev, slot.desc_host[:n], slot.stream)
            grid = (-(-self.size // BLOCK[0]), -(-self.size // BLOCK[1]), n)
            self._kernel.prepared_async_call(
                grid, BLOCK, slot.stream, int(slot.desc_dev), int(slot.out), np.int32(self.size)
            )
        slot.ready.record(slot.stream)
        sizes = [(frames[i].width, frames[i].height) for i in kept]
        tensor = DeviceTensor(int(slot.out), (n, 3, self.size, self.size), self.dtype, slot.ready)
        return GpuFrameBatch(tensor, kept, letterboxes, sizes, failed, self, slot)

    def _decode_jpegs(
        self, slot: _Slot, frames: Sequence[GpuFrame], pixels: dict[int, tuple[DecodedImage, bool]]
    ) -> list[DecodeFailure]:
        """Decode the JPEGs into ``pixels``; those that do not decode to their size fail."""
        jpegs = [i for i, frame in enumerate(frames) if frame.kind == "jpeg"]
        datas: list[Any] = [frames[i].data for i in jpegs]  # a JPEG's data is bytes
        failed = []
        for i, image in zip(jpegs, self._decoder.decode(datas, slot.stream.handle), strict=True):
            frame = frames[i]
            if image is not None and (image.width, image.height) == (frame.width, frame.height):
                pixels[i] = (image, False)
                continue
            got = "nothing" if image is None else f"{image.width}x{image.height}"
            failed.append(DecodeFailure(i, got))
        return failed

    def _upload_host_frames(
        self, slot: _Slot, frames: Sequence[GpuFrame], pixels: dict[int, tuple[DecodedImage, bool]]
    ) -> None:
        """Pixel frames (BGR or gray, as the CPU codec has them), packed and sent in one copy."""
        arrays: dict[int, np.ndarray] = {}
        for i, frame in enumerate(frames):
            if frame.kind == "raw":
                arrays[i] = np.frombuffer(frame.data, np.uint8)
        if not arrays:
            return
        offsets, total = {}, 0
        for i, arr in arrays.items():
            offsets[i] = total
            total += -(-arr.size // _ALIGN) * _ALIGN
        host, dev = slot.staging(self._cuda, total)
        for i, arr in arrays.items():
            host[offsets[i] : offsets[i] + arr.size] = arr
            frame = frames[i]
            pitch = frame.width * frame.channels
            staged = DecodedImage(
                int(dev) + offsets[i], pitch, frame.width, frame.height, frame.channels, None
            )
            pixels[i] = (staged, True)
        self._cuda.memcpy_htod_async(dev, host[:total], slot.stream)

    def _describe(self, slot: _Slot, rows: list[tuple[DecodedImage, bool]]) -> list[Letterbox]:
        """Fill the slot's descriptor table, one row per frame; their letterbox geometry."""
        letterboxes = []
        for r, (image, bgr) in enumerate(rows):
            lb, new_w, new_h = letterbox_geometry(image.width, image.height, self.size)
            slot.desc_host[r] = (
                image.ptr, image.pitch, image.width, image.height, image.channels, int(bgr),
                int(lb.scale < 1.0), new_w, new_h, lb.pad_x, lb.pad_y,
                image.width / new_w, image.height / new_h,
            )  # fmt: skip
            letterboxes.append(lb)
        return letterboxes

    def _download(self, slot: _Slot, tensor: DeviceTensor) -> np.ndarray:
        out = np.empty(tensor.shape, tensor.dtype)
        if out.size:
            with self._context.current():
                slot.stream.synchronize()
                self._cuda.memcpy_dtoh(out, tensor.ptr)
        return out
