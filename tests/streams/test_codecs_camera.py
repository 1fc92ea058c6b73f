"""Camera codec: round trips, and limits checked before decode."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from recordkit import make_record

from streamfer.errors import CodecError
from streamfer.streams.codecs import CodecLimits, decode_camera, encode_camera
from streamfer.streams.codecs.camera import jpeg_reduction, jpeg_size, png_size

LIMITS = CodecLimits()


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def reason_of(value: bytes, headers: list[tuple[str, bytes]], limits: CodecLimits = LIMITS) -> str:
    with pytest.raises(CodecError) as err:
        decode_camera(make_record(value, headers), limits)
    assert "in[0]@7" in str(err.value)
    return err.value.reason


@given(st.integers(1, 64), st.integers(1, 64), st.sampled_from(["image/png", "application/x-raw"]))
@settings(max_examples=40, deadline=None)
def test_lossless_round_trip_with_headers(h: int, w: int, ctype: str) -> None:
    img = image(h, w, h * w)
    value, headers = encode_camera(img, content_type=ctype, capture_ts_ns=123, frame_seq=9)
    frame = decode_camera(make_record(value, headers), LIMITS)
    assert frame.image.dtype == np.uint8 and frame.image.shape == (h, w, 3)
    assert np.array_equal(frame.image, img)
    assert (frame.capture_ts_ns, frame.frame_seq) == (123, 9)


def test_jpeg_round_trip_keeps_size_and_is_close() -> None:
    img = cv2.GaussianBlur(image(90, 160), (9, 9), 3)
    value, headers = encode_camera(img, quality=95)
    assert jpeg_size(value) == (160, 90)
    frame = decode_camera(make_record(value, headers), LIMITS)
    assert frame.image.shape == (90, 160, 3)
    assert np.abs(frame.image.astype(int) - img).mean() < 4
    assert frame.capture_ts_ns is None and frame.frame_seq is None


def test_content_type_may_be_absent_for_encoded_images() -> None:
    value, _ = encode_camera(image(8, 8), content_type="image/png")
    assert decode_camera(make_record(value), LIMITS).image.shape == (8, 8, 3)


def test_gray_raw_frames_become_bgr() -> None:
    gray = image(4, 5)[:, :, :1]
    value, headers = encode_camera(gray, content_type="application/x-raw")
    out = decode_camera(make_record(value, headers), LIMITS).image
    assert out.shape == (4, 5, 3) and np.array_equal(out[:, :, 2], gray[:, :, 0])


def _fake_jpeg(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 3) + b"\x01\x11\x00" * 1
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 4) + b"JF" + sof + b"\xff\xd9"


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    # Not decodable at all: only the header can produce "image_too_large".
    assert jpeg_size(_fake_jpeg(40000, 30000)) == (40000, 30000)
    assert reason_of(_fake_jpeg(40000, 30000), [("content-type", b"image/jpeg")]) == (
        "image_too_large"
    )
    png, _ = encode_camera(image(20, 30), content_type="image/png")
    assert png_size(png) == (30, 20)
    small = CodecLimits(max_image_pixels=599)
    assert reason_of(png, [], small) == "image_too_large"


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"", [], "empty"),
        (b"\x00" * 100, [], "corrupt_image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", [], "corrupt_image"),
        (b"x" * 10, [("content-type", b"text/plain")], "bad_content_type"),
        (
            b"\x00" * 11,
            [("content-type", b"application/x-raw;shape=2,2,3;dtype=uint8")],
            "bad_shape",
        ),
        (
            b"\x00" * 12,
            [("content-type", b"application/x-raw;shape=2,2,3;dtype=f4")],
            "bad_content_type",
        ),
        (
            b"\x00" * 8,
            [("content-type", b"application/x-raw;shape=2,2,2;dtype=uint8")],
            "bad_shape",
        ),
        (
            b"\x00" * 12,
            [("content-type", b"application/x-raw;shape=2,x;dtype=uint8")],
            "bad_content_type",
        ),
    ],
)
def test_rejects_with_reason(value: bytes, headers: list[tuple[str, bytes]], reason: str) -> None:
    assert reason_of(value, headers) == reason


def test_truncated_jpeg_and_mismatched_type_are_rejected() -> None:
    value, _ = encode_camera(image(64, 64))
    assert reason_of(value[: len(value) // 3], []) == "corrupt_image"
    assert reason_of(value, [("content-type", b"image/png")]) == "bad_content_type"


def test_oversized_message_is_rejected_before_anything_else() -> None:
    assert reason_of(b"\xff\xd8" + b"\x00" * 2000, [], CodecLimits(max_message_bytes=1000)) == (
        "too_large"
    )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("capture-ts-ns", b"soon"),
        ("capture-ts-ns", b"-5"),  # a negative time would read as "no capture time"
        ("capture-ts-ns", b"9" * 26),  # beyond int64: no deadline can be computed from it
        ("frame-seq", b"18446744073709551616"),
        ("frame-seq", b"\xff\xfe"),
    ],
)
def test_bad_frame_headers_are_rejected(name: str, raw: bytes) -> None:
    value, headers = encode_camera(image(4, 4), content_type="image/png")
    assert reason_of(value, [*headers, (name, raw)]) == "bad_header"


@given(st.binary(max_size=300), st.sampled_from([None, b"image/jpeg", b"image/png"]))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_only_ever_raise_codec_error(data: bytes, ctype: bytes | None) -> None:
    headers = [("content-type", ctype)] if ctype else []
    try:
        frame = decode_camera(make_record(data, headers), LIMITS)
    except CodecError:
        return
    assert frame.image.ndim == 3


@pytest.mark.parametrize(
    ("size", "fit", "reduction"),
    [
        ((640, 360), (256, 144), 2),  # the demo's frames into the 256 detector input
        ((1280, 720), (256, 144), 4),
        ((1920, 1080), (256, 144), 4),  # 1/8 would give 240x135: too small
        ((2048, 1152), (256, 144), 8),
        ((300, 200), (256, 171), 1),  # 1/2 would be 150 wide: decoded whole
        ((641, 361), (256, 144), 2),  # libjpeg rounds a reduced size up
    ],
)
def test_jpeg_reduction_is_the_largest_that_still_covers_the_target(
    size: tuple[int, int], fit: tuple[int, int], reduction: int
) -> None:
    assert jpeg_reduction(*size, fit) == reduction


def test_reduced_jpeg_decode_keeps_the_frame_size_and_content() -> None:
    img = cv2.GaussianBlur(image(361, 641), (15, 15), 5)
    value, headers = encode_camera(img, quality=95)
    full = decode_camera(make_record(value, headers), LIMITS)
    frame = decode_camera(make_record(value, headers), LIMITS, fit=lambda w, h: (256, 144))
    assert (frame.width, frame.height, frame.reduction) == (641, 361, 2)
    assert (full.width, full.height, full.reduction) == (641, 361, 1)
    assert frame.image.shape == (181, 321, 3)
    shrunk = cv2.resize(full.image, (321, 181), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.image.astype(int) - shrunk).mean() < 3


def test_png_and_raw_frames_are_never_reduced() -> None:
    for ctype in ("image/png", "application/x-raw"):
        value, headers = encode_camera(image(64, 96), content_type=ctype)
        frame = decode_camera(make_record(value, headers), LIMITS, fit=lambda w, h: (8, 8))
        assert (frame.image.shape, frame.reduction) == ((64, 96, 3), 1)
        assert (frame.width, frame.height) == (96, 64)


def test_a_truncated_jpeg_is_corrupt_at_any_reduction() -> None:
    value, headers = encode_camera(image(360, 640))
    with pytest.raises(CodecError) as err:
        decode_camera(
            make_record(value[: len(value) // 3], headers), LIMITS, fit=lambda w, h: (256, 144)
        )
    assert err.value.reason == "corrupt_image"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _pillow_png(array: np.ndarray, mode: str) -> bytes:
    out = io.BytesIO()
    converted = Image.fromarray(array).convert(mode) if mode in ("P", "1") else None
    (converted or Image.fromarray(array, mode)).save(out, "PNG")
    return out.getvalue()


PNG_KINDS = {
    "rgb8": lambda: cv2.imencode(".png", image(12, 17))[1].tobytes(),
    "bgra8": lambda: cv2.imencode(".png", np.dstack([image(12, 17), image(12, 17, 1)[:, :, :1]]))[
        1
    ].tobytes(),
    "gray16": lambda: cv2.imencode(".png", (image(12, 17)[:, :, 0].astype(np.uint16) * 257))[
        1
    ].tobytes(),
    "rgb16": lambda: cv2.imencode(".png", image(12, 17).astype(np.uint16) * 251)[1].tobytes(),
    "palette": lambda: _pillow_png(image(12, 17), "P"),
    "gray_alpha": lambda: _pillow_png(image(12, 17)[:, :, :2], "LA"),
    "one_bit": lambda: _pillow_png(image(12, 17), "1"),
}


@pytest.mark.parametrize("kind", sorted(PNG_KINDS))
def test_png_frames_decode_as_opencv_reads_them(kind: str) -> None:
    data = PNG_KINDS[kind]()
    want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    got = decode_camera(make_record(data), LIMITS).image
    assert got.shape == want.shape == (12, 17, 3)
    assert np.array_equal(got, want)


def _broken_frames() -> dict[str, bytes]:
    png = cv2.imencode(".png", image(40, 60))[1].tobytes()
    jpeg = cv2.imencode(".jpg", image(40, 60))[1].tobytes()
    flipped = bytearray(png)
    flipped[60] ^= 0xFF  # inside IDAT: the zlib stream's check fails
    ihdr_end = 8 + 25
    return {
        "png_bad_idat": bytes(flipped),
        "png_cut": png[: len(png) // 2],
        "png_bad_iccp": png[:ihdr_end] + _chunk(b"iCCP", b"x\x00\x00zz") + png[ihdr_end:],
        "png_bad_ztxt": png[:ihdr_end] + _chunk(b"zTXt", b"k\x00\x00garbage") + png[ihdr_end:],
        "jpeg_cut": jpeg[: len(jpeg) // 2],
        "jpeg_zeroed": jpeg[:200] + b"\x00" * (len(jpeg) - 202) + b"\xff\xd9",
    }


def test_broken_frames_leave_nothing_on_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    # libpng inside OpenCV writes "libpng error: ..." to file descriptor 2 itself: a line
    # per bad frame that no logging setting holds back
    outcomes = {}
    for name, data in _broken_frames().items():
        try:
            decode_camera(make_record(data), LIMITS)
            outcomes[name] = "decoded"
        except CodecError as exc:
            outcomes[name] = exc.reason
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert {n: r for n, r in outcomes.items() if r != "decoded"} == {
        "png_bad_idat": "corrupt_image",
        "png_cut": "corrupt_image",
        "jpeg_cut": "corrupt_image",
        "jpeg_zeroed": "corrupt_image",
    }
