"""Camera frames preprocessed on the GPU (``preprocess.device: gpu``, or ``auto`` with TensorRT).

The consumer thread only reads headers (``prepare``: size limits, the
``capture-ts-ns``/``frame-seq`` headers; no decoding); the frames travel to the
engine thread as encoded bytes. There :class:`GpuCameraInfer`, the stream's
inference step, checks each frame's header as the CPU codec does
(``camera_frames.gpu_frame``), then decodes and letterboxes the whole engine
batch on the GPU (``streamfer.engines.gpu.GpuFramePreprocessor``: nvImageCodec, one
kernel launch) straight into the TensorRT input and runs the engine on it
(``infer_device``); only the outputs postprocessing needs come back. Frames the
GPU path rejects (at the header, or at decode) come back as per-row errors with
the CPU codec's reasons and go to the dead-letter topic; the letterbox geometry
of every kept frame comes back with them, so boxes map to frame pixels exactly
as on the CPU path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from streamfer.errors import CodecError
from streamfer.models.preprocess import Letterbox
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.postprocess import CameraMeta, DetectionPostprocessor
from streamfer.pipeline.processors.base import (
    NO_EVENT_TIME,
    Postprocessor,
    Prepared,
    Reject,
    Result,
    accepted,
)
from streamfer.pipeline.processors.camera import missing_capture_ts, with_frame
from streamfer.pipeline.processors.camera_frames import EncodedFrame, decode_failure, gpu_frame
from streamfer.streams.codecs.limits import CodecLimits, check_size, int_header
from streamfer.streams.records import RecordBatch

FRAMES = "__frames__"  # feed: encoded frames (object array of EncodedFrame)
WHERE = "__where__"  # feed: topic[partition]@offset of each frame
REJECTS = "__rejects__"  # output: the CodecError of a frame the GPU path refused, else None
GEOMETRY = "__geometry__"  # output: (Letterbox, (width, height)) of a kept frame, else None


class FrameBatch(Protocol):
    """What ``GpuFramePreprocessor.preprocess`` returns (see engines.gpu)."""

    tensor: Any
    kept: list[int]
    letterboxes: list[Letterbox]
    sizes: list[tuple[int, int]]
    failed: Sequence[Any]  # DecodeFailure: index, got

    def release(self) -> None: ...


class FramePreprocessor(Protocol):
    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    @property
    def is_active(self) -> bool: ...

    def preprocess(self, frames: Sequence[Any]) -> Any: ...


class DeviceRunner(Protocol):
    """The part of ``TensorRTRunner`` the GPU path uses."""

    @property
    def input_specs(self) -> Any: ...

    @property
    def output_specs(self) -> Any: ...

    def infer_device(
        self, inputs: Mapping[str, Any], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]: ...


class GpuCameraInfer:
    """The stream's inference step: GPU decode + letterbox, then the engine on the device.

    Used from the engine thread only (the preprocessor is activated there, on first use).
    """

    def __init__(
        self,
        runner: DeviceRunner,
        preprocessor: FramePreprocessor,
        outputs: Sequence[str],
        limits: CodecLimits,
    ) -> None:
        self.runner = runner
        self.pre = preprocessor
        self.outputs = list(outputs)
        self.limits = limits
        self.input_name = runner.input_specs[0].name
        self._shapes = {s.name: s for s in runner.output_specs}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames, where = feeds[FRAMES], feeds[WHERE]
        n = len(frames)
        if not self.pre.is_active:
            self.pre.activate()
        rejects = np.full(n, None, dtype=object)
        geometry = np.full(n, None, dtype=object)
        fed: list[int] = []  # the feed row of each frame handed to the preprocessor
        ready = []
        for i in range(n):
            try:
                ready.append(gpu_frame(frames[i], self.limits, where[i]))
            except CodecError as exc:
                rejects[i] = exc
                continue
            fed.append(i)
        batch = self.pre.preprocess(ready)
        try:
            for f in batch.failed:
                row, frame = fed[f.index], ready[f.index]
                rejects[row] = decode_failure(where[row], frame, len(frame.data), f.got)
            kept = [fed[k] for k in batch.kept]
            got: dict[str, np.ndarray] = {}
            if kept:
                got = self.runner.infer_device({self.input_name: batch.tensor}, self.outputs)
            for row, lb, size in zip(kept, batch.letterboxes, batch.sizes, strict=True):
                geometry[row] = (lb, size)
        finally:
            batch.release()
        out: dict[str, np.ndarray] = {}
        for name in self.outputs:
            rows = got.get(name)
            tail = rows.shape[1:] if rows is not None else self._tail(name)
            full = np.zeros((n, *tail), dtype=rows.dtype if rows is not None else np.float32)
            if rows is not None:
                full[kept] = rows
            out[name] = full
        out[REJECTS] = rejects
        out[GEOMETRY] = geometry
        return out

    def _tail(self, name: str) -> tuple[int, ...]:
        return tuple(int(d or 0) for d in self._shapes[name].shape[1:])


class GpuCameraProcessor:
    """``kind: camera`` with ``preprocess.device: gpu``: headers read here, pixels on the GPU."""

    def __init__(
        self,
        stream: StreamConfig,
        labels: Sequence[str],
        preprocessor: FramePreprocessor,
        output_name: str | None = "output0",
        post: Postprocessor | None = None,
    ) -> None:
        self.limits = stream.limits.codec_limits()
        self.dead_letter_without_ts = stream.frames.missing_capture_ts == "dead_letter"
        self.post: Postprocessor = post or DetectionPostprocessor(
            stream.detection, labels, output_name
        )
        self.output_name = output_name
        self.preprocessor = preprocessor

    def prepare(self, batch: RecordBatch) -> Prepared:
        rows: list[int] = []
        frames: list[Any] = []
        metas: list[tuple[int | None, int | None]] = []
        events: list[int] = []
        rejects: list[Reject] = []
        for i in range(len(batch)):
            record = batch.record(i)
            try:
                value = check_size(record, self.limits.max_message_bytes, "a camera frame")
                seq = int_header(record, "frame-seq")
                ts = int_header(record, "capture-ts-ns")
            except CodecError as exc:
                rejects.append(Reject(i, exc.reason, exc))
                continue
            if ts is None and self.dead_letter_without_ts:
                rejects.append(missing_capture_ts(batch, i))
                continue
            rows.append(i)
            frames.append(EncodedFrame(value, record.header("content-type")))
            metas.append((seq, ts))
            events.append(NO_EVENT_TIME if ts is None else ts)
        feeds = {
            FRAMES: _objects(frames),
            WHERE: _objects([batch.coords(i) for i in rows]),
        }
        return Prepared(batch, accepted(rows), feeds, metas, np.asarray(events, np.int64), rejects)

    def infer_with(self, runner: Any) -> GpuCameraInfer:
        """The inference step this processor needs instead of ``runner.infer``."""
        name = self.output_name or runner.output_specs[0].name
        return GpuCameraInfer(runner, self.preprocessor, [name], self.limits)

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> list[Result | BaseException]:
        rejects, geometry = outputs[REJECTS], outputs[GEOMETRY]
        kept = [i for i in range(len(metas)) if rejects[i] is None]
        camera = []
        for i in kept:
            (lb, (width, height)), (seq, ts) = geometry[i], metas[i]
            camera.append(CameraMeta(lb, width, height, seq, ts))
        found = iter(
            self.post.results(
                {k: v[kept] for k, v in outputs.items() if k not in (REJECTS, GEOMETRY)}, camera
            )
            if kept
            else []
        )
        out: list[Result | BaseException] = []
        meta_of = iter(camera)
        for i in range(len(metas)):
            if rejects[i] is not None:
                out.append(rejects[i])
                continue
            out.append(with_frame(next(found), next(meta_of)))
        return out

    def close(self) -> None:
        if self.preprocessor.is_active:
            self.preprocessor.deactivate()


def _objects(items: Sequence[Any]) -> np.ndarray:
    """A 1-d object array of ``items`` (element by element: tuples stay whole)."""
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        arr[i] = item
    return arr
