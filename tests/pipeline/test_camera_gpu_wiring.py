"""The GPU camera path's wiring, on the CPU: what goes to the device step and what comes back.

The GPU preprocessor is replaced by a stand-in that letterboxes exactly as the CPU
path does (so decisions can be compared for equality) and checks what it is given;
the device runner is the real camera model on ONNX Runtime behind ``infer_device``.
What is checked is the plumbing the GPU machine cannot be asked about every time:
headers read on the consumer thread, rows and rejects mapped back, the letterbox
geometry carried to the boxes, and the decisions equal to the CPU path's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamfer.engines.gpu import DecodeFailure, GpuFrame
from streamfer.engines.select import create_runner
from streamfer.errors import CodecError
from streamfer.models.generators.scenes import SceneGenerator
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.postprocess import labels_from_metadata
from streamfer.pipeline.processors.base import Output
from streamfer.pipeline.processors.camera import CameraProcessor, camera_input
from streamfer.pipeline.processors.camera_gpu import GpuCameraProcessor
from streamfer.streams.codecs import decode_camera, encode_camera
from streamfer.streams.records import Record, RecordBatch

MODEL = Path(__file__).resolve().parents[2] / "streamfer" / "models" / "camera.onnx"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="models/camera.onnx missing")
STREAM = StreamConfig(
    name="cams", kind="camera", input_topic="frames", output_topic="out", model="camera"
)


class HostTensor:
    """Stands in for a DeviceTensor: the letterboxed batch, here in host memory."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows


class Batch:
    def __init__(self, tensor: HostTensor, kept: list[int], letterboxes: list[Any],
                 sizes: list[tuple[int, int]], failed: list[DecodeFailure]) -> None:  # fmt: skip
        self.tensor, self.kept, self.letterboxes = tensor, kept, letterboxes
        self.sizes, self.failed = sizes, failed
        self.released = False

    def release(self) -> None:
        self.released = True


class StandInPreprocessor:
    """Letterboxes as the CPU path does; checks it gets checked, complete JPEGs only.

    ``refuse``: indices (into what it is handed) whose decode it pretends gave nothing.
    """

    def __init__(self, size: int, refuse: frozenset[int] = frozenset()) -> None:
        self.size = size
        self.refuse = refuse
        self.is_active = False
        self.batches: list[Batch] = []

    def activate(self) -> None:
        self.is_active = True

    def deactivate(self) -> None:
        self.is_active = False

    def preprocess(self, frames: Sequence[Any]) -> Batch:
        assert self.is_active
        rows, kept, letterboxes, sizes, failed = [], [], [], [], []
        cpu = CameraProcessor(STREAM, [], self.size, threads=1)
        for i, frame in enumerate(frames):
            assert isinstance(frame, GpuFrame) and frame.kind == "jpeg"
            assert isinstance(frame.data, bytes)
            if i in self.refuse:
                failed.append(DecodeFailure(i, "nothing"))
                continue
            record = Record("frames", 0, 0, None, frame.data, (), 0, 0)
            decoded = decode_camera(record, cpu.limits, fit=cpu.fit)  # the caller checked it
            assert (decoded.width, decoded.height) == (frame.width, frame.height)
            tensor, meta = camera_input(decoded, 256)
            rows.append(tensor)
            kept.append(i)
            letterboxes.append(meta.letterbox)
            sizes.append((meta.width, meta.height))
        batch = Batch(HostTensor(np.stack(rows)), kept, letterboxes, sizes, failed)
        self.batches.append(batch)
        return batch


