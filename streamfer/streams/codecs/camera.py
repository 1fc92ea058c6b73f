"""Camera frames: JPEG/PNG bytes or raw uint8 pixels, dimensions checked before decode."""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from streamfer.errors import CodecError
from streamfer.streams.codecs.limits import (
    CodecLimits,
    check_size,
    content_type_of,
    fail,
    fail_at,
    int_header,
    parse_raw_type_at,
)
from streamfer.streams.records import Record

JPEG = "image/jpeg"
PNG = "image/png"
RAW_PREFIX = "application/x-raw"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow's own decompression-bomb warning: the pixel limit is checked before decoding
# (limits.max_image_pixels), and the warning would go to stderr.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Start-of-frame markers carry the image size (all but DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class Frame(NamedTuple):
    """A decoded camera frame: BGR uint8 HxWx3 plus the producer's headers.

    ``reduction`` > 1: a JPEG decoded at 1/reduction of its size (``decode_camera``'s
    ``fit``); ``width``/``height`` are always the frame's own size.
    """

    image: np.ndarray
    capture_ts_ns: int | None
    frame_seq: int | None
    width: int
    height: int
    reduction: int


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """``(marker, offset, length)`` of each JPEG segment with a length field after the
    start-of-image marker, in order, until the data ends or stops looking like a JPEG."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        (length,) = struct.unpack_from(">H", data, i + 2)
        if length < 2:
            return
        yield marker, i, length
        i += 2 + length


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the JPEG start-of-frame segment, or None if there is none."""
    if data[:2] != b"\xff\xd8":
        return None
    for marker, i, _ in jpeg_segments(data):
        if marker in _SOF_MARKERS:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        if marker == 0xDA:  # scan data before any frame header
            return None
    return None


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the PNG IHDR chunk, or None."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


# JPEG decode reductions: libjpeg scales the DCT, so a reduced decode does less work
_REDUCTIONS = (2, 4, 8)


