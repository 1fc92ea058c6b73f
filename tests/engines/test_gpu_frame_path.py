"""The GPU frame path for real: nvImageCodec, the NVRTC-compiled kernel, pycuda, a GPU.

Skips cleanly without pycuda, nvImageCodec or a visible GPU. The detector
runs on TensorRT where it is installed; elsewhere (the GPU test machine has
no TensorRT) on the TensorRT double over *real* device memory: the runner
binds the kernel's output buffer in place and the double reads it from the
GPU and evaluates the ONNX graph with ONNX Runtime, so everything but
TensorRT's own kernels is the production path.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fake_tensorrt import Script, make_fake_tensorrt
from tiny_onnx import REFERENCE_DIR

from streamfer.engines.host import gpu_count

pytestmark = pytest.mark.gpu

SIZE = 256  # the reference detector's input


@pytest.fixture(scope="module", autouse=True)
def _needs_the_gpu_libraries() -> None:
    pytest.importorskip("pycuda.driver", reason="pycuda is not installed (extra `gpu`)")
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings is not installed")
    if importlib.util.find_spec("nvidia.nvimgcodec") is None:
        pytest.skip("nvImageCodec is not installed (extra `gpu`)")
    if gpu_count() == 0:
        pytest.skip("no NVIDIA GPU visible")


def _scenes(width: int, height: int, n: int, seed: int = 11) -> list[np.ndarray]:
    from streamfer.models.generators.scenes import SceneGenerator

    gen = SceneGenerator(seed=seed, width=width, height=height)
    return [gen.render(camera_id=i % 4).image for i in range(n)]


def _jpegs(images: list[np.ndarray], quality: int = 85) -> list[bytes]:
    return [
        cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes() for im in images
    ]


@pytest.fixture(scope="module")
def preprocessor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from streamfer.engines.gpu.preprocessor import GpuFramePreprocessor

    with GpuFramePreprocessor(
        SIZE, np.float32, 64, cache_dir=tmp_path_factory.mktemp("kernels")
    ) as pre:
        yield pre


@pytest.mark.parametrize(("width", "height"), [(640, 360), (1920, 1080), (160, 90)])
def test_gpu_letterbox_equals_the_cpu_letterbox(preprocessor: Any, width: int, height: int) -> None:
    from streamfer.engines.gpu import GpuFrame
    from streamfer.models.preprocess import letterbox

    jpegs = _jpegs(_scenes(width, height, 8))
    with preprocessor.preprocess([GpuFrame(j, "jpeg", width, height) for j in jpegs]) as batch:
        assert batch.kept == list(range(8)) and batch.failed == []
        got = batch.host_tensor()
    for row, data in enumerate(jpegs):
        want, lb = letterbox(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), SIZE)
        assert batch.letterboxes[row] == lb
        diff = np.abs(got[row] - want)
        assert diff.mean() < 1 / 255, f"row {row}: mean {diff.mean() * 255:.3f} levels"


def test_raw_png_and_undecodable_frames_on_the_gpu(preprocessor: Any) -> None:
    from streamfer.engines.gpu import DecodeFailure, GpuFrame
    from streamfer.models.preprocess import letterbox
    from streamfer.pipeline.processors.camera_frames import EncodedFrame, gpu_frame
    from streamfer.streams.codecs import CodecLimits

    image = _scenes(320, 240, 1)[0]
    png = cv2.imencode(".png", image)[1].tobytes()
    jpeg = _jpegs([image])[0]
    garbage = b"\xff\xd8\xff\xdb" + b"\x00" * 64
    frames = [
        GpuFrame(image.tobytes(), "raw", 320, 240),
        GpuFrame(garbage, "jpeg", 320, 240),  # a header the caller should have refused
        gpu_frame(EncodedFrame(png, b"image/png"), CodecLimits(), "png"),  # host-decoded
        GpuFrame(jpeg, "jpeg", 320, 200),  # decodes, but not to the size promised
    ]
    with preprocessor.preprocess(frames) as batch:
        assert batch.kept == [0, 2]
        assert batch.failed == [DecodeFailure(1, "nothing"), DecodeFailure(3, "320x240")]
        got = batch.host_tensor()
    want, _ = letterbox(image, SIZE)
    for row in range(2):  # lossless inputs: the same levels as the CPU path, up to rounding
        assert np.abs(got[row] - want).mean() < 0.25 / 255


def test_fp16_input_is_the_fp32_input_rounded(tmp_path: Path) -> None:
    from streamfer.engines.gpu import GpuFrame
    from streamfer.engines.gpu.preprocessor import GpuFramePreprocessor

    frames = [GpuFrame(j, "jpeg", 640, 360) for j in _jpegs(_scenes(640, 360, 4))]
    outs = []
    for dtype in (np.float32, np.float16):
        with (
            GpuFramePreprocessor(SIZE, dtype, 8, cache_dir=tmp_path) as pre,
            pre.preprocess(frames) as batch,
        ):
            outs.append(batch.host_tensor())
    assert outs[1].dtype == np.float16
    np.testing.assert_allclose(outs[1].astype(np.float32), outs[0], atol=1e-3)


class _CudaMemory:
    """Real device memory for the TensorRT double (the runner's context is pushed)."""

    def __init__(self) -> None:
        import pycuda.driver as cuda

        self.cuda = cuda

    def read(self, ptr: int, nbytes: int) -> bytes:
        out = np.empty(nbytes, np.uint8)
        self.cuda.memcpy_dtoh(out, ptr)  # legacy stream: after the runner's stream's work
        return out.tobytes()

    def write(self, ptr: int, data: bytes) -> None:
        self.cuda.memcpy_htod(ptr, np.frombuffer(data, np.uint8))


@pytest.fixture
def detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    from streamfer.engines.tensorrt.runner import TensorRTRunner

    path = REFERENCE_DIR / "camera.onnx"
    kind = "TensorRT"
    if importlib.util.find_spec("tensorrt") is None:
        kind = "the TensorRT double on real device memory"
        script = Script(model=path, memory=_CudaMemory())
        monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(script))
    with TensorRTRunner(path, max_batch=16, cache_dir=tmp_path) as runner:
        yield runner, kind


