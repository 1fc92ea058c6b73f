"""TensorRTRunner on the strict doubles: host and device inputs, output subsets, cleanup.

The fake engine evaluates the ONNX file with ONNX Runtime on the bytes at the
addresses the runner bound, so a wrong address, a missing copy or a buffer
freed too early shows up as a wrong number or an error here, without a GPU.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_tensorrt import FakeDeviceMemory, Script, make_fake_cuda, make_fake_tensorrt
from onnx import TensorProto, helper, numpy_helper
from tiny_onnx import B, W, mlp_reference, save_model

import streamfer.engines.tensorrt.builder as builder_mod
from streamfer.engines.gpu.device import DeviceTensor
from streamfer.engines.tensorrt.runner import TensorRTRunner
from streamfer.errors import EngineError


@pytest.fixture
def memory() -> FakeDeviceMemory:
    return FakeDeviceMemory()


@pytest.fixture
def cuda(memory: FakeDeviceMemory, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    driver = make_fake_cuda(memory)
    package = types.ModuleType("pycuda")
    package.driver = driver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return driver


def _install(monkeypatch: pytest.MonkeyPatch, model: Path, memory: FakeDeviceMemory) -> Script:
    script = Script(model=model, memory=memory)
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(script))
    monkeypatch.setattr(builder_mod, "compute_capability", lambda device=0: "9.0")
    return script


@pytest.fixture
def two_output_onnx(tmp_path: Path) -> Path:
    """``features`` [N, 4] -> ``score`` = sigmoid(z) [N, 3] and ``logits`` = z [N, 3]."""
    return save_model(
        tmp_path / "two_out.onnx",
        [
            helper.make_node("MatMul", ["features", "W"], ["h"]),
            helper.make_node("Add", ["h", "B"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["score"]),
        ],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3]),
        ],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )


@pytest.fixture
def runner(
    cuda: types.ModuleType,
    memory: FakeDeviceMemory,
    two_output_onnx: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[TensorRTRunner, Script]]:
    script = _install(monkeypatch, two_output_onnx, memory)
    with TensorRTRunner(two_output_onnx, max_batch=8, cache_dir=tmp_path / "cache") as r:
        yield r, script


class _Upload:
    """Device memory the test fills itself, as the GPU frame path would."""

    def __init__(self, cuda: Any, array: np.ndarray) -> None:
        ctx = cuda.Device(0).retain_primary_context()
        ctx.push()
        try:
            self.alloc = cuda.mem_alloc(array.nbytes)
            cuda.memcpy_htod_async(self.alloc, array)
            self.ready = cuda.Event().record()
        finally:
            cuda.Context.pop()
        self.tensor = DeviceTensor(int(self.alloc), array.shape, array.dtype, self.ready)


def _features(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 4), dtype=np.float32)


def test_host_inputs_run_through_the_thread_buffers(
    runner: tuple[TensorRTRunner, Script],
) -> None:
    trt_runner, _ = runner
    x = _features(5)
    out = trt_runner.infer({"features": x})
    np.testing.assert_allclose(out["score"], mlp_reference(x), rtol=1e-6)
    np.testing.assert_allclose(out["logits"], x @ W + B, rtol=1e-6)
    assert trt_runner.info.kind == "tensorrt"


def test_device_inputs_are_read_in_place_and_only_the_asked_outputs_come_back(
    runner: tuple[TensorRTRunner, Script], cuda: Any
) -> None:
    trt_runner, script = runner
    x = _features(3, seed=1)
    upload = _Upload(cuda, x)
    out = trt_runner.infer_device({"features": upload.tensor}, outputs=["score"])
    assert list(out) == ["score"]
    np.testing.assert_allclose(out["score"], mlp_reference(x), rtol=1e-6)
    assert script.executions[-1]["features"] == upload.tensor.ptr  # no copy in between
    # the host path afterwards binds its own buffer again
    trt_runner.infer({"features": _features(2)})
    assert script.executions[-1]["features"] != upload.tensor.ptr


def test_output_shapes_the_onnx_leaves_dynamic_are_resolved_per_batch(
    cuda: Any, memory: FakeDeviceMemory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The camera model declares output0 [N, ?, ?]: the context resolves it from the input."""
    from tiny_onnx import REFERENCE_DIR

    path = REFERENCE_DIR / "camera.onnx"
    _install(monkeypatch, path, memory)
    images = np.random.default_rng(0).random((2, 3, 256, 256), dtype=np.float32)
    with TensorRTRunner(path, max_batch=4, cache_dir=tmp_path) as trt_runner:
        upload = _Upload(cuda, images)
        out = trt_runner.infer_device({"images": upload.tensor}, outputs=["output0"])
    assert out["output0"].shape == (2, 8, 1280)