def jpeg_reduction(width: int, height: int, fit: tuple[int, int]) -> int:
    """The largest JPEG decode reduction (1, 2, 4 or 8) whose image still covers ``fit``
    (width, height): what is shrunk to ``fit`` afterwards loses nothing it would keep."""
    best = 1
    for factor in _REDUCTIONS:
        if -(-width // factor) >= fit[0] and -(-height // factor) >= fit[1]:
            best = factor
    return best


FrameKind = Literal["jpeg", "png", "raw"]
_ENCODED_TYPES = (None, JPEG, PNG, "image/jpg")


class FrameInfo(NamedTuple):
    """What a frame's header bytes say, before any pixel is decoded."""

    kind: FrameKind
    width: int
    height: int
    channels: int  # raw frames: 1 or 3; encoded frames decode to 3
    raw_shape: tuple[int, ...] = ()


def frame_info(
    data: bytes, content_type_raw: bytes | None, limits: CodecLimits, where: str
) -> FrameInfo:
    """Every check a frame passes before decoding, with its reason on failure: size
    (``empty``, ``too_large``), content type (``bad_content_type``), the JPEG/PNG header
    or the raw shape (``corrupt_image``, ``bad_shape``), the pixel limit
    (``image_too_large``). The CPU decoder and the GPU path both start here."""
    size = len(data)
    if size == 0:
        raise fail_at(where, "empty value", "empty", "expected a camera frame")
    if size > limits.max_message_bytes:
        raise fail_at(
            where,
            f"value is {size} bytes",
            "too_large",
            f"a camera frame is limited to {limits.max_message_bytes} bytes",
        )
    ctype = content_type_of(content_type_raw, where)
    if ctype is not None and ctype.startswith(RAW_PREFIX):
        return _raw_info(data, ctype, limits, where)
    if ctype not in _ENCODED_TYPES:
        raise fail_at(
            where,
            f"content-type {ctype!r}",
            "bad_content_type",
            f"expected {JPEG}, {PNG} or {RAW_PREFIX};shape=H,W,C;dtype=uint8",
        )
    is_png = data[:8] == _PNG_SIGNATURE
    if ctype is not None and (ctype == PNG) != is_png:
        raise fail_at(
            where,
            f"content-type {ctype!r} but the payload starts {data[:8]!r}",
            "bad_content_type",
            "the declared image type must match the bytes",
        )
    found = png_size(data) if is_png else jpeg_size(data)
    if found is None:
        raise fail_at(
            where,
            f"no JPEG/PNG header in {size} bytes (starts {data[:8]!r})",
            "corrupt_image",
            "expected an image/jpeg or image/png payload",
        )
    width, height = found
    _check_pixels(where, width, height, limits)
    return FrameInfo("png" if is_png else "jpeg", width, height, 3)


def _raw_info(data: bytes, ctype: str, limits: CodecLimits, where: str) -> FrameInfo:
    shape = parse_raw_type_at(where, ctype, "uint8")
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise fail_at(
            where, f"raw shape {shape}", "bad_shape", "expected shape=H,W,C with C 1 or 3"
        )
    height, width, channels = shape
    _check_pixels(where, width, height, limits)
    if len(data) != height * width * channels:
        raise fail_at(
            where,
            f"raw payload is {len(data)} bytes for shape {shape}",
            "bad_shape",
            f"expected {height * width * channels} bytes",
        )
    return FrameInfo("raw", width, height, channels, shape)


def _check_pixels(where: str, width: int, height: int, limits: CodecLimits) -> None:
    if width <= 0 or height <= 0:
        raise fail_at(where, f"image is {width}x{height}", "corrupt_image", "expected a real size")
    if width * height > limits.max_image_pixels:
        raise fail_at(
            where,
            f"image is {width}x{height} ({width * height} pixels)",
            "image_too_large",
            f"frames are limited to {limits.max_image_pixels} pixels",
        )


def decode_camera(
    record: Record, limits: CodecLimits, fit: Callable[[int, int], tuple[int, int]] | None = None
) -> Frame:
    """Decode one frame record; CodecError with a reason on every failure.

    ``fit(width, height)`` -> the size the caller will shrink the frame to: a JPEG
    is then decoded at the largest reduction that still covers it (see Frame).
    """
    value = check_size(record, limits.max_message_bytes, "a camera frame")
    info = frame_info(value, record.header("content-type"), limits, record.coords)
    width, height, reduction = info.width, info.height, 1
    image: np.ndarray
    if info.kind == "raw":
        image = np.frombuffer(value, np.uint8).reshape(info.raw_shape)
        if info.channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    else:
        if info.kind == "jpeg" and fit is not None:
            reduction = jpeg_reduction(width, height, fit(width, height))
        image = _decode_encoded(record, value, info, reduction)
    return Frame(
        image,
        int_header(record, "capture-ts-ns"),
        int_header(record, "frame-seq"),
        width,
        height,
        reduction,
    )


def _decode_encoded(record: Record, data: bytes, info: FrameInfo, reduction: int) -> np.ndarray:
    expected = (-(-info.height // reduction), -(-info.width // reduction))
    image = decode_png(data) if info.kind == "png" else _jpeg(record, data, reduction, expected)
    if image is None or image.shape[:2] != expected:
        got = "nothing" if image is None else f"{image.shape[1]}x{image.shape[0]}"
        at = f" (decoded at 1/{reduction}: {expected[1]}x{expected[0]})" if reduction > 1 else ""
        raise fail(
            record,
            f"image decode gave {got} ({len(data)} bytes)",
            "corrupt_image",
            f"expected a decodable {info.width}x{info.height} image{at}",
        )
    return image


# Converts what Pillow gives for each PNG mode into BGR, as OpenCV's IMREAD_COLOR would
# (alpha dropped, gray repeated, 16-bit samples shifted down to 8).
_TO_BGR = {"RGB": cv2.COLOR_RGB2BGR, "RGBA": cv2.COLOR_RGBA2BGR, "L": cv2.COLOR_GRAY2BGR}
_16BIT_GRAY = frozenset({"I;16", "I;16B", "I;16L"})


def decode_png(data: bytes) -> np.ndarray | None:
    """BGR uint8 HxWx3 of a PNG, or None where it does not decode.

    Pillow rather than OpenCV: the libpng inside OpenCV prints its errors and
    warnings ("libpng error: IDAT: incorrect data check") straight to stderr, a line
    per bad frame that no logging setting holds back; Pillow raises instead. Callers
    check the pixel count from the IHDR before this (a decompression bomb is refused
    as ``image_too_large`` before any byte is inflated).
    """
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as png:
            png.load()
            im: Image.Image = png
            if im.mode in _16BIT_GRAY:
                gray = (np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8)
                return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
            if im.mode not in _TO_BGR:  # palette, gray+alpha, 1-bit, 32-bit gray
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            return cv2.cvtColor(np.asarray(im), _TO_BGR[im.mode])
    except Exception:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad data
        return None


def _jpeg(record: Record, data: bytes, reduction: int, size: tuple[int, int]) -> np.ndarray:
    """Strict libjpeg-turbo decode at 1/``reduction`` (DCT scaling): corrupt or truncated
    data is an error, not a warning on stderr and a half-gray frame."""
    try:
        return simplejpeg.decode_jpeg(  # type: ignore[no-any-return]
            data, colorspace="BGR", min_factor=reduction, min_height=size[0], min_width=size[1]
        )
    except ValueError as exc:
        raise fail(
            record,
            f"JPEG decode failed ({exc}; {len(data)} bytes)",
            "corrupt_image",
            "expected a complete image/jpeg payload",
        ) from None


def encode_camera(
    image: np.ndarray,
    *,
    content_type: str = JPEG,
    quality: int = 90,
    capture_ts_ns: int | None = None,
    frame_seq: int | None = None,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Value bytes and headers for one BGR uint8 frame, as ``decode_camera`` reads them."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise CodecError(
            f"encode_camera | got {image.dtype} array of shape {image.shape}. "
            "Note: expected uint8 HxWx3 (BGR) or HxWx1",
            "bad_shape",
        )
    if content_type == JPEG:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        value = buf.tobytes()
    elif content_type == PNG:
        ok, buf = cv2.imencode(".png", image)
        value = buf.tobytes()
    elif content_type == RAW_PREFIX:
        ok, value = True, np.ascontiguousarray(image).tobytes()
        h, w, c = image.shape
        content_type = f"{RAW_PREFIX};shape={h},{w},{c};dtype=uint8"
    else:
        raise CodecError(
            f"encode_camera | content type {content_type!r}. "
            f"Note: expected {JPEG}, {PNG} or {RAW_PREFIX}",
            "bad_content_type",
        )
    if not ok:
        raise CodecError(f"encode_camera | {content_type} encode failed", "corrupt_image")
    headers = [("content-type", content_type.encode())]
    if capture_ts_ns is not None:
        headers.append(("capture-ts-ns", str(capture_ts_ns).encode()))
    if frame_seq is not None:
        headers.append(("frame-seq", str(frame_seq).encode()))
    return value, headers
