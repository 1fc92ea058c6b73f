"""Record -> model input, per stream kind, in two steps.

``parallel(record)`` decodes and validates (streams' codecs) and does the
heavy, GIL-releasing work (JPEG decode, letterbox; a JPEG larger than the
model input decodes at 1/2, 1/4 or 1/8 of its size where that still covers
the letterboxed size); it runs in a thread pool
and must not touch shared state. ``ordered(decoded)`` runs in consume order in
the engine worker: the fraud featurizer keeps per-card state, so it lives
there. Both raise :class:`~streamfer.errors.CodecError` for bad input.

Deadlines are turned into this process's monotonic clock once, here:
event time (``capture-ts-ns`` header, else the record timestamp) plus the
stream's ``deadline_ms``, shifted by the wall/monotonic offset taken when the
record was polled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pipeline.config import StreamConfig
from pipeline.postprocess import CameraMeta

if TYPE_CHECKING:
    from streams.codecs.camera import Frame


@dataclass(slots=True)
class Prepared:
    """One item ready for the batcher: the model input row and what postprocess needs."""

    tensor: np.ndarray
    meta: Any
    deadline_ns: int | None


class Preprocessor(Protocol):
    input_name: str

    def parallel(self, record: Any) -> Any: ...

    def ordered(self, record: Any, decoded: Any) -> Prepared: ...


def codec_limits(stream: StreamConfig) -> Any:
    """The stream's limits as the codecs' ``CodecLimits``."""
    from streams.codecs import CodecLimits

    lim = stream.limits
    return CodecLimits(
        max_message_bytes=lim.max_message_bytes,
        max_image_pixels=lim.max_image_pixels,
        max_json_bytes=lim.max_json_bytes,
    )


def deadline_ns(record: Any, deadline_ms: float | None, event_ns: int | None = None) -> int | None:
    """Monotonic deadline of ``record``: event time + budget, on this process's clock."""
    if deadline_ms is None:
        return None
    event_wall_ns = event_ns if event_ns is not None else record.timestamp_ms * 1_000_000
    consumed_wall_ns = record.consumed_wall_ms * 1_000_000
    return int(record.consumed_ns + (event_wall_ns - consumed_wall_ns) + deadline_ms * 1e6)


class TransactionPreprocessor:
    input_name = "features"

    def __init__(self, stream: StreamConfig) -> None:
        from models.features import FraudFeaturizer

        self.stream = stream
        self.limits = codec_limits(stream)
        self.featurizer = FraudFeaturizer()

    def parallel(self, record: Any) -> Any:
        from streams.codecs import decode_transaction

        return decode_transaction(record, self.limits)

    def ordered(self, record: Any, decoded: Any) -> Prepared:
        row = np.asarray(self.featurizer.transform(decoded), dtype=np.float32)
        meta = {"tx_id": decoded.get("tx_id")}
        return Prepared(row, meta, deadline_ns(record, self.stream.deadline_ms))


class SensorPreprocessor:
    input_name = "window"

    def __init__(self, stream: StreamConfig) -> None:
        self.stream = stream
        self.limits = codec_limits(stream)

    def parallel(self, record: Any) -> Any:
        from streams.codecs import decode_sensor

        return np.ascontiguousarray(decode_sensor(record, self.limits), dtype=np.float32)

    def ordered(self, record: Any, decoded: Any) -> Prepared:
        return Prepared(decoded, None, deadline_ns(record, self.stream.deadline_ms))


class CameraPreprocessor:
    input_name = "images"

    def __init__(self, stream: StreamConfig, input_size: int) -> None:
        self.stream = stream
        self.limits = codec_limits(stream)
        self.size = input_size

    def parallel(self, record: Any) -> Any:
        from streams.codecs import decode_camera

        return camera_input(decode_camera(record, self.limits, fit=self.fit), self.size)

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """The size letterbox shrinks a ``width x height`` frame to (JPEGs decode at
        1/2, 1/4 or 1/8 when that still covers it: the same input, less decoding)."""
        from models.preprocess import letterbox_geometry

        _, new_w, new_h = letterbox_geometry(width, height, self.size)
        return new_w, new_h

    def ordered(self, record: Any, decoded: Any) -> Prepared:
        tensor, meta = decoded
        return Prepared(
            tensor, meta, deadline_ns(record, self.stream.deadline_ms, meta.capture_ts_ns)
        )


def camera_input(frame: Frame, size: int) -> tuple[np.ndarray, CameraMeta]:
    """The detector input of a decoded frame and the meta that maps boxes back to it."""
    from models.preprocess import Letterbox, letterbox

    tensor, lb = letterbox(frame.image, size)
    if frame.reduction > 1:  # decoded smaller: boxes map back to the frame's own pixels
        lb = Letterbox(lb.scale / frame.reduction, lb.pad_x, lb.pad_y)
    return tensor, CameraMeta(lb, frame.width, frame.height, frame.frame_seq, frame.capture_ts_ns)


def make_preprocessor(
    stream: StreamConfig, metadata: dict[str, str], input_name: str
) -> Preprocessor:
    """The preprocessor of ``stream``; ``metadata`` and ``input_name`` come from the runner."""
    pre: Preprocessor
    if stream.kind == "transaction":
        pre = TransactionPreprocessor(stream)
    elif stream.kind == "sensor":
        pre = SensorPreprocessor(stream)
    else:
        pre = CameraPreprocessor(stream, int(metadata.get("streamfer.input_size", "256")))
    pre.input_name = input_name
    return pre