def _fit(width: int, height: int) -> tuple[int, int]:
    """What the pipeline's CameraPreprocessor.fit returns: the letterboxed size."""
    from streamfer.models.preprocess import letterbox_geometry

    _, new_w, new_h = letterbox_geometry(width, height, SIZE)
    return new_w, new_h


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matched(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], floor: float) -> bool:
    """Every detection of ``ours`` scoring >= floor has a same-label twin at IoU >= 0.7."""
    return all(
        any(t["label"] == d["label"] and _iou(t["box"], d["box"]) >= 0.7 for t in theirs)
        for d in ours
        if d["score"] >= floor
    )


def test_detections_from_the_gpu_path_equal_the_cpu_paths(
    preprocessor: Any, detector: tuple[Any, str]
) -> None:
    """Same frames through the CPU pipeline path (reduced JPEG decode, OpenCV letterbox,
    ONNX Runtime) and the GPU path (nvImageCodec, kernel, runner.infer_device)."""
    from streamfer.engines.gpu import GpuFrame
    from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner
    from streamfer.pipeline.config import DetectionThresholds
    from streamfer.pipeline.postprocess import (
        CameraMeta,
        DetectionPostprocessor,
        labels_from_metadata,
    )
    from streamfer.pipeline.processors.camera import camera_input
    from streamfer.streams.codecs import CodecLimits, decode_camera
    from streamfer.streams.records import Record

    runner, kind = detector
    post = DetectionPostprocessor(
        DetectionThresholds(), labels_from_metadata(runner.metadata, "camera")
    )
    jpegs = _jpegs(_scenes(640, 360, 16, seed=21))
    cpu_inputs, cpu_metas = [], []
    for i, data in enumerate(jpegs):
        record = Record("camera", 0, i, None, data, (("content-type", b"image/jpeg"),), 0, 0)
        tensor, meta = camera_input(decode_camera(record, CodecLimits(), fit=_fit), SIZE)
        cpu_inputs.append(tensor)
        cpu_metas.append(meta)
    with OnnxRuntimeRunner(REFERENCE_DIR / "camera.onnx", max_batch=16) as ort_runner:
        cpu = post.results(ort_runner.infer({"images": np.stack(cpu_inputs)}), cpu_metas)
    with preprocessor.preprocess([GpuFrame(j, "jpeg", 640, 360) for j in jpegs]) as batch:
        outputs = runner.infer_device({"images": batch.tensor}, outputs=["output0"])
        metas = [
            CameraMeta(lb, w, h, None, None)
            for lb, (w, h) in zip(batch.letterboxes, batch.sizes, strict=True)
        ]
    gpu = post.results(outputs, metas)
    total = sum(len(r["detections"]) for r in cpu)
    assert total > 16, "the scenes should hold objects to compare"
    for i, (c, g) in enumerate(zip(cpu, gpu, strict=True)):
        assert _matched(c["detections"], g["detections"], 0.35), f"frame {i} ({kind})"
        assert _matched(g["detections"], c["detections"], 0.35), f"frame {i} ({kind})"


