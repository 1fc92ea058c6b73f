"""Batch JPEG decode into device memory with nvImageCodec (optional, extra `gpu`).

nvImageCodec decodes a list of code streams in one call (nvJPEG's batched
decoder, or the H100's hardware JPEG engines) and returns one device image
per input, or None where a frame could not be decoded. Decoding is ordered
on the caller's CUDA stream (``cuda_stream=``), so a kernel launched on that
stream afterwards reads finished pixels without a host synchronisation. The
images own their memory: keep them alive until the work reading them has
completed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from streamfer.engines.host import import_optional
from streamfer.errors import EngineError


class DecodedImage(NamedTuple):
    """One decoded frame in device memory: interleaved uint8 RGB rows ``pitch`` bytes apart."""

    ptr: int
    pitch: int
    width: int
    height: int
    channels: int
    owner: Any  # the nvImageCodec image that holds the memory


class BatchDecoder(Protocol):
    """Decodes a batch of JPEGs into device memory, ordered on a CUDA stream."""

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def decode(self, datas: Sequence[bytes], stream_handle: int) -> list[DecodedImage | None]:
        """One RGB device image per input, None where it could not be decoded."""
        ...


def import_nvimgcodec() -> Any:
    """``nvidia.nvimgcodec`` or an EngineError saying how to get it."""
    return import_optional(
        "nvidia.nvimgcodec",
        "nvimgcodec",
        "the `gpu` extra (nvidia-nvimgcodec-cu13 and nvidia-nvjpeg)",
    )


def device_image(image: Any) -> DecodedImage:
    """The device pointer and layout of an nvImageCodec image (``__cuda_array_interface__``)."""
    cai = image.__cuda_array_interface__
    shape = tuple(cai["shape"])
    if cai.get("typestr") != "|u1" or len(shape) != 3:
        raise EngineError(
            f"nvimgcodec image | {cai.get('typestr')} {shape}. "
            "Note: expected interleaved uint8 (H, W, C)"
        )
    height, width, channels = (int(d) for d in shape)
    strides = cai.get("strides")
    pitch = int(strides[0]) if strides else width * channels
    return DecodedImage(int(cai["data"][0]), pitch, width, height, channels, image)


class JpegBatchDecoder:
    """Lazy nvImageCodec decoder: created on ``activate()``, decodes RGB on a given stream."""

    def __init__(self, device: int = 0, cpu_threads: int = 0) -> None:
        self.device = device
        self.cpu_threads = cpu_threads
        self._codec: Any = None
        self._decoder: Any = None
        self._params: Any = None

    def activate(self) -> None:
        codec = import_nvimgcodec()
        self._decoder = codec.Decoder(device_id=self.device, max_num_cpu_threads=self.cpu_threads)
        # EXIF orientation is applied as OpenCV's IMREAD_COLOR does; a rotated frame then
        # fails the size check on both paths alike.
        self._params = codec.DecodeParams(
            apply_exif_orientation=True,
            color_spec=codec.ColorSpec.SRGB,
            allow_any_depth=False,
            sample_format=codec.SampleFormat.I_RGB,
        )
        self._codec = codec

    def deactivate(self) -> None:
        self._decoder = None
        self._params = None
        self._codec = None

    def decode(self, datas: Sequence[bytes], stream_handle: int) -> list[DecodedImage | None]:
        """One device image per input (None where nvImageCodec could not decode it)."""
        if self._decoder is None:
            raise EngineError(
                "nvimgcodec decoder | decode() before activate(). Note: expected activate() first"
            )
        out: list[DecodedImage | None] = [None] * len(datas)
        streams, where = [], []
        for i, data in enumerate(datas):
            try:
                streams.append(self._codec.CodeStream(data))
            except RuntimeError:  # its parser could not read the header: not decodable
                continue
            where.append(i)
        if streams:
            images = self._decoder.decode(streams, params=self._params, cuda_stream=stream_handle)
            for i, image in zip(where, images, strict=True):
                out[i] = None if image is None else device_image(image)
        return out
