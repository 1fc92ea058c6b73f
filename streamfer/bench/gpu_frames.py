"""GPU frame path: frames/s per process for decode + letterbox on the GPU, and the stage split.

No broker: the GPU path's stages are measured on frames held in memory
(the demo's 640x360 scenes, and the same scenes at 1920x1080), JPEG quality 85:

* decode: nvImageCodec batch decode into device memory, synchronised;
* decode + preprocess: the header checks (``camera_frames.gpu_frame``), then
  ``GpuFramePreprocessor.preprocess`` (decode, one letterbox launch) until the
  batch is ready, on one thread and on several threads with a preprocessor
  each (per process);
* preprocess (kernel): the letterbox launch's own GPU time (CUDA events);
* inference: ``TensorRTRunner.infer_device`` on the batch in place, where
  TensorRT is installed; otherwise reported as not run;
* postprocess: detection decoding on the host from the model's outputs
  (ONNX Runtime computes them once when TensorRT is absent), plus the
  device-to-host copy of those outputs (what a GPU-side filter could save);
* CPU reference, same run: the CPU path's reduced JPEG decode + OpenCV
  letterbox on one core, and the GPU letterbox's mean difference from it.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from streamfer.bench.machine import probe_machine
from streamfer.bench.report import Report, Table, Target
from streamfer.bench.stats import Spread

Say = Callable[[str], None]
SIZE = 256  # the reference detector's input
TARGETS = {(640, 360): 10_000.0, (1920, 1080): 4_000.0}


@dataclass(frozen=True)
class GpuFramesOptions:
    batch: int = 64
    seconds: float = 2.0
    repeats: int = 3
    threads: int = 2
    pool: int = 64  # distinct frames per resolution
    sizes: tuple[tuple[int, int], ...] = ((640, 360), (1920, 1080))


@dataclass
class SizeResult:
    width: int
    height: int
    decode_fps: list[float] = field(default_factory=list)
    pre_fps: list[float] = field(default_factory=list)
    pre_threads_fps: list[float] = field(default_factory=list)
    kernel_ms: float = 0.0
    cpu_fps: float = 0.0
    mean_diff_levels: float = 0.0
    infer_fps: list[float] = field(default_factory=list)
    postprocess_ms_per_frame: float = 0.0
    d2h_ms_per_batch: float = 0.0


@dataclass
class GpuFramesResult:
    gpu: str
    batch: int
    threads: int
    engine: str
    sizes: list[SizeResult] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)


def gpu_name(device: int = 0) -> str:
    import pycuda.driver as cuda

    cuda.init()
    dev = cuda.Device(device)
    major, minor = dev.compute_capability()
    return f"{dev.name()} ({dev.total_memory() / 2**30:.0f} GiB, sm_{major}{minor})"


def jpeg_pool(width: int, height: int, n: int) -> list[bytes]:
    from streamfer.models.generators.scenes import SceneGenerator

    gen = SceneGenerator(seed=0, width=width, height=height)
    params = [cv2.IMWRITE_JPEG_QUALITY, 85]
    return [
        cv2.imencode(".jpg", gen.render(camera_id=i % 4).image, params)[1].tobytes()
        for i in range(n)
    ]


def _rate(step: Callable[[int], int], seconds: float) -> float:
    """Frames/s of ``step(i) -> frames`` repeated for ``seconds`` after one warm-up call."""
    step(0)
    frames, i = 0, 1
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        frames += step(i)
        i += 1
    return frames / (time.perf_counter() - t0)


def _batches(pool: list[bytes], batch: int) -> list[list[bytes]]:
    return [[pool[(k * batch + j) % len(pool)] for j in range(batch)] for k in range(4)]


def decode_rate(pool: list[bytes], batch: int, seconds: float) -> float:
    from streamfer.engines.gpu.decoder import JpegBatchDecoder
    from streamfer.engines.gpu.device import PrimaryContext

    ctx = PrimaryContext()
    cuda = ctx.retain()
    batches = _batches(pool, batch)

    def measure() -> float:  # its stream is freed on return, inside the push
        stream = cuda.Stream()
        decoder = JpegBatchDecoder()
        decoder.activate()

        def step(i: int) -> int:
            images = decoder.decode(batches[i % 4], stream.handle)
            stream.synchronize()
            return len(images)

        try:
            return _rate(step, seconds)
        finally:
            decoder.deactivate()

    try:
        with ctx.current():
            return measure()
    finally:
        ctx.release()


def _preprocessor(batch: int, dtype: Any = np.float32) -> Any:
    from streamfer.engines.gpu.preprocessor import GpuFramePreprocessor

    return GpuFramePreprocessor(SIZE, dtype, batch)


def preprocess_rate(pool: list[bytes], batch: int, seconds: float, threads: int) -> float:
    """Frames/s of decode + letterbox over ``threads`` threads, one preprocessor each."""
    from streamfer.pipeline.processors.camera_frames import EncodedFrame

    frames = [[EncodedFrame(d, b"image/jpeg") for d in b] for b in _batches(pool, batch)]
    rates = [0.0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            with _preprocessor(batch) as pre:

                def step(i: int) -> int:
                    with pre.preprocess(_checked(frames[(i + t) % 4])) as out:
                        return len(out)  # leaving the block waits for the batch

                step(0)
                start.wait()
                rates[t] = _rate(step, seconds)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            start.abort()

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return sum(rates)


def _checked(frames: list[Any]) -> list[Any]:
    """The GPU frames of encoded ones: the header checks the camera processor runs first."""
    from streamfer.pipeline.processors.camera_frames import gpu_frame
    from streamfer.streams.codecs import CodecLimits

    limits = CodecLimits()
    return [gpu_frame(f, limits, "bench") for f in frames]


def _jpeg_frames(pool: list[bytes], batch: int) -> list[Any]:
    from streamfer.pipeline.processors.camera_frames import EncodedFrame

    return _checked([EncodedFrame(d, b"image/jpeg") for d in _batches(pool, batch)[0]])


def kernel_and_accuracy(pool: list[bytes], batch: int) -> tuple[float, float, np.ndarray]:
    """Mean letterbox kernel ms per batch, mean |GPU - CPU| in levels, and the GPU batch."""
    from streamfer.models.preprocess import letterbox

    frames = _jpeg_frames(pool, batch)
    with _preprocessor(batch) as pre:
        times = []
        for _ in range(10):
            with pre.preprocess(frames) as out:
                times.append(out.kernel_ms())
                host = out.host_tensor()
    diffs = []
    for row, frame in zip(host, frames, strict=True):
        image = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None  # our own rendered JPEGs
        cpu, _ = letterbox(image, SIZE)
        diffs.append(float(np.abs(row - cpu).mean()))
    return float(np.median(times)), 255 * float(np.mean(diffs)), host


def cpu_rate(pool: list[bytes], seconds: float) -> float:
    """The CPU path on one core: reduced JPEG decode (as the pipeline decodes) + letterbox."""
    from streamfer.models.preprocess import letterbox_geometry
    from streamfer.pipeline.processors.camera import camera_input
    from streamfer.streams.codecs import CodecLimits, decode_camera
    from streamfer.streams.records import Record

    def fit(w: int, h: int) -> tuple[int, int]:
        _, new_w, new_h = letterbox_geometry(w, h, SIZE)
        return new_w, new_h

    records = [Record("bench", 0, i, None, d, (), 0, 0) for i, d in enumerate(pool)]
    limits = CodecLimits()
    cv2.setNumThreads(1)

    def step(i: int) -> int:
        camera_input(decode_camera(records[i % len(records)], limits, fit=fit), SIZE)
        return 1

    return _rate(step, seconds)


def postprocess_cost(host_batch: np.ndarray, batch: int) -> tuple[float, float]:
    """Host ms per frame of detection decoding, and ms per batch to copy the outputs back."""
    from streamfer.engines.gpu.device import PrimaryContext
    from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner
    from streamfer.models import __file__ as models_init
    from streamfer.pipeline.config import DetectionThresholds
    from streamfer.pipeline.postprocess import (
        CameraMeta,
        DetectionPostprocessor,
        labels_from_metadata,
    )

    path = os.path.join(os.path.dirname(models_init), "camera.onnx")
    with OnnxRuntimeRunner(path, max_batch=batch) as ort_runner:
        outputs = ort_runner.infer({"images": host_batch.astype(np.float32)})
        labels = labels_from_metadata(ort_runner.metadata, "camera")
    from streamfer.models.preprocess import letterbox_geometry

    lb = letterbox_geometry(640, 360, SIZE)[0]
    metas = [CameraMeta(lb, 640, 360, None, None)] * len(host_batch)
    post = DetectionPostprocessor(DetectionThresholds(), labels)
    t0 = time.perf_counter()
    for _ in range(5):
        post.results(outputs, metas)
    post_ms = (time.perf_counter() - t0) / 5 / len(host_batch) * 1e3
    out = outputs["output0"]
    ctx = PrimaryContext()
    cuda = ctx.retain()

    def copy_ms() -> float:  # device buffer and stream are freed inside the push
        dev = cuda.mem_alloc(out.nbytes)
        pinned = cuda.pagelocked_empty(out.shape, out.dtype)
        stream = cuda.Stream()
        cuda.memcpy_dtoh_async(pinned, dev, stream)
        stream.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            cuda.memcpy_dtoh_async(pinned, dev, stream)
            stream.synchronize()
        dev.free()
        return (time.perf_counter() - t0) / 20 * 1e3

    try:
        with ctx.current():
            return post_ms, copy_ms()
    finally:
        ctx.release()


def infer_rate(pool: list[bytes], batch: int, seconds: float) -> float:
    from streamfer.engines.tensorrt.runner import TensorRTRunner
    from streamfer.models import __file__ as models_init

    path = os.path.join(os.path.dirname(models_init), "camera.onnx")
    frames = _jpeg_frames(pool, batch)
    with (
        TensorRTRunner(path, max_batch=batch) as runner,
        _preprocessor(batch) as pre,
        pre.preprocess(frames) as out,
    ):

        def step(i: int) -> int:
            runner.infer_device({"images": out.tensor}, outputs=["output0"])
            return len(out)

        return _rate(step, seconds)


def run_gpu_frames(opts: GpuFramesOptions, command: str, say: Say) -> Report:
    machine = probe_machine()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    res = GpuFramesResult(gpu_name(), opts.batch, opts.threads, "TensorRT" if has_trt else "none")
    if not has_trt:
        res.not_run.append("inference: TensorRT is not installed on this host")
    for width, height in opts.sizes:
        say(f"{width}x{height}: rendering {opts.pool} frames")
        pool = jpeg_pool(width, height, opts.pool)
        r = SizeResult(width, height)
        r.kernel_ms, r.mean_diff_levels, host = kernel_and_accuracy(pool, opts.batch)
        for rep in range(opts.repeats):
            r.decode_fps.append(decode_rate(pool, opts.batch, opts.seconds))
            r.pre_fps.append(preprocess_rate(pool, opts.batch, opts.seconds, 1))
            r.pre_threads_fps.append(preprocess_rate(pool, opts.batch, opts.seconds, opts.threads))
            if has_trt:
                r.infer_fps.append(infer_rate(pool, opts.batch, opts.seconds))
            say(f"{width}x{height} rep {rep + 1}: decode {r.decode_fps[-1]:,.0f}/s, decode + "
                f"preprocess {r.pre_fps[-1]:,.0f}/s (1 thread), {r.pre_threads_fps[-1]:,.0f}/s "
                f"({opts.threads} threads)")  # fmt: skip
        r.cpu_fps = cpu_rate(pool, opts.seconds)
        r.postprocess_ms_per_frame, r.d2h_ms_per_batch = postprocess_cost(host, opts.batch)
        res.sizes.append(r)
    return gpu_frames_report(res, opts, command, machine)


def _fmt(values: list[float]) -> str:
    return Spread.of(values).fmt(0) if values else "not run"


def gpu_frames_report(res: GpuFramesResult, opts: GpuFramesOptions, command: str, machine: Any
                      ) -> Report:  # fmt: skip
    rows = []
    targets = []
    for r in res.sizes:
        best = max(Spread.of(r.pre_fps).median, Spread.of(r.pre_threads_fps).median)
        rows.append((
            f"{r.width}x{r.height}", _fmt(r.decode_fps), _fmt(r.pre_fps), _fmt(r.pre_threads_fps),
            f"{r.kernel_ms:.3f}", _fmt(r.infer_fps), f"{r.postprocess_ms_per_frame:.3f}",
            f"{r.d2h_ms_per_batch:.3f}", f"{r.cpu_fps:,.0f}", f"{r.mean_diff_levels:.3f}",
        ))  # fmt: skip
        need = TARGETS.get((r.width, r.height))
        if need is not None:
            name = f"decode + preprocess {r.width}x{r.height}, per process"
            targets.append(Target(name, f"{best:,.0f} frames/s", f">= {need:,.0f}", best >= need))
    table = Table(
        f"GPU frame path on {res.gpu}, batch {res.batch}, JPEG q85 (frames/s: median (min–max) "
        f"of {opts.repeats} runs)",
        ("frames", "decode (GPU)", "decode + preprocess, 1 thread",
         f"decode + preprocess, {res.threads} threads", "letterbox kernel ms/batch",
         "inference (TensorRT)", "postprocess ms/frame (host)", "outputs D2H ms/batch",
         "CPU path frames/s/core (reduced decode + letterbox)", "mean |GPU - CPU| (levels)"),
        tuple(rows),
    )  # fmt: skip
    notes = [
        "decode = nvImageCodec batch decode into device memory until the stream is idle; decode"
        " + preprocess = header checks, then GpuFramePreprocessor.preprocess (decode, one "
        "letterbox launch writing the engine's fp32 NCHW input) until the batch's ready event",
        "the letterbox kernel time is its own GPU time (CUDA events); postprocess is detection "
        "decoding on the host from the camera model's output (computed by ONNX Runtime on the "
        "GPU-preprocessed batch when TensorRT is absent)",
        "mean |GPU - CPU|: GPU letterbox vs OpenCV's (full-size decode, INTER_AREA), 0..255 levels",
        *[f"not run: {n}" for n in res.not_run],
    ]
    return Report("Frame path (GPU preprocess)", command, machine, [table], targets, notes,
                  raw={"gpu_frames": asdict(res)})  # fmt: skip
