"""TensorRT for real: build every reference model and compare with ONNX Runtime.

Runs only where TensorRT, pycuda and an NVIDIA GPU are present; skips cleanly
elsewhere (CI and development machines have none of them).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from tiny_onnx import REFERENCE_DIR as MODELS

from streamfer.engines.base import Precision, random_feeds
from streamfer.engines.host import gpu_count
from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner

pytestmark = pytest.mark.gpu

MAX_BATCH = {"fraud": 64, "sensor": 64, "camera": 16}
# fp16 accumulates differently: compare loosely; fp32 should agree closely.
TOLERANCE = {"fp32": (1e-3, 1e-4), "fp16": (2e-2, 1e-2)}


@pytest.fixture(scope="module", autouse=True)
def _needs_tensorrt_and_gpu() -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (extra `gpu`)")
    pytest.importorskip("pycuda.driver", reason="pycuda is not installed (extra `gpu`)")
    if gpu_count() == 0:
        pytest.skip("no NVIDIA GPU visible")


def _model(name: str) -> Path:
    path = MODELS / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not produced yet")
    return path


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", sorted(MAX_BATCH))
def test_tensorrt_matches_onnxruntime(name: str, precision: Precision, tmp_path: Path) -> None:
    from streamfer.engines.tensorrt.precision import precision_recipe
    from streamfer.engines.tensorrt.runner import TensorRTRunner
    from streamfer.errors import EngineError

    if precision == "fp16":
        try:
            precision_recipe("fp16")
        except EngineError as exc:
            pytest.skip(str(exc))
    path = _model(name)
    max_batch = MAX_BATCH[name]
    rtol, atol = TOLERANCE[precision]
    trt_runner = TensorRTRunner(
        path,
        max_batch=max_batch,
        precision=precision,
        cache_dir=tmp_path,
    )
    with trt_runner, OnnxRuntimeRunner(path, max_batch=max_batch) as ort_runner:
        assert trt_runner.info.kind == "tensorrt"
        assert trt_runner.engine_path is not None and trt_runner.engine_path.exists()
        for batch in sorted({1, 2, 3, max_batch // 2, max_batch - 1, max_batch}):
            feeds = random_feeds(trt_runner.input_specs, batch, seed=batch)
            got = trt_runner.infer(feeds)
            want = ort_runner.infer(feeds)
            assert got.keys() == want.keys()
            for key in want:
                assert got[key].shape == want[key].shape
                np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol)


def test_second_activation_loads_from_the_cache_and_threads_run_apart(tmp_path: Path) -> None:
    from streamfer.engines.tensorrt.runner import TensorRTRunner

    path = _model("fraud")
    with TensorRTRunner(path, max_batch=8, cache_dir=tmp_path) as first:
        engine_path = first.engine_path
    assert engine_path is not None
    built_at = engine_path.stat().st_mtime_ns
    runner = TensorRTRunner(path, max_batch=8, cache_dir=tmp_path)
    errors: list[BaseException] = []
    with runner, OnnxRuntimeRunner(path, max_batch=8) as reference:
        assert runner.engine_path == engine_path
        assert engine_path.stat().st_mtime_ns == built_at  # loaded, not rebuilt

        def work(seed: int) -> None:
            try:
                for i in range(20):
                    feeds = random_feeds(
                        runner.input_specs, 1 + (seed + i) % 8, seed=seed * 100 + i
                    )
                    np.testing.assert_allclose(
                        runner.infer(feeds)["score"], reference.infer(feeds)["score"], atol=1e-4
                    )
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert errors == []
