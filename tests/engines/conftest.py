"""Tiny ONNX models built with onnx.helper, so engine tests need no trained model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_onnx import B, W, save_model


@pytest.fixture
def mlp_onnx(tmp_path: Path) -> Path:
    """``features`` float32 [N, 4] -> ``score`` float32 [N, 3] with metadata."""
    return save_model(
        tmp_path / "mlp.onnx",
        [
            helper.make_node("MatMul", ["features", "W"], ["h"]),
            helper.make_node("Add", ["h", "B"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["score"]),
        ],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
        {"streamfer.name": "mlp", "streamfer.version": "0.0.1", "streamfer.task": "fraud"},
    )


@pytest.fixture
def two_input_onnx(tmp_path: Path) -> Path:
    """``a`` float32 [N, 2, 3] + ``b`` int64 [N, 1] -> ``out`` float32 [N, 2, 3]."""
    return save_model(
        tmp_path / "two.onnx",
        [
            helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["bf", "axes"], ["b3"]),
            helper.make_node("Add", ["a", "b3"], ["out"]),
        ],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2, 3]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 1]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2, 3])],
        [numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")],
    )


@pytest.fixture
def make_identity_onnx(tmp_path: Path) -> Callable[..., Path]:
    """``make(shape, name=...)``: Identity model with input shape ``shape``."""

    def make(shape: list[int | str | None], name: str = "ident") -> Path:
        return save_model(
            tmp_path / f"{name}.onnx",
            [helper.make_node("Identity", ["x"], ["y"])],
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        )

    return make
