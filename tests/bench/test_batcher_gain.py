"""The batcher-gain search on a tiny ONNX model: well-formed results, batching used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from streamfer.bench.batcher_gain import batcher_gain, simulate
from streamfer.engines.base import random_feeds
from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner


def _model(tmp_path: Path) -> Path:
    w = numpy_helper.from_array(np.ones((8, 1), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_simulation_batches_under_load_and_serves_every_item(tmp_path: Path) -> None:
    with OnnxRuntimeRunner(_model(tmp_path), max_batch=16) as runner:
        pool = random_feeds(runner.input_specs, 32)
        point = simulate(runner, pool, rate=20_000, n_items=400, max_batch=16, max_wait_ms=2)
    assert point.items == 400
    assert point.mean_batch > 1  # 20k/s with a 2 ms wait cannot go one by one
    assert 0 < point.p50_ms <= point.p99_ms


def test_gain_search_returns_both_settings(tmp_path: Path) -> None:
    with OnnxRuntimeRunner(_model(tmp_path), max_batch=16) as runner:
        one, many = batcher_gain(runner, 16, 2.0, bound_ms=50, seconds_per_point=0.05,
                                 max_items=2_000, steps=1)  # fmt: skip
    assert (one.max_batch, many.max_batch) == (1, 16)
    for result in (one, many):
        assert result.points and all(p.items >= 200 for p in result.points)
        assert result.best_rate >= 0
        assert [p.rate for p in result.points] == sorted(p.rate for p in result.points)
