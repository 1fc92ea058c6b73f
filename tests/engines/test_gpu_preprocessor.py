"""GpuFramePreprocessor's host side on the pycuda double, with the kernel's arithmetic in numpy.

The fake kernel reads the descriptor table and the pixels from the fake
device memory exactly where the preprocessor put them and computes what the
CUDA kernel computes (``letterbox_reference``), so descriptors, pitches,
staging offsets, channel orders, row order and rejects are all checked here
without a GPU; ``test_gpu_frame_path.py`` runs the real kernel and decoder.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pytest
from fake_tensorrt import FakeDeviceMemory, make_fake_cuda
from letterbox_reference import resize_reference

pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings not installed (extra `dev`)")

from streamfer.engines.gpu.decoder import DecodedImage
from streamfer.engines.gpu.kernels import FRAME_DESC
from streamfer.engines.gpu.preprocessor import DecodeFailure, GpuFrame, GpuFramePreprocessor
from streamfer.errors import EngineError
from streamfer.models.generators.scenes import SceneGenerator
from streamfer.models.preprocess import PAD_VALUE, letterbox, letterbox_geometry
from streamfer.streams.codecs import encode_camera

SIZE = 64


class _FakeKernel:
    def __init__(self, memory: FakeDeviceMemory, dtype: np.dtype) -> None:
        self.memory = memory
        self.dtype = dtype
        self.launches: list[tuple[Any, ...]] = []

    def prepare(self, signature: str) -> None:
        assert signature == "PPi"

    def prepared_async_call(
        self, grid: tuple[int, int, int], block: tuple[int, int, int], stream: Any,
        desc_ptr: int, out_ptr: int, size: np.int32,
    ) -> None:  # fmt: skip
        self.launches.append((grid, block))
        n, size = grid[2], int(size)
        assert grid[0] * block[0] >= size and grid[1] * block[1] >= size
        descs = np.frombuffer(self.memory.read(desc_ptr, n * FRAME_DESC.itemsize), FRAME_DESC)
        plane = 3 * size * size * self.dtype.itemsize
        for r, d in enumerate(descs):
            h, w, c, pitch = int(d["height"]), int(d["width"]), int(d["channels"]), int(d["pitch"])
            raw = np.frombuffer(self.memory.read(int(d["src"]), pitch * h), np.uint8)
            pixels = raw.reshape(h, pitch)[:, : w * c].reshape(h, w, c)
            rgb = np.repeat(pixels, 3, axis=2) if c == 1 else pixels
            rgb = rgb[:, :, ::-1] if d["bgr"] else rgb
            out = np.full((3, size, size), float(PAD_VALUE))
            nw, nh, px, py = int(d["new_w"]), int(d["new_h"]), int(d["pad_x"]), int(d["pad_y"])
            out[:, py : py + nh, px : px + nw] = resize_reference(
                rgb, nw, nh, float(d["sx"]), float(d["sy"]), bool(d["area"])
            )
            data = (out / 255.0).astype(self.dtype).tobytes()
            self.memory.write(out_ptr + r * plane, data)


class _FakeModule:
    def __init__(self, memory: FakeDeviceMemory) -> None:
        self.memory = memory
        self.kernels: dict[str, _FakeKernel] = {}

    def get_function(self, name: str) -> _FakeKernel:
        dtype = {"letterbox_f32": np.float32, "letterbox_f16": np.float16}[name]
        return self.kernels.setdefault(name, _FakeKernel(self.memory, np.dtype(dtype)))


class _CvDecoder:
    """Decodes with OpenCV into fake device memory, rows padded (pitch > width * 3)."""

    def __init__(self, cuda: Any, memory: FakeDeviceMemory) -> None:
        self.cuda = cuda
        self.memory = memory
        self.active = False

    def activate(self) -> None:
        self.active = True

    def deactivate(self) -> None:
        self.active = False

    def decode(self, datas: Sequence[bytes], stream_handle: int) -> list[DecodedImage | None]:
        out: list[DecodedImage | None] = []
        for data in datas:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                out.append(None)
                continue
            h, w = bgr.shape[:2]
            pitch = w * 3 + 64
            rows = np.zeros((h, pitch), np.uint8)
            rows[:, : w * 3] = bgr[:, :, ::-1].reshape(h, w * 3)
            alloc = self.cuda.mem_alloc(rows.nbytes)
            self.memory.write(int(alloc), rows.tobytes())
            out.append(DecodedImage(int(alloc), pitch, w, h, 3, alloc))
        return out


@pytest.fixture
def memory() -> FakeDeviceMemory:
    return FakeDeviceMemory()


@pytest.fixture
def cuda(memory: FakeDeviceMemory, monkeypatch: pytest.MonkeyPatch) -> Any:
    driver = make_fake_cuda(memory)
    modules: list[_FakeModule] = []

    def module_from_buffer(cubin: bytes) -> _FakeModule:
        assert cubin[:4] == b"\x7fELF"  # NVRTC's cubin for the device, really compiled
        modules.append(_FakeModule(memory))
        return modules[-1]

    driver.module_from_buffer = module_from_buffer  # type: ignore[attr-defined]
    driver.modules = modules  # type: ignore[attr-defined]
    package = types.ModuleType("pycuda")
    package.driver = driver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return driver


def _make(cuda: Any, memory: FakeDeviceMemory, tmp_path: Any, **kw: Any) -> GpuFramePreprocessor:
    kw.setdefault("dtype", np.float32)
    kw.setdefault("max_batch", 8)
    return GpuFramePreprocessor(SIZE, decoder=_CvDecoder(cuda, memory), cache_dir=tmp_path, **kw)


def _scene(width: int, height: int) -> np.ndarray:
    return (
        SceneGenerator(seed=5, width=max(width, 64), height=max(height, 64))
        .render(0)
        .image[:height, :width]
    )


def _frames() -> tuple[list[GpuFrame], list[np.ndarray | None]]:
    """Mixed frames and the BGR image the CPU path would letterbox (None: not decoded)."""
    jpeg = encode_camera(_scene(640, 360), quality=85)[0]
    png_image = _scene(100, 150)  # a PNG, as the caller decodes it: BGR pixels
    raw_image = _scene(40, 24)  # grows: bilinear
    gray = _scene(48, 32)[:, :, :1].copy()
    frames = [
        GpuFrame(jpeg, "jpeg", 640, 360),
        GpuFrame(png_image, "raw", 100, 150),
        GpuFrame(jpeg[:400], "jpeg", 640, 360),  # header intact, pixels cut: no image
        GpuFrame(raw_image.tobytes(), "raw", 40, 24),
        GpuFrame(encode_camera(_scene(64, 48))[0], "jpeg", 64, 40),  # not the size promised
        GpuFrame(gray.tobytes(), "raw", 48, 32, 1),
    ]
    expected = [
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
        png_image,
        None,
        raw_image,
        None,
        cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR),
    ]
    return frames, expected


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_mixed_batch_matches_the_cpu_letterbox_row_for_row(
    cuda: Any, memory: FakeDeviceMemory, tmp_path: Any, dtype: type
) -> None:
    frames, expected = _frames()
    with _make(cuda, memory, tmp_path, dtype=dtype) as pre, pre.preprocess(frames) as batch:
        assert batch.kept == [0, 1, 3, 5]
        assert batch.failed == [DecodeFailure(2, "nothing"), DecodeFailure(4, "64x48")]
        assert batch.tensor.shape == (4, 3, SIZE, SIZE) and batch.tensor.dtype == dtype
        got = batch.host_tensor()
        for row, i in enumerate(batch.kept):
            image = expected[i]
            assert image is not None
            want, lb = letterbox(image, SIZE)
            height, width = image.shape[:2]
            assert batch.sizes[row] == (width, height)
            assert batch.letterboxes[row] == lb == letterbox_geometry(width, height, SIZE)[0]
            diff = np.abs(got[row].astype(np.float32) - want)
            assert diff.mean() < 1 / 255 / 4, f"frame {i}"
            assert diff.max() <= 1 / 255 + 1e-3, f"frame {i}"


def test_one_kernel_launch_per_batch_and_none_for_an_empty_one(
    cuda: Any, memory: FakeDeviceMemory, tmp_path: Any
) -> None:
    frames, _ = _frames()
    with _make(cuda, memory, tmp_path) as pre:
        with pre.preprocess(frames):
            pass
        with pre.preprocess([GpuFrame(b"\xff\xd8", "jpeg", 8, 8)]) as empty:
            assert empty.kept == [] and empty.tensor.shape == (0, 3, SIZE, SIZE)
            assert empty.failed == [DecodeFailure(0, "nothing")]
            assert empty.host_tensor().shape == (0, 3, SIZE, SIZE)
        kernel = cuda.modules[0].kernels["letterbox_f32"]
        assert [grid for grid, _ in kernel.launches] == [(2, 8, 4)]


def test_batches_hold_their_buffer_until_released(
    cuda: Any, memory: FakeDeviceMemory, tmp_path: Any
) -> None:
    frames, _ = _frames()
    with _make(cuda, memory, tmp_path, depth=1, acquire_timeout_s=0.05) as pre:
        first = pre.preprocess(frames[:2])
        with pytest.raises(EngineError, match=r"all 1 batch buffers still held after 0.05 s"):
            pre.preprocess(frames[:2])
        first.release()
        first.release()  # idempotent
        with pytest.raises(EngineError, match="released"):
            first.host_tensor()
        with pre.preprocess(frames[:2]) as second:
            assert second.tensor.ptr == first.tensor.ptr  # the same slot again


def test_sizes_are_checked(cuda: Any, memory: FakeDeviceMemory, tmp_path: Any) -> None:
    frames, _ = _frames()
    with _make(cuda, memory, tmp_path, max_batch=2) as pre:
        with pytest.raises(EngineError, match=r"batch of 3 frames. Note: expected at most"):
            pre.preprocess(frames[:3])
        with pre.preprocess(frames[:1]) as batch:
            assert batch.kept == [0] and batch.failed == []
    with pytest.raises(EngineError, match="input dtype int8"):
        GpuFramePreprocessor(SIZE, np.int8, 4)  # type: ignore[arg-type]


def test_nothing_happens_before_activate_and_everything_is_freed_after(
    cuda: Any, memory: FakeDeviceMemory, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pre = _make(cuda, memory, tmp_path)
    assert memory.blocks == {} and not pre.is_active
    with pytest.raises(EngineError, match="inactive preprocessor"):
        pre.preprocess([])
    frames, _ = _frames()
    with pre, pre.preprocess(frames):
        pass
    decoded = {p for p in memory.blocks}  # the fake decoder's images only (two JPEGs decode)
    assert len(decoded) == 2 and memory.pushed == 0
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(EngineError, match=r"pycuda \| not importable"):
        GpuFramePreprocessor(SIZE, np.float32, 4).activate()