class DeviceRunner:
    """``infer_device`` over a real ONNX Runtime session, checking what it is handed."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.input_specs = runner.input_specs
        self.output_specs = runner.output_specs

    def infer_device(self, inputs: Mapping[str, Any], outputs: Sequence[str] | None = None
                     ) -> dict[str, np.ndarray]:  # fmt: skip
        (name,) = inputs
        assert name == self.input_specs[0].name and isinstance(inputs[name], HostTensor)
        assert outputs == [self.output_specs[0].name]
        return self.runner.infer({name: inputs[name].rows})


def frames() -> RecordBatch:
    scenes = SceneGenerator(seed=4)
    records = []
    for i in range(6):
        value, headers = encode_camera(
            scenes.render(i % 3).image, quality=85, capture_ts_ns=time.time_ns(), frame_seq=i
        )
        if i == 2:
            value = value[: len(value) // 2]  # cut short: the device path rejects it
        if i == 4:
            headers = [h for h in headers if h[0] != "capture-ts-ns"]
        records.append(Record("frames", 0, 10 + i, b"cam-%d" % (i % 3), value, tuple(headers),
                              0, 0))  # fmt: skip
    records.append(Record("frames", 0, 16, b"cam-0", None, (), 0, 0))  # a tombstone
    return RecordBatch.of(records)


def test_gpu_path_decides_as_the_cpu_path_and_rejects_with_the_same_reasons() -> None:
    with create_runner(MODEL, target="onnxruntime", intra_op_threads=1) as runner:
        labels = labels_from_metadata(runner.metadata, runner.name)
        batch = frames()

        cpu = CameraProcessor(STREAM, labels, 256, threads=1)
        cpu_prepared = cpu.prepare(batch)
        cpu_results = cpu.results(runner.infer(cpu_prepared.feeds), cpu_prepared.metas or [])

        pre = StandInPreprocessor(256)
        gpu = GpuCameraProcessor(STREAM, labels, pre, runner.output_specs[0].name)
        prepared = gpu.prepare(batch)
        assert pre.batches == []  # nothing decoded on the consumer thread
        assert [r.row for r in prepared.rejects] == [6]
        assert prepared.rejects[0].reason == "null_value"
        assert prepared.event_ns is not None and prepared.event_ns[4] == -1  # timestamp then
        infer = gpu.infer_with(DeviceRunner(runner))
        results = gpu.results(infer(prepared.feeds), prepared.metas or [])
        assert pre.batches and all(b.released for b in pre.batches)
        gpu.close()
        assert not pre.is_active

    assert [r.row for r in cpu_prepared.rejects] == [2, 6]  # cut short, tombstone
    by_row_cpu = dict(zip(cpu_prepared.rows.tolist(), cpu_results, strict=True))
    by_row_gpu = dict(zip(prepared.rows.tolist(), results, strict=True))
    failed = by_row_gpu.pop(2)
    assert isinstance(failed, CodecError) and failed.reason == "corrupt_image"
    assert by_row_gpu.keys() == by_row_cpu.keys() == {0, 1, 3, 4, 5}
    for row, got in by_row_gpu.items():
        want = by_row_cpu[row]
        assert isinstance(got, Output) and isinstance(want, Output)
        assert got.extra == want.extra  # the frame block: seq, capture time, size
        assert got.result == want.result  # the same boxes in frame pixels
    assert any(d for r in by_row_gpu.values() for d in r.result["detections"])  # type: ignore[union-attr]


def test_a_frame_the_gpu_cannot_decode_is_dead_lettered_on_its_own_row() -> None:
    """Row 2 never reaches the device (cut short), so the device's third frame is row 3:
    its decode failure comes back on row 3, worded as a codec error."""
    with create_runner(MODEL, target="onnxruntime", intra_op_threads=1) as runner:
        labels = labels_from_metadata(runner.metadata, runner.name)
        batch = frames()
        pre = StandInPreprocessor(256, refuse=frozenset({2}))
        gpu = GpuCameraProcessor(STREAM, labels, pre, runner.output_specs[0].name)
        prepared = gpu.prepare(batch)
        results = gpu.infer_with(DeviceRunner(runner))(prepared.feeds)
        decided = gpu.results(results, prepared.metas or [])
    by_row = dict(zip(prepared.rows.tolist(), decided, strict=True))
    failed = {row: r for row, r in by_row.items() if isinstance(r, BaseException)}
    assert sorted(failed) == [2, 3]
    value = batch.record(3).value
    assert value is not None
    width, height = decode_camera(batch.record(3), gpu.limits).image.shape[1::-1]
    assert isinstance(failed[3], CodecError) and failed[3].reason == "corrupt_image"
    assert str(failed[3]) == (
        f"frames[0]@13 | image decode gave nothing ({len(value)} bytes). "
        f"Note: expected a decodable {width}x{height} image"
    )
    assert all(isinstance(by_row[row], Output) for row in (0, 1, 4, 5))
