"""What a camera frame is, read from its header bytes before any pixel is decoded.

The GPU path must reject exactly what the CPU codec (``streams.codecs.camera``)
rejects, with the same reason codes, so these checks follow
``decode_camera`` step by step: message size (``empty``, ``too_large``), the
content-type header (``bad_content_type``), the JPEG/PNG header or the raw
shape (``corrupt_image``, ``bad_shape``) and the pixel limit
(``image_too_large``). A decode that fails afterwards is ``corrupt_image`` on
both paths. ``tests/engines/test_gpu_inspect.py`` runs both over the same bad
frames. Header-only checks (``capture-ts-ns``, ``frame-seq``) stay with the
record codec: they are not about pixels.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from streamfer.errors import CodecError
from streams.codecs.camera import JPEG, PNG, RAW_PREFIX, jpeg_size, png_size
from streams.codecs.limits import CodecLimits

FrameKind = Literal["jpeg", "png", "raw"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ENCODED_TYPES = (None, JPEG, PNG, "image/jpg")


class EncodedFrame(NamedTuple):
    """One frame as it arrives: the record value and its ``content-type`` header (raw bytes)."""

    data: bytes
    content_type: bytes | None = None


class FrameInfo(NamedTuple):
    """A frame that passed every check that needs no decode."""

    kind: FrameKind
    width: int
    height: int
    channels: int  # raw frames: 1 or 3; encoded frames decode to 3


def _fail(where: str, problem: str, reason: str, note: str) -> CodecError:
    return CodecError(f"{where} | {problem}. Note: {note}", reason)


def _content_type(raw: bytes | None, where: str) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        raise _fail(
            where, f"content-type header {raw[:40]!r}", "bad_content_type", "expected ASCII"
        ) from None


def _check_pixels(where: str, width: int, height: int, limits: CodecLimits) -> None:
    if width <= 0 or height <= 0:
        raise _fail(where, f"image is {width}x{height}", "corrupt_image", "expected a real size")
    if width * height > limits.max_image_pixels:
        raise _fail(
            where,
            f"image is {width}x{height} ({width * height} pixels)",
            "image_too_large",
            f"frames are limited to {limits.max_image_pixels} pixels",
        )


def _raw_shape(ctype: str, where: str) -> tuple[int, ...]:
    params: dict[str, str] = {}
    for part in ctype.split(";")[1:]:
        name, _, value = part.partition("=")
        params[name.strip()] = value.strip()
    if params.get("dtype") != "uint8":
        raise _fail(
            where,
            f"content-type {ctype!r}",
            "bad_content_type",
            "raw payloads must declare dtype=uint8",
        )
    try:
        shape = tuple(int(x) for x in params.get("shape", "").split(","))
    except ValueError:
        raise _fail(
            where, f"content-type {ctype!r}", "bad_content_type", "expected shape=N,N[,N]"
        ) from None
    if any(d <= 0 for d in shape):
        raise _fail(where, f"shape {shape}", "bad_shape", "dimensions must be positive")
    return shape


def _inspect_raw(frame: EncodedFrame, ctype: str, limits: CodecLimits, where: str) -> FrameInfo:
    shape = _raw_shape(ctype, where)
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise _fail(where, f"raw shape {shape}", "bad_shape", "expected shape=H,W,C with C 1 or 3")
    height, width, channels = shape
    _check_pixels(where, width, height, limits)
    if len(frame.data) != height * width * channels:
        raise _fail(
            where,
            f"raw payload is {len(frame.data)} bytes for shape {shape}",
            "bad_shape",
            f"expected {height * width * channels} bytes",
        )
    return FrameInfo("raw", width, height, channels)


def _inspect_encoded(
    frame: EncodedFrame, ctype: str | None, limits: CodecLimits, where: str
) -> FrameInfo:
    data = frame.data
    if ctype not in _ENCODED_TYPES:
        raise _fail(
            where,
            f"content-type {ctype!r}",
            "bad_content_type",
            f"expected {JPEG}, {PNG} or {RAW_PREFIX};shape=H,W,C;dtype=uint8",
        )
    is_png = data[:8] == _PNG_SIGNATURE
    if ctype is not None and (ctype == PNG) != is_png:
        raise _fail(
            where,
            f"content-type {ctype!r} but the payload starts {data[:8]!r}",
            "bad_content_type",
            "the declared image type must match the bytes",
        )
    size = png_size(data) if is_png else jpeg_size(data)
    if size is None:
        raise _fail(
            where,
            f"no JPEG/PNG header in {len(data)} bytes (starts {data[:8]!r})",
            "corrupt_image",
            "expected an image/jpeg or image/png payload",
        )
    width, height = size
    _check_pixels(where, width, height, limits)
    return FrameInfo("png" if is_png else "jpeg", width, height, 3)


def inspect_frame(frame: EncodedFrame, limits: CodecLimits, where: str) -> FrameInfo:
    """The frame's kind and size, or CodecError with the CPU codec's reason code.

    ``where`` names the frame in the message (``topic[partition]@offset``).
    """
    size = len(frame.data)
    if size == 0:
        raise _fail(where, "empty value", "empty", "expected a camera frame")
    if size > limits.max_message_bytes:
        raise _fail(
            where,
            f"value is {size} bytes",
            "too_large",
            f"a camera frame is limited to {limits.max_message_bytes} bytes",
        )
    ctype = _content_type(frame.content_type, where)
    if ctype is not None and ctype.startswith(RAW_PREFIX):
        return _inspect_raw(frame, ctype, limits, where)
    return _inspect_encoded(frame, ctype, limits, where)


def jpeg_scan_start(data: bytes) -> int | None:
    """Offset of the first start-of-scan marker (FF DA), walking the segments; None if none."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker == 0xDA:
            return i
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def jpeg_is_complete(data: bytes) -> bool:
    """True when an end-of-image marker (FF D9) follows the first scan.

    OpenCV refuses a JPEG whose data ends before its EOI marker (a frame cut
    short in transit), while nvJPEG decodes it and fills the missing blocks;
    checking here keeps both paths' verdict. Inside entropy-coded data an FF is
    always followed by 00 or a restart marker, so FF D9 after the scan start is
    an EOI, never a coincidence (unlike an EXIF thumbnail's, before the scan).
    """
    scan = jpeg_scan_start(data)
    # Searched from the end, where it is (before any trailing padding): O(1) for a whole
    # frame, where a forward search stops at every FF of the scan data (76 us at 1080p).
    return scan is not None and data.rfind(b"\xff\xd9") > scan


def decode_failure(where: str, info: FrameInfo, size: int, got: str) -> CodecError:
    """The ``corrupt_image`` error of a frame whose header passed but whose pixels did not."""
    return _fail(
        where,
        f"image decode gave {got} ({size} bytes)",
        "corrupt_image",
        f"expected a decodable {info.width}x{info.height} image",
    )
