"""Held-out evaluation of the committed ONNX models, with onnxruntime and numpy only.

Training writes these numbers onto the model cards; CI recomputes them on
fresh samples (other seeds, smaller sizes) and compares within a tolerance.
Seeds used for training never appear here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamfer.models.detect import Detection, decode_detections, unletterbox
from streamfer.models.features import FEATURE_NAMES, FraudFeaturizer
from streamfer.models.generators.scenes import DETECTION_LABELS, Scene, SceneGenerator
from streamfer.models.generators.sensor import SENSOR_LABELS, SensorGenerator
from streamfer.models.generators.transactions import TransactionGenerator
from streamfer.models.metrics import (
    box_iou,
    mean_average_precision,
    precision_recall_at_rate,
    roc_auc,
)
from streamfer.models.preprocess import letterbox

MODELS_DIR = Path(__file__).resolve().parent
FRAUD_ONNX = MODELS_DIR / "fraud.onnx"
SENSOR_ONNX = MODELS_DIR / "sensor.onnx"
CAMERA_ONNX = MODELS_DIR / "camera.onnx"
REVIEW_RATE = 0.01  # share of transactions sent to manual review


@dataclass(frozen=True)
class FraudProtocol:
    seed: int
    n_records: int
    n_cards: int = 5000
    fraud_rate: float = 0.01


FRAUD_TRAIN = FraudProtocol(seed=0, n_records=600_000)
FRAUD_VALID = FraudProtocol(seed=500, n_records=100_000)
FRAUD_HELDOUT = FraudProtocol(seed=1001, n_records=200_000)
FRAUD_CHECK = FraudProtocol(seed=2002, n_records=20_000, n_cards=1000)  # CI's fresh sample

SENSOR_HELDOUT_SEED = 1001
SENSOR_HELDOUT_N = 6000


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def fraud_sample(p: FraudProtocol) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[n, F]`` and labels ``[n]`` of one generated stream, featurized in order."""
    gen = TransactionGenerator(seed=p.seed, fraud_rate=p.fraud_rate, n_cards=p.n_cards)
    feat = FraudFeaturizer()
    x = np.empty((p.n_records, len(FEATURE_NAMES)), dtype=np.float32)
    y = np.empty(p.n_records, dtype=np.int8)
    for i in range(p.n_records):
        tx, is_fraud = gen.next()
        x[i] = feat.transform(tx)
        y[i] = is_fraud
    return x, y


