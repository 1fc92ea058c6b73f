"""Target selection: TensorRT only when it imports and a GPU is present."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from fake_tensorrt import Script, make_fake_tensorrt

import streamfer.engines.host as host
from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner
from streamfer.engines.select import create_runner, resolve_target
from streamfer.engines.tensorrt.runner import TensorRTRunner
from streamfer.errors import EngineError


@pytest.fixture
def gpu_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    """tensorrt and pycuda.driver import (as fakes); the GPU count is set per test."""
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(Script()))
    pycuda = types.ModuleType("pycuda")
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", types.ModuleType("pycuda.driver"))


def test_auto_is_onnxruntime_without_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert resolve_target("auto") == "onnxruntime"


def test_auto_is_onnxruntime_with_tensorrt_but_no_gpu(
    gpu_libraries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host, "gpu_count", lambda: 0)
    assert resolve_target("auto") == "onnxruntime"


def test_auto_is_tensorrt_with_tensorrt_pycuda_and_a_gpu(
    gpu_libraries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host, "gpu_count", lambda: 1)
    assert resolve_target("auto") == "tensorrt"


def test_explicit_targets_and_unknown_target() -> None:
    assert resolve_target("onnxruntime") == "onnxruntime"
    assert resolve_target("tensorrt") == "tensorrt"
    with pytest.raises(EngineError, match=r"target \| 'cuda' is unknown"):
        resolve_target("cuda")


def test_create_runner_is_lazy_and_passes_settings(
    mlp_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    runner = create_runner(mlp_onnx, max_batch=5, intra_op_threads=1)
    assert isinstance(runner, OnnxRuntimeRunner)
    assert not runner.is_active
    assert runner.max_batch == 5
    assert "model_info" not in vars(runner)  # the file is not even parsed yet


def test_create_runner_refuses_fp16_without_tensorrt(
    mlp_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EngineError, match=r"precision fp16 requested but TensorRT is not usable"):
        create_runner(mlp_onnx, precision="fp16")
    with pytest.raises(EngineError, match=r"precision int8 requested but target onnxruntime"):
        create_runner(mlp_onnx, target="onnxruntime", precision="int8")


def test_create_runner_names_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"missing\.onnx \| no such file"):
        create_runner(tmp_path / "missing.onnx")


def test_tensorrt_runner_without_tensorrt_fails_on_activate(
    mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    runner = create_runner(mlp_onnx, target="tensorrt", cache_dir=tmp_path)
    assert isinstance(runner, TensorRTRunner)
    assert runner.info.kind == "tensorrt"
    with pytest.raises(EngineError, match=r"tensorrt \| not importable"):
        runner.activate()
    assert not runner.is_active


def test_tensorrt_runner_without_pycuda_fails_on_activate(
    mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(Script()))
    monkeypatch.setitem(sys.modules, "pycuda", None)
    runner = TensorRTRunner(mlp_onnx, cache_dir=tmp_path)
    with pytest.raises(EngineError, match=r"pycuda \| not importable"):
        runner.activate()


def test_tensorrt_runner_without_a_cuda_device_fails_on_activate(
    mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_driver() -> None:
        raise RuntimeError("cuInit failed: no CUDA-capable device is detected")

    driver = types.ModuleType("pycuda.driver")
    driver.init = no_driver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(Script()))
    monkeypatch.setitem(sys.modules, "pycuda", types.ModuleType("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    runner = TensorRTRunner(mlp_onnx, cache_dir=tmp_path)
    with pytest.raises(EngineError, match=r"cuda device 0 \| unavailable \(RuntimeError: cuInit"):
        runner.activate()
    assert not runner.is_active
