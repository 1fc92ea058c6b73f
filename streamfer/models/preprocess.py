"""Camera preprocessing: letterbox a BGR frame into the detector's square RGB input."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamfer.errors import CodecError

PAD_VALUE = 114  # gray, as YOLO-family detectors are trained with


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the square input: ``input = frame * scale + pad``."""

    scale: float
    pad_x: int
    pad_y: int


def letterbox_geometry(width: int, height: int, size: int) -> tuple[Letterbox, int, int]:
    """The placement of a ``width x height`` frame in a ``size`` square, and its resized size."""
    scale = min(size / width, size / height)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    return Letterbox(scale, (size - new_w) // 2, (size - new_h) // 2), new_w, new_h


def _resized(image_bgr: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """The frame scaled to fit ``size`` x ``size`` (aspect kept), and its Letterbox."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise CodecError(
            f"letterbox | got {image_bgr.dtype} {tuple(image_bgr.shape)}. "
            "Note: expected a uint8 BGR image of shape (H, W, 3)",
            "bad_shape",
        )
    if size < 8:
        raise CodecError(f"letterbox | size {size}. Note: expected at least 8", "bad_shape")
    height, width = image_bgr.shape[:2]
    lb, new_w, new_h = letterbox_geometry(width, height, size)
    interp = cv2.INTER_AREA if lb.scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(image_bgr, (new_w, new_h), interpolation=interp), lb


def letterbox_uint8(image_bgr: np.ndarray, size: int = 256) -> tuple[np.ndarray, Letterbox]:
    """The letterboxed frame as uint8 RGB ``[size, size, 3]`` (for training and previews)."""
    resized, lb = _resized(image_bgr, size)
    new_h, new_w = resized.shape[:2]
    out = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    out[lb.pad_y : lb.pad_y + new_h, lb.pad_x : lb.pad_x + new_w] = resized[:, :, ::-1]
    return out, lb


def letterbox(
    image_bgr: np.ndarray, size: int = 256, out: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Float ``[3, size, size]`` RGB in 0..1, gray-padded, and its Letterbox.

    The same pixels as ``letterbox_uint8`` times ``float32(1/255)``, bit for bit what
    OpenCV's ``blobFromImage(canvas, 1/255, swapRB=True)`` gives, with less CPU and no
    intermediate array: each BGR plane is scaled straight into its RGB plane of ``out``
    (float32, or another float type rounded from the float32 product), e.g. a row of a
    batch's input tensor.
    """
    resized, lb = _resized(image_bgr, size)
    new_h, new_w = resized.shape[:2]
    canvas = cv2.copyMakeBorder(
        resized, lb.pad_y, size - new_h - lb.pad_y, lb.pad_x, size - new_w - lb.pad_x,
        cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )  # fmt: skip
    if out is None:
        out = np.empty((3, size, size), np.float32)
    elif out.shape != (3, size, size) or out.dtype.kind != "f":
        raise CodecError(
            f"letterbox | out is {out.dtype} {tuple(out.shape)}. "
            f"Note: expected a float array of shape (3, {size}, {size})",
            "bad_shape",
        )
    b, g, r = cv2.split(canvas)
    for plane, channel in enumerate((r, g, b)):
        np.multiply(channel, _INV_255, out=out[plane], dtype=np.float32)
    return out, lb


_INV_255 = np.float32(1.0 / 255.0)  # blobFromImage's factor: the same product for 0..255


def to_input_boxes(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Frame-pixel x1 y1 x2 y2 boxes in input pixels."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * lb.scale
    b[:, 0::2] += lb.pad_x
    b[:, 1::2] += lb.pad_y
    return b


def to_frame_boxes(boxes: np.ndarray, lb: Letterbox, width: int, height: int) -> np.ndarray:
    """Input-pixel x1 y1 x2 y2 boxes back in frame pixels, clipped to the frame."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    b[:, 0::2] = (b[:, 0::2] - lb.pad_x) / lb.scale
    b[:, 1::2] = (b[:, 1::2] - lb.pad_y) / lb.scale
    b[:, 0::2] = np.clip(b[:, 0::2], 0.0, float(width))
    b[:, 1::2] = np.clip(b[:, 1::2], 0.0, float(height))
    return b
