"""Tiny ONNX models with the reference models' contracts, so pipeline tests need no training.

``sensor``: ``window`` float32 [N, 100, 6] -> ``probs`` [N, 4] (softmax of a mean).
``camera``: ``images`` float32 [N, 3, 256, 256] -> ``output0`` [N, 4 + 4, 8] (YOLOv8 layout):
one confident vehicle box in the middle of the input, low scores elsewhere.
``sum``: ``x`` float32 [N, 3] -> ``y`` [N, 1], the sum of each row (plug-in tests).
``yolo``: a YOLOv5-layout detector (``images`` [N, 3, S, S] -> ``output0`` [N, A, 5 + C])
with only an Ultralytics ``names`` entry in its metadata, as ``yolo export`` writes.
``slow_sensor``: the sensor contract behind ``layers`` dense 1024x1024 layers, so each
window costs a known amount of compute (about 0.1 ms per layer and window on one core).
``nan_sensor``: the sensor contract whose scores are NaN for a window whose first channel
has a negative mean (the square root of that mean), finite otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SENSOR_LABELS = ["normal", "hard_brake", "swerve", "impact"]
DETECTION_LABELS = ["vehicle", "pedestrian", "cyclist", "sign"]
ANCHORS = 8


def _save_sensor(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], version: str, path: Path
) -> Path:
    """A sensor model: ``window [N, 100, 6]`` -> ``probs [N, 4]``, with sensor metadata."""
    graph = helper.make_graph(
        nodes,
        f"{version}_sensor",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", 100, 6])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    meta = {
        "streamfer.name": "sensor",
        "streamfer.version": version,
        "streamfer.task": "sensor",
        "streamfer.labels": json.dumps(SENSOR_LABELS),
    }
    return _save(graph, path, meta)


def _save(graph: onnx.GraphProto, path: Path, meta: dict[str, str]) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def sensor_model(path: Path) -> Path:
    weights = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32), "w"
    )
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["window", "axes"], ["mean"], keepdims=0),
        helper.make_node("MatMul", ["mean", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    return _save_sensor(nodes, [weights, axes], "tiny", path)


def nan_sensor_model(path: Path) -> Path:
    # probs = softmax(mean(window) @ w) + 0 * sqrt(mean of channel 0): NaN where that is < 0
    weights = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32), "w"
    )
    inits = [
        weights,
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array([0], np.int64), "start"),
        numpy_helper.from_array(np.array([1], np.int64), "end"),
        numpy_helper.from_array(np.zeros((1, 1), np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["window", "axes"], ["mean"], keepdims=0),  # [N, 6]
        helper.make_node("MatMul", ["mean", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["soft"], axis=1),
        helper.make_node("Slice", ["mean", "start", "end", "axes"], ["first"]),  # [N, 1]
        helper.make_node("Sqrt", ["first"], ["root"]),
        helper.make_node("Mul", ["root", "zero"], ["nan_or_zero"]),
        helper.make_node("Add", ["soft", "nan_or_zero"], ["probs"]),
    ]
    return _save_sensor(nodes, inits, "nan", path)


def camera_model(path: Path) -> Path:
    # output = bias + 0 * mean(images): a fixed set of anchors, batch size from the input
    c = 4 + len(DETECTION_LABELS)
    bias = np.zeros((1, c, ANCHORS), np.float32)
    bias[0, :4, :] = [[128.0], [128.0], [40.0], [30.0]]  # cx, cy, w, h in input pixels
    bias[0, 4:, :] = 0.01
    bias[0, 4, 0] = 0.9  # anchor 0: a vehicle
    bias[0, 0, 1] = 40.0  # anchor 1: a weak pedestrian elsewhere
    bias[0, 5, 1] = 0.3
    inits = [
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["images", "axes"], ["m"], keepdims=1),  # [N,1,1,1]
        helper.make_node("Squeeze", ["m", "axes_sq"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),  # [N,1,1] zeros
        helper.make_node("Add", ["z", "bias"], ["output0"]),  # [N,C,A]
    ]
    inits.append(numpy_helper.from_array(np.array([3], np.int64), "axes_sq"))
    graph = helper.make_graph(
        nodes,
        "tiny_camera",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 256, 256])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", c, ANCHORS])],
        inits,
    )
    meta = {
        "streamfer.name": "camera",
        "streamfer.version": "tiny",
        "streamfer.task": "detection",
        "streamfer.labels": json.dumps(DETECTION_LABELS),
        "streamfer.input_size": "256",
    }
    return _save(graph, path, meta)


def slow_sensor_model(path: Path, layers: int) -> Path:
    """The sensor contract made deliberately expensive: ``layers`` x (MatMul 1024x1024, Tanh).

    Compute, not a sleep: a loaded machine makes it slower, never faster.
    """
    rng = np.random.default_rng(0)
    width = 1024
    inits = [
        numpy_helper.from_array(np.array([-1, 600], np.int64), "flat"),
        numpy_helper.from_array((rng.normal(size=(600, width)) / 25).astype(np.float32), "w_in"),
        numpy_helper.from_array((rng.normal(size=(width, width)) / 32).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(width, 4)).astype(np.float32), "w_out"),
    ]
    nodes = [
        helper.make_node("Reshape", ["window", "flat"], ["x"]),
        helper.make_node("MatMul", ["x", "w_in"], ["h0"]),
    ]
    for i in range(layers):  # one shared weight: a small file, the same work per layer
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("MatMul", [f"h{layers}", "w_out"], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    return _save_sensor(nodes, inits, "slow", path)


def sum_model(path: Path, features: int = 3) -> Path:
    """``y = x @ ones``: a record's decision is the sum of the numbers it carried."""
    ones = numpy_helper.from_array(np.ones((features, 1), np.float32), "ones")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "ones"], ["y"])],
        "tiny_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [ones],
    )
    return _save(graph, path, {"streamfer.name": "sum", "streamfer.version": "tiny"})


def yolo_model(path: Path, labels: list[str], size: int = 320, anchors: int = 6) -> Path:
    """A YOLOv5-layout detector: anchor 0 holds one confident box of class 1 in the middle of
    the input (objectness 0.9 x class score 0.8), the rest are empty."""
    c = len(labels)
    bias = np.zeros((1, anchors, 5 + c), np.float32)
    bias[0, :, :4] = [size / 2, size / 2, size / 4, size / 8]  # cx, cy, w, h in input pixels
    bias[0, 0, 4] = 0.9
    bias[0, 0, 5 + 1] = 0.8
    inits = [
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([3], np.int64), "axes_sq"),
        numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["images", "axes"], ["m"], keepdims=1),
        helper.make_node("Squeeze", ["m", "axes_sq"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "bias"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", anchors, 5 + c])],
        inits,
    )
    names = repr(dict(enumerate(labels)))  # "{0: 'person', 1: 'car'}", as Ultralytics writes
    return _save(graph, path, {"names": names, "imgsz": f"[{size}, {size}]"})


def constant_fraud_model(path: Path, score: float, features: int = 20) -> Path:
    """The fraud contract (``features`` float32 [N, 20] -> ``score`` [N, 1]) scoring every
    transaction ``score`` (NaN: a model that loads and returns NaN); ``features`` other
    than 20: a model whose input does not fit the fraud processor."""
    inits = [
        numpy_helper.from_array(np.zeros((features, 1), np.float32), "w"),
        numpy_helper.from_array(np.array([score], np.float32), "b"),
    ]
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_fraud",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    meta = {"streamfer.name": "fraud", "streamfer.version": f"constant-{score}"}
    return _save(graph, path, meta)
