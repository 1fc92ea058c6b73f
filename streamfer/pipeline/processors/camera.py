"""Camera frames: JPEG/PNG/raw decode and letterbox in a thread pool, detections out.

A poll's frames are split into ``threads`` contiguous runs, one task each; a
task decodes (libjpeg-turbo, Pillow) and letterboxes (OpenCV) its frames
straight into their rows of the poll's input tensor, allocated once. The
native calls release the GIL, so the engine thread's Python work (results,
encoding, publishing) runs meanwhile; the consumer thread waits on the tasks
without holding it, and the tensor is not copied again unless a frame was
rejected (the accepted rows are then taken out). A JPEG larger than the
detector input decodes at 1/2, 1/4 or 1/8 of its size where that still covers
the letterboxed size.

The deadline of a frame runs from its ``capture-ts-ns`` header. A frame
without one falls back to the Kafka record timestamp (the default, counted in
``streamfer_deadline_fallbacks_total``) or goes to the dead-letter topic with
reason ``missing_header`` (``frames.missing_capture_ts: dead_letter``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from streamfer.errors import CodecError
from streamfer.models.preprocess import Letterbox, letterbox, letterbox_geometry
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.postprocess import CameraMeta, DetectionPostprocessor
from streamfer.pipeline.processors.base import (
    NO_EVENT_TIME,
    Output,
    Postprocessor,
    Prepared,
    Reject,
    Result,
    accepted,
    reject,
)
from streamfer.streams.codecs import Frame, decode_camera
from streamfer.streams.records import Record, RecordBatch

FLOAT32 = np.dtype(np.float32)


def missing_capture_ts(batch: RecordBatch, row: int) -> Reject:
    """The dead letter of a frame without ``capture-ts-ns`` (``frames.missing_capture_ts``)."""
    return reject(
        batch,
        row,
        "no capture-ts-ns header",
        "missing_header",
        "frames carry their capture time (epoch ns) in capture-ts-ns; "
        "the stream dead-letters frames without",
    )


def with_frame(result: Result | BaseException, meta: CameraMeta) -> Result | BaseException:
    """A camera decision: the result plus its ``frame`` block (a postprocessor's own Output
    keeps its key, headers and extra fields; an error stays the error)."""
    if isinstance(result, BaseException):
        return result
    frame = {
        "seq": meta.frame_seq,
        "capture_ts_ns": meta.capture_ts_ns,
        "width": meta.width,
        "height": meta.height,
    }
    if isinstance(result, Output):
        return result._replace(extra={"frame": frame, **(result.extra or {})})
    return Output(result, {"frame": frame})


def camera_input(
    frame: Frame, size: int, out: np.ndarray | None = None
) -> tuple[np.ndarray, CameraMeta]:
    """The detector input of a decoded frame (written into ``out`` where given, e.g. a
    row of the batch's tensor) and the meta that maps boxes back to it."""
    tensor, lb = letterbox(frame.image, size, out)
    if frame.reduction > 1:  # decoded smaller: boxes map back to the frame's own pixels
        lb = Letterbox(lb.scale / frame.reduction, lb.pad_x, lb.pad_y)
    return tensor, CameraMeta(lb, frame.width, frame.height, frame.frame_seq, frame.capture_ts_ns)


class CameraProcessor:
    """``kind: camera``: frames in, detections (frame pixels) plus a ``frame`` block out."""

    def __init__(
        self,
        stream: StreamConfig,
        labels: Sequence[str],
        input_size: int,
        threads: int,
        input_name: str = "images",
        output_name: str | None = "output0",
        post: Postprocessor | None = None,
        dtype: np.dtype = FLOAT32,
    ) -> None:
        self.limits = stream.limits.codec_limits()
        self.size = input_size
        self.input_name = input_name
        self.dtype = dtype  # the detector's input type: float16 exports get float16
        self.dead_letter_without_ts = stream.frames.missing_capture_ts == "dead_letter"
        self.post: Postprocessor = post or DetectionPostprocessor(
            stream.detection, labels, output_name
        )
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """The size letterbox shrinks a ``width x height`` frame to."""
        _, new_w, new_h = letterbox_geometry(width, height, self.size)
        return new_w, new_h

    def _into(
        self, records: Sequence[Record], feed: np.ndarray, out: list[Any], lo: int, hi: int
    ) -> None:
        """Frames ``lo:hi`` decoded and letterboxed into ``feed[lo:hi]``; ``out[i]`` gets
        each frame's meta, or its CodecError."""
        for i in range(lo, hi):
            try:
                frame = decode_camera(records[i], self.limits, fit=self.fit)
                _, out[i] = camera_input(frame, self.size, feed[i])
            except CodecError as exc:
                out[i] = exc

    def _decode_all(self, records: Sequence[Record]) -> tuple[np.ndarray, list[Any]]:
        n = len(records)
        feed = np.empty((n, 3, self.size, self.size), self.dtype)
        out: list[Any] = [None] * n
        tasks = min(self.threads, n)
        if tasks <= 1:
            self._into(records, feed, out, 0, n)
            return feed, out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
        bounds = [n * k // tasks for k in range(tasks + 1)]
        futures = [
            self._pool.submit(self._into, records, feed, out, lo, hi)
            for lo, hi in itertools.pairwise(bounds)
        ]
        for future in futures:
            future.result()  # waits without the GIL; re-raises what is not a CodecError
        return feed, out

    def prepare(self, batch: RecordBatch) -> Prepared:
        records = list(batch)
        feed, outcomes = self._decode_all(records)
        rows: list[int] = []
        metas: list[CameraMeta] = []
        events: list[int] = []
        rejects: list[Reject] = []
        for i, got in enumerate(outcomes):
            if isinstance(got, CodecError):
                rejects.append(Reject(i, got.reason, got))
                continue
            if got.capture_ts_ns is None and self.dead_letter_without_ts:
                rejects.append(missing_capture_ts(batch, i))
                continue
            rows.append(i)
            metas.append(got)
            events.append(NO_EVENT_TIME if got.capture_ts_ns is None else got.capture_ts_ns)
        if len(rows) < len(records):  # rejects leave holes: keep the accepted rows only
            feed = feed[rows]
        return Prepared(
            batch,
            accepted(rows),
            {self.input_name: feed},
            metas,
            np.asarray(events, dtype=np.int64),
            rejects,
        )

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> list[Result | BaseException]:
        found = self.post.results(outputs, metas)
        return [with_frame(result, m) for result, m in zip(found, metas, strict=True)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # a poll's frames at most
            self._pool = None
