"""Camera frames made ready for the GPU preprocessor: headers checked as the CPU codec checks them.

The GPU path must reject exactly what the CPU codec (``streamfer.streams.codecs.camera``)
rejects, with the same reason codes, so it runs the codec's own header checks
(``frame_info``): message size (``empty``, ``too_large``), the content-type
header (``bad_content_type``), the JPEG/PNG header or the raw shape
(``corrupt_image``, ``bad_shape``) and the pixel limit (``image_too_large``).
A decode that fails afterwards is ``corrupt_image`` on both paths.
``tests/pipeline/test_camera_frames.py`` runs both over the same bad frames.
Header-only checks (``capture-ts-ns``, ``frame-seq``) stay with the record
codec: they are not about pixels.

What passes becomes a :class:`streamfer.engines.gpu.GpuFrame`, the plain input the
preprocessor takes: a complete JPEG, or uint8 pixels (raw frames as they are,
PNGs decoded here on the host, BGR, as the CPU codec decodes them).
"""

from __future__ import annotations

from typing import NamedTuple

from streamfer.engines.gpu import GpuFrame
from streamfer.errors import CodecError
from streamfer.streams.codecs.camera import FrameInfo, decode_png, frame_info, jpeg_segments
from streamfer.streams.codecs.limits import CodecLimits, fail_at

__all__ = ["EncodedFrame", "decode_failure", "gpu_frame", "jpeg_is_complete"]


class EncodedFrame(NamedTuple):
    """One frame as it arrives: the record value and its ``content-type`` header (raw bytes)."""

    data: bytes
    content_type: bytes | None = None


def gpu_frame(frame: EncodedFrame, limits: CodecLimits, where: str) -> GpuFrame:
    """What the GPU preprocessor takes for ``frame``, or the CodecError the CPU path
    would give it: a header reject (the CPU codec's own ``frame_info``, with its reason
    and message), a JPEG cut short, a PNG that does not decode to its header's size
    (``corrupt_image``). ``where`` names the frame (``topic[partition]@offset``)."""
    data = frame.data
    info = frame_info(data, frame.content_type, limits, where)
    if info.kind == "jpeg":
        if not jpeg_is_complete(data):  # the CPU decoder refuses these; nvJPEG fills them in
            raise decode_failure(where, info, len(data), "nothing")
        return GpuFrame(data, "jpeg", info.width, info.height)
    if info.kind == "raw":
        return GpuFrame(data, "raw", info.width, info.height, info.channels)
    image = decode_png(data)  # rare, and decoded on the host by every library
    if image is None or image.shape[:2] != (info.height, info.width):
        got = "nothing" if image is None else f"{image.shape[1]}x{image.shape[0]}"
        raise decode_failure(where, info, len(data), got)
    return GpuFrame(image, "raw", info.width, info.height, 3)


def jpeg_scan_start(data: bytes) -> int | None:
    """Offset of the first start-of-scan marker (FF DA), walking the segments; None if none."""
    return next((i for marker, i, _ in jpeg_segments(data) if marker == 0xDA), None)


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


def decode_failure(where: str, frame: FrameInfo | GpuFrame, size: int, got: str) -> CodecError:
    """The ``corrupt_image`` error of a frame whose header passed but whose pixels did not:
    the decoder gave ``got`` (``nothing``, or the size it found) for ``size`` bytes."""
    return fail_at(
        where,
        f"image decode gave {got} ({size} bytes)",
        "corrupt_image",
        f"expected a decodable {frame.width}x{frame.height} image",
    )
