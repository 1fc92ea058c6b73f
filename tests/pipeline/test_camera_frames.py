"""The GPU path rejects what the CPU codec rejects, with the same reason and message,
before anything reaches the GPU preprocessor (``processors.camera_frames``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfer.engines.gpu import GpuFrame
from streamfer.errors import CodecError
from streamfer.pipeline.processors.camera_frames import EncodedFrame, gpu_frame, jpeg_is_complete
from streamfer.streams.codecs import CodecLimits, decode_camera, encode_camera
from streamfer.streams.codecs.camera import frame_info
from streamfer.streams.records import Record

LIMITS = CodecLimits(max_message_bytes=64_000, max_image_pixels=100 * 100)
RAW = "application/x-raw;shape={};dtype={}"


def _image(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(h * 1000 + w).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _jpeg(h: int, w: int) -> bytes:
    return encode_camera(_image(h, w))[0]


def _png(h: int, w: int) -> bytes:
    return encode_camera(_image(h, w), content_type="image/png")[0]


def _record(data: bytes, ctype: bytes | None) -> Record:
    headers = (("content-type", ctype),) if ctype is not None else ()
    return Record("camera.frames", 3, 1042, b"cam-1", data, headers, 0, 0)


def _cpu(data: bytes, ctype: bytes | None) -> CodecError | None:
    try:
        decode_camera(_record(data, ctype), LIMITS)
    except CodecError as exc:
        return exc
    return None


def _gpu(data: bytes, ctype: bytes | None) -> CodecError | tuple[str, int, int, int]:
    """What the GPU path makes of a frame before the GPU: an error, or what it hands over."""
    try:
        frame = gpu_frame(EncodedFrame(data, ctype), LIMITS, _record(data, ctype).coords)
    except CodecError as exc:
        return exc
    return frame.kind, frame.width, frame.height, frame.channels


BAD = [
    (b"", None, "empty"),
    (b"\xff\xd8" + b"\x00" * 64_000, None, "too_large"),
    (b"\x00" * 100, None, "corrupt_image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", None, "corrupt_image"),
    (b"x" * 10, b"text/plain", "bad_content_type"),
    (b"x" * 10, b"image/\xff", "bad_content_type"),
    (_jpeg(8, 8), b"image/png", "bad_content_type"),
    (_png(8, 8), b"image/jpeg", "bad_content_type"),
    (_jpeg(101, 100), None, "image_too_large"),
    (_png(100, 101), b"image/png", "image_too_large"),
    (b"\x00" * 11, RAW.format("2,2,3", "uint8").encode(), "bad_shape"),
    (b"\x00" * 12, RAW.format("2,2,3", "f4").encode(), "bad_content_type"),
    (b"\x00" * 8, RAW.format("2,2,2", "uint8").encode(), "bad_shape"),
    (b"\x00" * 12, RAW.format("2,x", "uint8").encode(), "bad_content_type"),
    (b"\x00" * 12, RAW.format("2,0,3", "uint8").encode(), "bad_shape"),
    (b"\x00" * 12, RAW.format("2,2", "uint8").encode(), "bad_shape"),
    (b"\x00" * 3 * 101 * 100, RAW.format("101,100,3", "uint8").encode(), "image_too_large"),
]


@pytest.mark.parametrize(("data", "ctype", "reason"), BAD)
def test_header_rejects_match_the_cpu_codec(data: bytes, ctype: bytes | None, reason: str) -> None:
    cpu, gpu = _cpu(data, ctype), _gpu(data, ctype)
    assert isinstance(cpu, CodecError) and cpu.reason == reason
    assert isinstance(gpu, CodecError)
    assert (gpu.reason, str(gpu)) == (cpu.reason, str(cpu))


@pytest.mark.parametrize(
    ("data", "ctype", "handed"),
    [
        (_jpeg(36, 64), None, ("jpeg", 64, 36, 3)),
        (_jpeg(36, 64), b"image/jpg", ("jpeg", 64, 36, 3)),
        (_png(20, 30), b" IMAGE/PNG ", ("raw", 30, 20, 3)),  # decoded on the host
        (b"\x00" * 24, RAW.format("2,4,3", "uint8").encode(), ("raw", 4, 2, 3)),
        (b"\x00" * 8, RAW.format("2,4,1", "uint8").encode(), ("raw", 4, 2, 1)),
    ],
)
def test_good_frames_go_to_the_gpu_with_their_header_size(
    data: bytes, ctype: bytes | None, handed: tuple[str, int, int, int]
) -> None:
    assert _cpu(data, ctype) is None
    assert _gpu(data, ctype) == handed


def test_a_truncated_jpeg_passes_the_header_and_is_refused_before_the_gpu() -> None:
    """Its header is intact: only the decoder can tell on the CPU path, and nvJPEG would
    not (it fills the gap), so the GPU path refuses it first (corrupt_image on both)."""
    data = _jpeg(64, 64)[:300]
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None
    assert frame_info(data, None, LIMITS, "w")[:3] == ("jpeg", 64, 64)
    gpu, cpu = _gpu(data, None), _cpu(data, None)
    assert isinstance(gpu, CodecError) and gpu.reason == "corrupt_image"
    assert cpu is not None and cpu.reason == "corrupt_image"


@given(
    st.binary(max_size=300),
    st.sampled_from([None, b"image/jpeg", b"image/png", b"application/x-raw;shape=4,4,3"]),
)
@settings(max_examples=300, deadline=None)
def test_any_reject_before_decode_is_the_cpu_codecs(data: bytes, ctype: bytes | None) -> None:
    """Where the GPU path rejects before the GPU, the CPU codec rejects alike (with the
    same message at the header, the same reason at decode); where it passes, the CPU codec
    either decodes or finds the pixels corrupt."""
    cpu, gpu = _cpu(data, ctype), _gpu(data, ctype)
    if isinstance(gpu, CodecError):
        assert cpu is not None and gpu.reason == cpu.reason
        assert "image decode gave" in str(gpu) or str(gpu) == str(cpu)
    else:
        assert cpu is None or cpu.reason == "corrupt_image"


def _opencv_decodes(data: bytes) -> bool:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def test_a_jpeg_cut_anywhere_is_incomplete_as_opencv_finds_it() -> None:
    """nvJPEG decodes a truncated JPEG (filling the gap); OpenCV refuses it: the GPU path
    rejects it before decoding, with the CPU path's verdict."""
    data = encode_camera(_image(48, 64))[0]
    assert jpeg_is_complete(data) and _opencv_decodes(data)
    for cut in range(len(data) // 2, len(data), max(1, len(data) // 40)):
        assert jpeg_is_complete(data[:cut]) == _opencv_decodes(data[:cut]) is False, cut
    for tail in (b"\x00" * 10, b"abc"):
        assert jpeg_is_complete(data + tail) and _opencv_decodes(data + tail)


def test_an_eoi_before_the_scan_does_not_count() -> None:
    """An EXIF thumbnail carries its own FF D9 before the frame's scan."""
    data = encode_camera(_image(48, 64))[0]
    thumb = b"Exif\x00\x00" + b"\xff\xd8" + b"\x11" * 20 + b"\xff\xd9"
    app1 = b"\xff\xe1" + (len(thumb) + 2).to_bytes(2, "big") + thumb
    with_thumb = data[:2] + app1 + data[2:]
    assert jpeg_is_complete(with_thumb) and _opencv_decodes(with_thumb)
    cut = with_thumb[: len(with_thumb) - 40]
    assert not jpeg_is_complete(cut) and not _opencv_decodes(cut)


def _where(data: bytes, ctype: bytes | None) -> str:
    return _record(data, ctype).coords


def test_what_the_gpu_preprocessor_is_handed() -> None:
    """JPEGs go as they are, raw frames as their pixels, PNGs decoded as the CPU codec
    decodes them: the preprocessor gets plain values, checked here."""
    jpeg, png = _jpeg(36, 64), _png(20, 30)
    raw = RAW.format("2,4,1", "uint8").encode()
    assert gpu_frame(EncodedFrame(jpeg), LIMITS, "w") == GpuFrame(jpeg, "jpeg", 64, 36)
    assert gpu_frame(EncodedFrame(b"\x07" * 8, raw), LIMITS, "w") == GpuFrame(
        b"\x07" * 8, "raw", 4, 2, 1
    )
    got = gpu_frame(EncodedFrame(png, b"image/png"), LIMITS, "w")
    assert got[1:] == ("raw", 30, 20, 3)
    cpu = decode_camera(_record(png, b"image/png"), LIMITS).image
    assert isinstance(got.data, np.ndarray) and np.array_equal(got.data, cpu)


@pytest.mark.parametrize(
    "data",
    [_jpeg(64, 64)[:300], _png(20, 30)[:-40]],
    ids=["jpeg cut short", "png cut short"],
)
def test_frames_cut_short_are_corrupt_before_the_gpu(data: bytes) -> None:
    """nvJPEG would decode a cut JPEG (filling the gap): it is refused here instead, as the
    CPU codec refuses it (corrupt_image), with the size the header promised."""
    where = _where(data, None)
    with pytest.raises(CodecError) as err:
        gpu_frame(EncodedFrame(data), LIMITS, where)
    assert err.value.reason == "corrupt_image"
    cpu = _cpu(data, None)
    assert cpu is not None and cpu.reason == "corrupt_image"
    size = "64x64" if data[:2] == b"\xff\xd8" else "30x20"
    assert str(err.value) == (
        f"{where} | image decode gave nothing ({len(data)} bytes). "
        f"Note: expected a decodable {size} image"
    )


@pytest.mark.parametrize(("data", "ctype", "reason"), BAD[:6])
def test_header_rejects_reach_no_gpu(data: bytes, ctype: bytes | None, reason: str) -> None:
    cpu = _cpu(data, ctype)
    with pytest.raises(CodecError) as err:
        gpu_frame(EncodedFrame(data, ctype), LIMITS, _where(data, ctype))
    assert cpu is not None and (err.value.reason, str(err.value)) == (reason, str(cpu))
