"""Camera batches: threads decode and letterbox a poll's frames into one input tensor.

The tensor must hold, bit for bit, what one ``decode_camera`` + ``letterbox`` per frame
gives (the input before frames were decoded straight into their rows), rejects keep
their codec reasons and rows, and the pool ends with ``close()``.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from streamfer.errors import CodecError
from streamfer.models.preprocess import PAD_VALUE, letterbox_geometry
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.processors.camera import CameraProcessor
from streamfer.streams.codecs import decode_camera, encode_camera
from streamfer.streams.records import Record, RecordBatch

STREAM = StreamConfig(
    name="cams", kind="camera", input_topic="frames", output_topic="out", model="camera"
)
SIZE = 256


def image(seed: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (9, 9), 3)
    return blurred.reshape(height, width, channels)


def record(offset: int, value: bytes, headers: list[tuple[str, bytes]]) -> Record:
    return Record("frames", 0, offset, b"cam", value, tuple(headers), 0, 0)


def mixed_frames() -> list[Record]:
    """JPEG (reduced and whole), PNG, raw BGR and gray, each size, and bad frames between."""
    good = [
        encode_camera(image(1, 360, 640), capture_ts_ns=11, frame_seq=1),
        encode_camera(image(2, 200, 300), content_type="image/png", capture_ts_ns=12),
        encode_camera(image(3, 120, 90), content_type="application/x-raw", capture_ts_ns=13),
        encode_camera(image(4, 64, 80, 1), content_type="application/x-raw", capture_ts_ns=14),
        encode_camera(image(5, 1080, 1920), quality=80, capture_ts_ns=15),
        encode_camera(image(6, 256, 256), capture_ts_ns=16),
    ]
    jpeg, headers = good[0]
    bad = {
        1: (jpeg[: len(jpeg) // 3], headers),  # truncated: corrupt_image
        4: (b"not an image at all", [("content-type", b"image/jpeg")]),  # corrupt_image
        6: (b"\x00" * 10, [("content-type", b"application/x-raw;shape=2,2,3;dtype=uint8")]),
        8: (jpeg, [("content-type", b"text/plain")]),  # bad_content_type
    }
    out: list[Record] = []
    for value, hdrs in good:
        while len(out) in bad:
            out.append(record(len(out), *bad[len(out)]))
        out.append(record(len(out), value, hdrs))
    return out


def blob_letterbox(image_bgr: np.ndarray) -> np.ndarray:
    """The letterbox as it was built before: one ``blobFromImage`` pass per frame."""
    lb, new_w, new_h = letterbox_geometry(image_bgr.shape[1], image_bgr.shape[0], SIZE)
    interp = cv2.INTER_AREA if lb.scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=interp)
    canvas = cv2.copyMakeBorder(
        resized, lb.pad_y, SIZE - new_h - lb.pad_y, lb.pad_x, SIZE - new_w - lb.pad_x,
        cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )  # fmt: skip
    return np.asarray(cv2.dnn.blobFromImage(canvas, 1.0 / 255.0, swapRB=True)[0])


def reference(records: list[Record], proc: CameraProcessor) -> tuple[np.ndarray, list[int]]:
    """One frame at a time, then stacked: the input as it was built before."""
    rows, tensors = [], []
    for i, rec in enumerate(records):
        try:
            frame = decode_camera(rec, proc.limits, fit=proc.fit)
        except CodecError:
            continue
        rows.append(i)
        tensors.append(blob_letterbox(frame.image))
    return np.stack(tensors), rows


@pytest.mark.parametrize("threads", [1, 2, 3, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_the_batch_tensor_is_bit_identical_to_one_frame_at_a_time(
    threads: int, dtype: type
) -> None:
    records = mixed_frames()
    proc = CameraProcessor(STREAM, [], SIZE, threads=threads, dtype=np.dtype(dtype))
    try:
        prepared = proc.prepare(RecordBatch.of(records))
    finally:
        proc.close()
    expected, rows = reference(records, proc)
    feed = prepared.feeds["images"]
    assert prepared.rows.tolist() == rows
    assert feed.dtype == np.dtype(dtype) and feed.shape == (len(rows), 3, SIZE, SIZE)
    assert np.array_equal(feed, expected.astype(dtype), equal_nan=False)
    assert [m.capture_ts_ns for m in prepared.metas] == [11, 12, 13, 14, 15, 16]
    assert prepared.event_ns is not None and prepared.event_ns.tolist() == [11, 12, 13, 14, 15, 16]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_rejects_keep_their_rows_and_codec_reasons(threads: int) -> None:
    proc = CameraProcessor(STREAM, [], SIZE, threads=threads)
    try:
        prepared = proc.prepare(RecordBatch.of(mixed_frames()))
    finally:
        proc.close()
    got = [(r.row, r.reason) for r in prepared.rejects]
    expected = []  # what decode_camera says of each bad frame, message included
    for i, rec in enumerate(mixed_frames()):
        try:
            decode_camera(rec, proc.limits, fit=proc.fit)
        except CodecError as exc:
            expected.append((i, exc.reason, str(exc)))
    assert [(r.row, r.reason, str(r.error)) for r in prepared.rejects] == expected
    assert all(isinstance(r.error, CodecError) for r in prepared.rejects)
    assert got == [
        (1, "corrupt_image"),
        (4, "corrupt_image"),
        (6, "bad_shape"),
        (8, "bad_content_type"),
    ]


def test_a_poll_of_rejects_only_gives_an_empty_feed() -> None:
    proc = CameraProcessor(STREAM, [], SIZE, threads=2)
    try:
        prepared = proc.prepare(RecordBatch.of([mixed_frames()[1], mixed_frames()[4]]))
    finally:
        proc.close()
    assert prepared.feeds["images"].shape == (0, 3, SIZE, SIZE)
    assert [r.reason for r in prepared.rejects] == ["corrupt_image", "corrupt_image"]


def test_close_ends_the_decode_threads() -> None:
    proc = CameraProcessor(STREAM, [], SIZE, threads=3)
    proc.prepare(RecordBatch.of(mixed_frames()))
    assert any(t.name.startswith("decode") for t in threading.enumerate())
    proc.close()
    assert not any(t.name.startswith("decode") and t.is_alive() for t in threading.enumerate())
