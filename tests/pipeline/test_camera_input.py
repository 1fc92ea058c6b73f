"""Camera preprocessing: a reduced JPEG decode gives the same input and maps boxes back."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from streamfer.models.detect import Detection, unletterbox
from streamfer.models.preprocess import letterbox
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.processors.camera import CameraProcessor
from streamfer.streams.codecs import encode_camera
from streamfer.streams.records import Record, RecordBatch

STREAM = StreamConfig(
    name="cams", kind="camera", input_topic="frames", output_topic="out", model="camera"
)


def frame_record(image: np.ndarray, content_type: str = "image/jpeg") -> Record:
    value, headers = encode_camera(
        image, content_type=content_type, quality=95, capture_ts_ns=5, frame_seq=3
    )
    return Record("frames", 0, 1, b"cam-0", value, tuple(headers), 0, 0)


def prepare_one(record: Record) -> tuple[np.ndarray, Any]:
    """The camera processor on a batch of this one record: its input row and meta."""
    prepared = CameraProcessor(STREAM, ["vehicle"], 256, threads=1).prepare(
        RecordBatch.of([record])
    )
    assert prepared.rejects == [] and prepared.metas is not None
    assert prepared.event_ns is not None and prepared.event_ns.tolist() == [5]
    return prepared.feeds["images"][0], prepared.metas[0]


def scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), (21, 21), 7)
    cv2.rectangle(img, (270, 142), (370, 217), (20, 200, 240), -1)
    return img


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png"])
def test_camera_input_matches_a_full_decode_and_keeps_the_frame_geometry(
    content_type: str,
) -> None:
    img = scene()
    tensor, meta = prepare_one(frame_record(img, content_type))
    full, lb = letterbox(img, 256)
    assert tensor.shape == (3, 256, 256) and tensor.dtype == np.float32
    assert np.abs(tensor - full).mean() < 3 / 255  # JPEG at 1/2 vs decoded whole and shrunk
    assert (meta.width, meta.height, meta.frame_seq, meta.capture_ts_ns) == (640, 360, 3, 5)
    assert meta.letterbox.scale == pytest.approx(lb.scale)  # 0.4: frame -> input pixels
    assert (meta.letterbox.pad_x, meta.letterbox.pad_y) == (lb.pad_x, lb.pad_y)


def test_boxes_map_back_to_frame_pixels_after_a_reduced_decode() -> None:
    _, meta = prepare_one(frame_record(scene()))
    found = Detection("vehicle", 0.9, (108.0, 113.0, 148.0, 143.0))  # input pixels
    (back,) = unletterbox([found], meta.letterbox, meta.width, meta.height)
    assert back.box == pytest.approx((270, 142.5, 370, 217.5), abs=0.5)
