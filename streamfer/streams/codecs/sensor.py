"""Sensor windows: JSON rows or raw little-endian float32 with the shape in the header."""

from __future__ import annotations

import json

import numpy as np

from streamfer.errors import CodecError
from streamfer.streams.codecs.limits import (
    CodecLimits,
    check_size,
    content_type,
    fail,
    json_failure,
    parse_raw_type,
)
from streamfer.streams.records import Record

JSON = "application/json"
RAW_PREFIX = "application/x-raw"
_LE_F32 = np.dtype("<f4")
_F32_MAX = float(np.finfo(np.float32).max)


def decode_sensor(record: Record, limits: CodecLimits) -> np.ndarray:
    """float32 [rows, channels] window (``limits.sensor_shape``); CodecError otherwise.

    JSON may be an array of rows or an object with a ``window`` array of rows.
    Without a content-type header the payload is taken as JSON.
    """
    ctype = content_type(record)
    if ctype is not None and ctype.startswith(RAW_PREFIX):
        return _decode_raw(record, ctype, limits)
    if ctype not in (None, JSON):
        raise fail(
            record,
            f"content-type {ctype!r}",
            "bad_content_type",
            f"expected {JSON} or {RAW_PREFIX};shape=R,C;dtype=float32",
        )
    value = check_size(record, limits.max_json_bytes, "a JSON sensor window")
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise json_failure(record, exc, "a JSON window") from None
    rows = doc.get("window") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise fail(
            record, f"JSON {type(doc).__name__}", "bad_json", "expected [[...], ...] or {window}"
        )
    try:
        # float64 first: a cast straight to float32 turns 1e39 into inf with a
        # RuntimeWarning on stderr; the range is checked below instead
        wide = np.asarray(rows, dtype=np.float64)
    except OverflowError:
        raise fail(
            record, "a sample is beyond float range", "number_out_of_range", _expect(limits)
        ) from None
    except (TypeError, ValueError):
        raise fail(
            record, "window rows are not all numbers", "bad_shape", _expect(limits)
        ) from None
    if wide.shape != limits.sensor_shape:
        raise fail(record, f"window shape {wide.shape}", "bad_shape", _expect(limits))
    if (np.abs(wide) > _F32_MAX).any():
        big = wide[np.abs(wide) > _F32_MAX].flat[0]
        raise fail(
            record, f"sample {big!r} is beyond float32 range", "number_out_of_range",
            _expect(limits),
        )  # fmt: skip
    return _checked(record, wide.astype(np.float32), limits)


def _decode_raw(record: Record, ctype: str, limits: CodecLimits) -> np.ndarray:
    value = check_size(record, limits.max_message_bytes, "a raw sensor window")
    shape = parse_raw_type(record, ctype, "float32")
    if shape != limits.sensor_shape:
        raise fail(record, f"declared shape {shape}", "bad_shape", _expect(limits))
    expected = shape[0] * shape[1] * 4
    if len(value) != expected:
        raise fail(
            record,
            f"raw payload is {len(value)} bytes",
            "bad_shape",
            f"shape {shape} float32 is {expected} bytes",
        )
    window = np.frombuffer(value, _LE_F32).reshape(shape).astype(np.float32)
    return _checked(record, window, limits)


def _expect(limits: CodecLimits) -> str:
    rows, cols = limits.sensor_shape
    return f"expected {rows} rows of {cols} numbers"


def _checked(record: Record, window: np.ndarray, limits: CodecLimits) -> np.ndarray:
    if window.shape != limits.sensor_shape:
        raise fail(record, f"window shape {window.shape}", "bad_shape", _expect(limits))
    if not np.isfinite(window).all():
        raise fail(record, "window holds NaN or infinity", "non_finite", "expected finite samples")
    return window


def encode_sensor(
    window: np.ndarray, *, fmt: str = "raw", extra: dict[str, object] | None = None
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Value and headers for one window: ``fmt`` "raw" (float32 LE) or "json"."""
    arr = np.asarray(window, dtype=_LE_F32)
    if arr.ndim != 2:
        raise CodecError(
            f"encode_sensor | got shape {arr.shape}. Note: expected [rows, channels]", "bad_shape"
        )
    if fmt == "raw":
        rows, cols = arr.shape
        ctype = f"{RAW_PREFIX};shape={rows},{cols};dtype=float32"
        return arr.tobytes(), [("content-type", ctype.encode())]
    if fmt == "json":
        doc = {**(extra or {}), "window": arr.tolist()}
        return json.dumps(doc, separators=(",", ":")).encode(), [("content-type", JSON.encode())]
    raise CodecError(f"encode_sensor | format {fmt!r}. Note: expected raw or json", "bad_json")
