"""Tiny ONNX models built with onnx.helper, so engine tests need no trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "streamfer" / "models"

# y = sigmoid(x @ W + b): x float32 [N, 4] -> y float32 [N, 3]
W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0
B = np.array([0.1, -0.2, 0.3], dtype=np.float32)


def mlp_reference(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ W + B)))


def save_model(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime this project allows
    helper.set_model_props(model, metadata or {})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