def test_device_input_waits_for_its_ready_event(
    runner: tuple[TensorRTRunner, Script], cuda: Any
) -> None:
    trt_runner, _ = runner
    upload = _Upload(cuda, _features(2))
    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    try:
        unrecorded = cuda.Event()
    finally:
        cuda.Context.pop()
    pending = DeviceTensor(upload.tensor.ptr, (2, 4), np.dtype(np.float32), unrecorded)
    with pytest.raises(RuntimeError, match="never recorded"):
        trt_runner.infer_device({"features": pending})
    assert trt_runner.infer_device({"features": upload.tensor})["score"].shape == (2, 3)


@pytest.mark.parametrize(
    ("shape", "dtype", "problem"),
    [
        ((2, 5), np.float32, r"got float32 \[2, 5\]"),
        ((2, 4), np.float16, r"got float16 \[2, 4\]"),
        ((9, 4), np.float32, r"got float32 \[9, 4\]. Note: expected float32 \[N, 4\] with 1 <= N"),
        ((0, 4), np.float32, r"got float32 \[0, 4\]"),
    ],
)
def test_bad_device_inputs_are_refused(
    runner: tuple[TensorRTRunner, Script],
    shape: tuple[int, ...],
    dtype: type,
    problem: str,
) -> None:
    trt_runner, script = runner
    tensor = DeviceTensor(1 << 32, shape, np.dtype(dtype))
    with pytest.raises(EngineError, match=rf"two_out device input 'features' \| {problem}"):
        trt_runner.infer_device({"features": tensor})
    assert script.executions == []


def test_unknown_names_are_refused(runner: tuple[TensorRTRunner, Script], cuda: Any) -> None:
    trt_runner, _ = runner
    upload = _Upload(cuda, _features(1))
    with pytest.raises(EngineError, match=r"device inputs \| got \['images'\]"):
        trt_runner.infer_device({"images": upload.tensor})
    with pytest.raises(EngineError, match=r"outputs \| unknown \['boxes'\]"):
        trt_runner.infer_device({"features": upload.tensor}, outputs=["boxes"])


def test_an_inactive_runner_refuses_device_inputs(
    cuda: Any, memory: FakeDeviceMemory, mlp_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(monkeypatch, mlp_onnx, memory)
    tensor = DeviceTensor(1 << 32, (1, 4), np.dtype(np.float32))
    with pytest.raises(EngineError, match=r"infer_device\(\) called on an inactive runner"):
        TensorRTRunner(mlp_onnx, max_batch=4).infer_device({"features": tensor})


def test_deactivate_frees_every_buffer_inside_the_context(
    cuda: Any, memory: FakeDeviceMemory, mlp_onnx: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The fake raises when memory is allocated or freed with no context pushed."""
    _install(monkeypatch, mlp_onnx, memory)
    trt_runner = TensorRTRunner(mlp_onnx, max_batch=4, cache_dir=tmp_path)
    with trt_runner:
        trt_runner.infer({"features": _features(4)})
        assert memory.blocks  # the thread's buffers
    assert memory.blocks == {}
    assert memory.pushed == 0


def test_an_engine_tensorrt_refuses_is_rebuilt_once_then_an_error(
    cuda: Any, memory: FakeDeviceMemory, mlp_onnx: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    script = _install(monkeypatch, mlp_onnx, memory)
    script.model = None  # the fake runtime now refuses every engine
    with pytest.raises(EngineError, match="TensorRT could not deserialize the engine"):
        TensorRTRunner(mlp_onnx, max_batch=4, cache_dir=tmp_path).activate()
    assert script.builds == 1
    assert memory.pushed == 0