def fraud_scores(path: Path, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    sess = session(path)
    out = [sess.run(None, {"features": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out)[:, 0]


def evaluate_fraud(path: Path = FRAUD_ONNX, p: FraudProtocol = FRAUD_HELDOUT) -> dict[str, float]:
    x, y = fraud_sample(p)
    s = fraud_scores(path, x)
    precision, recall = precision_recall_at_rate(y, s, REVIEW_RATE)
    return {
        "roc_auc": roc_auc(y, s),
        "precision_at_review_rate": precision,
        "recall_at_review_rate": recall,
        "fraud_share": float(y.mean()),
        "n_records": float(len(y)),
    }


def sensor_sample(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``[n, 100, 6]`` and label indices ``[n]``."""
    gen = SensorGenerator(seed=seed)
    x = np.empty((n, 100, 6), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    for i in range(n):
        _, x[i], label = gen.next()
        y[i] = SENSOR_LABELS.index(label)
    return x, y


def evaluate_sensor(
    path: Path = SENSOR_ONNX, seed: int = SENSOR_HELDOUT_SEED, n: int = SENSOR_HELDOUT_N
) -> dict[str, float]:
    x, y = sensor_sample(seed, n)
    sess = session(path)
    probs = np.concatenate(
        [sess.run(None, {"window": x[i : i + 512]})[0] for i in range(0, n, 512)]
    )
    pred = probs.argmax(axis=1)
    result = {"accuracy": float((pred == y).mean())}
    for k, label in enumerate(SENSOR_LABELS):
        tp = float(((pred == k) & (y == k)).sum())
        result[f"recall_{label}"] = tp / max(1.0, float((y == k).sum()))
        result[f"precision_{label}"] = tp / max(1.0, float((pred == k).sum()))
    return result


CAMERA_HELDOUT_SEED = 1001
CAMERA_HELDOUT_SCENES = 400
CAMERA_INPUT = 256


def camera_sample(seed: int, n: int) -> list[Scene]:
    """``n`` scenes: the first frame of cameras ``0..n-1`` of a ``SceneGenerator(seed)``."""
    gen = SceneGenerator(seed=seed)
    return [gen.render(camera_id) for camera_id in range(n)]


def detect_scenes(
    path: Path, scenes: list[Scene], score_threshold: float = 0.001, batch: int = 32
) -> list[list[Detection]]:
    """Detections per scene in frame pixels, through letterbox, ONNX Runtime and NMS."""
    sess = session(path, threads=2)
    out: list[list[Detection]] = []
    for i in range(0, len(scenes), batch):
        chunk = scenes[i : i + batch]
        pairs = [letterbox(s.image, CAMERA_INPUT) for s in chunk]
        raw = sess.run(None, {"images": np.stack([t for t, _ in pairs])})[0]
        for s, (_, lb), r in zip(chunk, pairs, raw, strict=True):
            dets = decode_detections(r, DETECTION_LABELS, score_threshold=score_threshold)
            out.append(unletterbox(dets, lb, s.image.shape[1], s.image.shape[0]))
    return out


def evaluate_camera(
    path: Path = CAMERA_ONNX,
    seed: int = CAMERA_HELDOUT_SEED,
    n: int = CAMERA_HELDOUT_SCENES,
    operating_threshold: float = 0.25,
) -> dict[str, float]:
    """mAP@0.5 over the classes, AP per class, and recall/precision at ``operating_threshold``."""
    scenes = camera_sample(seed, n)
    found = detect_scenes(path, scenes)
    truths = [(s.boxes, np.array([DETECTION_LABELS.index(lb) for lb in s.labels])) for s in scenes]
    preds = [
        (
            np.array([d.box for d in ds], dtype=np.float32).reshape(-1, 4),
            np.array([DETECTION_LABELS.index(d.label) for d in ds], dtype=np.int64),
            np.array([d.score for d in ds], dtype=np.float32),
        )
        for ds in found
    ]
    m_ap, aps = mean_average_precision(truths, preds, len(DETECTION_LABELS), 0.5)
    result = {
        "map50": m_ap,
        "n_scenes": float(n),
        "n_objects": float(sum(len(t[1]) for t in truths)),
    }
    for label, ap in zip(DETECTION_LABELS, aps, strict=True):
        result[f"ap50_{label}"] = ap
    tp = n_pred = 0
    for (tb, tl), (pb, pl, ps) in zip(truths, preds, strict=True):
        keep = ps >= operating_threshold
        n_pred += int(keep.sum())
        tp += match_count(tb, tl, pb[keep], pl[keep])
    result["recall_at_0.25"] = tp / max(1.0, result["n_objects"])
    result["precision_at_0.25"] = tp / max(1, n_pred)
    return result


def match_count(
    truth_boxes: np.ndarray, truth_labels: np.ndarray, boxes: np.ndarray, labels: np.ndarray
) -> int:
    """Ground-truth boxes matched one-to-one by a same-label box at IoU >= 0.5."""
    if len(truth_boxes) == 0 or len(boxes) == 0:
        return 0
    iou = box_iou(truth_boxes, boxes)
    iou[np.asarray(truth_labels)[:, None] != np.asarray(labels)[None, :]] = 0.0
    hits = 0
    while True:
        t, p = np.unravel_index(int(np.argmax(iou)), iou.shape)
        if iou[t, p] < 0.5:
            return hits
        hits += 1
        iou[t, :] = 0.0
        iou[:, p] = 0.0
