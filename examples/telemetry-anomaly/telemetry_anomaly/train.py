"""Train the telemetry autoencoder with numpy and export it to ONNX (seconds on one core).

    python -m telemetry_anomaly.train            # writes telemetry_anomaly/telemetry_ae.onnx

The network, 5 -> 8 (tanh) -> 2 -> 8 (tanh) -> 5, learns to reconstruct
standardised readings of healthy machines through a 2-number bottleneck, so
it learns how the signals move together; a reading that breaks that (a
fault) comes back with a large error. Training: mean squared error, Adam
(lr 0.01 then 0.002), minibatches of 256, float64, seeds fixed, written out
in float32. The ONNX graph standardises its input itself and outputs, per
record, ``errors`` (the squared error of each standardised signal) and
``score`` (their mean). The alert threshold, the 99.5th percentile of the
score on fresh healthy readings, goes into the model's metadata
(``telemetry.threshold``), with the feature order (``telemetry.features``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from telemetry_anomaly.data import FEATURES, TelemetryGenerator, matrix

MODEL_PATH = Path(__file__).resolve().parent / "telemetry_ae.onnx"
VERSION = "1"
HIDDEN, LATENT = 8, 2
SIZES = (len(FEATURES), HIDDEN, LATENT, HIDDEN, len(FEATURES))
THRESHOLD_QUANTILE = 0.995


@dataclass
class Autoencoder:
    """Weights and biases of the four layers, and the standardisation."""

    mean: np.ndarray
    std: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def forward(self, xs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Reconstruction of standardised ``xs`` and each layer's output (for backprop)."""
        acts = [xs]
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = acts[-1] @ w + b
            acts.append(np.tanh(z) if i in (0, 2) else z)
        return acts[-1], acts

    def scores(self, x: np.ndarray) -> np.ndarray:
        xs = (x - self.mean) / self.std
        recon, _ = self.forward(xs)
        return ((recon - xs) ** 2).mean(axis=1)


def fit(x: np.ndarray, seed: int = 7, steps: int = 3000, batch: int = 256) -> Autoencoder:
    """Adam on mean squared reconstruction error of standardised ``x``."""
    rng = np.random.default_rng(seed)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / std
    weights = [rng.normal(0.0, 1.0 / np.sqrt(a), (a, b)) for a, b in pairwise(SIZES)]
    biases = [np.zeros(b) for b in SIZES[1:]]
    model = Autoencoder(mean, std, weights, biases)
    params = [*weights, *biases]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    for step in range(1, steps + 1):
        lr = 0.01 if step < steps * 2 // 3 else 0.002
        xb = xs[rng.integers(len(xs), size=batch)]
        grads = _gradients(model, xb)
        for p, g, a, v in zip(params, grads, m1, m2, strict=True):
            a *= 0.9
            a += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= lr * (a / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return model


def _gradients(model: Autoencoder, xb: np.ndarray) -> list[np.ndarray]:
    recon, acts = model.forward(xb)
    delta = 2.0 * (recon - xb) / xb.size  # d loss / d output
    gw: list[np.ndarray] = []
    gb: list[np.ndarray] = []
    for i in reversed(range(len(model.weights))):
        if i in (0, 2):  # through tanh
            delta = delta * (1.0 - acts[i + 1] ** 2)
        gw.insert(0, acts[i].T @ delta)
        gb.insert(0, delta.sum(axis=0))
        delta = delta @ model.weights[i].T
    return [*gw, *gb]


def export(model: Autoencoder, threshold: float, path: Path) -> Path:
    """The ONNX graph: ``telemetry`` float32 [N, 5] -> ``score`` [N, 1], ``errors`` [N, 5]."""
    f32 = np.float32
    inits = [
        numpy_helper.from_array(model.mean.astype(f32), "mean"),
        numpy_helper.from_array(model.std.astype(f32), "std"),
        numpy_helper.from_array(np.array([1], np.int64), "features_axis"),
    ]
    nodes = [
        helper.make_node("Sub", ["telemetry", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["h0"]),
    ]
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        inits += [numpy_helper.from_array(w.astype(f32), f"w{i}"),
                  numpy_helper.from_array(b.astype(f32), f"b{i}")]  # fmt: skip
        nodes += [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"])]  # fmt: skip
        if i in (0, 2):
            nodes.append(helper.make_node("Tanh", [f"z{i}"], [f"h{i + 1}"]))
        else:
            nodes.append(helper.make_node("Identity", [f"z{i}"], [f"h{i + 1}"]))
    last = f"h{len(model.weights)}"
    nodes += [
        helper.make_node("Sub", [last, "h0"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["errors"]),
        helper.make_node("ReduceMean", ["errors", "features_axis"], ["score"], keepdims=1),
    ]
    n = len(FEATURES)
    graph = helper.make_graph(
        nodes,
        "telemetry_autoencoder",
        [helper.make_tensor_value_info("telemetry", TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("errors", TensorProto.FLOAT, ["N", n])],
        inits,
    )  # fmt: skip
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx_model.ir_version = 8
    onnx_model.producer_name = "telemetry_anomaly.train"
    meta = {
        "streamfer.name": "telemetry_ae",
        "streamfer.version": VERSION,
        "streamfer.task": "anomaly",
        "telemetry.features": json.dumps(list(FEATURES)),
        "telemetry.threshold": f"{threshold:.6g}",
    }
    for key, value in meta.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))
    return path


def train(path: Path = MODEL_PATH, samples: int = 20_000) -> tuple[Autoencoder, float]:
    """Fit on healthy readings (seed 0), set the threshold on fresh ones (seed 1), export."""
    x, _ = TelemetryGenerator(seed=0).take(samples)
    model = fit(matrix(x).astype(np.float64))
    fresh, _ = TelemetryGenerator(seed=1).take(5_000)
    threshold = float(np.quantile(model.scores(matrix(fresh).astype(np.float64)),
                                  THRESHOLD_QUANTILE))  # fmt: skip
    export(model, threshold, path)
    return model, threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help="where the ONNX file goes")
    args = parser.parse_args()
    _, threshold = train(args.out)
    print(f"{args.out}: {args.out.stat().st_size} bytes, threshold {threshold:.4g}")


if __name__ == "__main__":
    main()