def test_a_camera_stream_on_the_gpu_path_decides_as_on_the_cpu_path(
    detector: tuple[Any, str], tmp_path: Path
) -> None:
    """The whole GPU camera processor as a stream runs it: headers read from the records,
    ``infer_with`` (nvImageCodec + kernel + runner.infer_device) on a batch with a cut-off
    frame, results with the geometry that came back, against the CPU processor."""
    from streamfer.engines.gpu.preprocessor import GpuFramePreprocessor
    from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner
    from streamfer.errors import CodecError
    from streamfer.pipeline.config import StreamConfig
    from streamfer.pipeline.postprocess import labels_from_metadata
    from streamfer.pipeline.processors.base import Output
    from streamfer.pipeline.processors.camera import CameraProcessor
    from streamfer.pipeline.processors.camera_gpu import GpuCameraProcessor
    from streamfer.streams.records import Record, RecordBatch

    runner, kind = detector
    stream = StreamConfig(name="cams", kind="camera", input_topic="frames",
                          output_topic="out", model="camera")  # fmt: skip
    labels = labels_from_metadata(runner.metadata, "camera")
    jpegs = _jpegs(_scenes(640, 360, 12, seed=31))
    jpegs[5] = jpegs[5][: len(jpegs[5]) // 2]  # cut short in transit
    batch = RecordBatch.of([
        Record("frames", 0, i, b"cam", data,
               (("content-type", b"image/jpeg"), ("capture-ts-ns", b"7"), ("frame-seq", b"%d" % i)),
               0, 0)
        for i, data in enumerate(jpegs)
    ])  # fmt: skip
    with OnnxRuntimeRunner(REFERENCE_DIR / "camera.onnx", max_batch=16) as cpu_runner:
        cpu = CameraProcessor(stream, labels, SIZE, threads=1)
        cpu_prepared = cpu.prepare(batch)
        cpu_results = cpu.results(cpu_runner.infer(cpu_prepared.feeds), cpu_prepared.metas or [])
    pre = GpuFramePreprocessor(SIZE, runner.input_specs[0].dtype, 16,
                               cache_dir=tmp_path / "kernels")  # fmt: skip
    gpu = GpuCameraProcessor(stream, labels, pre, "output0")
    try:
        prepared = gpu.prepare(batch)
        results = gpu.results(gpu.infer_with(runner)(prepared.feeds), prepared.metas or [])
    finally:
        gpu.close()
    assert [r.row for r in cpu_prepared.rejects] == [5]
    by_row = dict(zip(prepared.rows.tolist(), results, strict=True))
    failed = by_row.pop(5)
    assert isinstance(failed, CodecError) and failed.reason == "corrupt_image"
    want = dict(zip(cpu_prepared.rows.tolist(), cpu_results, strict=True))
    assert by_row.keys() == want.keys()
    for row, got in by_row.items():
        assert isinstance(got, Output) and isinstance(want[row], Output)
        assert got.extra == want[row].extra, f"frame {row}"  # seq, capture time, size
        ours = got.result["detections"]
        theirs = want[row].result["detections"]  # type: ignore[union-attr]
        # the paths letterbox from a full and a 1/2 DCT decode: confident objects agree,
        # borderline ones (scores near the 0.25 threshold) may move between them
        assert _matched(ours, theirs, 0.6), f"frame {row} ({kind})"
        assert _matched(theirs, ours, 0.6), f"frame {row} ({kind})"

