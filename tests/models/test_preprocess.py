"""Letterboxing into the detector input and back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfer.errors import CodecError
from streamfer.models.detect import Detection, unletterbox
from streamfer.models.preprocess import (
    PAD_VALUE,
    letterbox,
    letterbox_geometry,
    to_frame_boxes,
    to_input_boxes,
)


def test_letterbox_shape_range_and_padding() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[..., 2] = 255  # pure red in BGR
    x, lb = letterbox(frame, 256)
    assert x.shape == (3, 256, 256) and x.dtype == np.float32
    assert lb.scale == pytest.approx(0.4) and lb.pad_x == 0 and lb.pad_y == 56
    assert x[0, 128, 128] == pytest.approx(1.0) and x[2, 128, 128] == 0.0  # RGB order
    assert x[:, 0, 0] == pytest.approx(np.full(3, PAD_VALUE / 255.0))
    assert x[:, 255, 255] == pytest.approx(np.full(3, PAD_VALUE / 255.0))


def test_portrait_frames_pad_the_sides() -> None:
    _, lb = letterbox(np.zeros((400, 200, 3), np.uint8), 256)
    assert lb.pad_y == 0 and lb.pad_x == 64


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(32, 1920),
    h=st.integers(32, 1080),
    fx=st.floats(0.0, 0.9),
    fy=st.floats(0.0, 0.9),
    fw=st.floats(0.05, 0.1),
)
def test_box_round_trip(w: int, h: int, fx: float, fy: float, fw: float) -> None:
    _, lb = letterbox(np.zeros((h, w, 3), np.uint8), 256)
    box = np.array([[fx * w, fy * h, (fx + fw) * w, (fy + fw) * h]], np.float32)
    back = to_frame_boxes(to_input_boxes(box, lb), lb, w, h)
    assert np.allclose(back, box, atol=1e-2 * max(w, h) / 256)
    x1, y1, x2, y2 = (float(v) for v in to_input_boxes(box, lb)[0])
    dets = unletterbox([Detection("vehicle", 0.9, (x1, y1, x2, y2))], lb, w, h)
    assert np.allclose(dets[0].box, box[0], atol=1e-2 * max(w, h) / 256)


def test_unletterbox_clips_and_drops_padding_only_boxes() -> None:
    _, lb = letterbox(np.zeros((360, 640, 3), np.uint8), 256)
    inside = Detection("sign", 0.8, (-10.0, 40.0, 30.0, 80.0))
    in_pad = Detection("sign", 0.7, (10.0, 0.0, 30.0, 50.0))  # entirely above the frame
    out = unletterbox([inside, in_pad], lb, 640, 360)
    assert len(out) == 1
    assert out[0].box[0] == 0.0 and out[0].box[1] == 0.0


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((9, 9, 3))]
)
def test_bad_images_raise_codec_error(bad: np.ndarray) -> None:
    with pytest.raises(CodecError, match="letterbox") as err:
        letterbox(bad)
    assert err.value.reason == "bad_shape"


@pytest.mark.parametrize(("width", "height"), [(640, 360), (320, 180), (100, 300), (256, 256)])
def test_float_letterbox_is_the_uint8_letterbox_scaled(width: int, height: int) -> None:
    from streamfer.models.preprocess import letterbox, letterbox_uint8

    image = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    chw, lb = letterbox(image, 256)
    rgb, lb8 = letterbox_uint8(image, 256)
    assert lb == lb8 and chw.dtype == np.float32 and chw.shape == (3, 256, 256)
    want = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255)
    assert np.array_equal(chw, want)


def blob_input(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """The letterbox input as OpenCV's blobFromImage builds it (the former implementation)."""
    lb, new_w, new_h = letterbox_geometry(image_bgr.shape[1], image_bgr.shape[0], size)
    interp = cv2.INTER_AREA if lb.scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=interp)
    canvas = cv2.copyMakeBorder(
        resized, lb.pad_y, size - new_h - lb.pad_y, lb.pad_x, size - new_w - lb.pad_x,
        cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )  # fmt: skip
    return np.asarray(cv2.dnn.blobFromImage(canvas, 1.0 / 255.0, swapRB=True)[0])


@pytest.mark.parametrize(("h", "w", "size"), [(16, 16, 16), (360, 640, 256), (300, 200, 64),
                                              (1080, 1920, 640), (50, 70, 256)])  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_letterbox_is_bit_identical_to_blob_from_image(h: int, w: int, size: int,
                                                       dtype: type) -> None:  # fmt: skip
    rng = np.random.default_rng(h * w)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image.reshape(-1)[:768] = np.arange(768) % 256  # every byte value, in every channel
    expected = blob_input(image, size).astype(dtype)
    out = np.full((3, size, size), np.nan, dtype)  # nothing of it may be left unwritten
    tensor, _ = letterbox(image, size, out)
    assert tensor is out
    assert np.array_equal(out, expected)
    assert np.array_equal(letterbox(image, size)[0], blob_input(image, size))


def test_letterbox_refuses_an_out_of_the_wrong_shape() -> None:
    with pytest.raises(CodecError, match=r"letterbox \| out is float32 \(3, 32, 32\)"):
        letterbox(np.zeros((10, 10, 3), np.uint8), 16, np.empty((3, 32, 32), np.float32))
