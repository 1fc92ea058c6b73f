"""Evaluation metrics in plain numpy (no scikit-learn): ROC-AUC, review-rate
precision, accuracy, and detection mAP@IoU."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc | got {n_pos} positives, {n_neg} negatives. Note: need both")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    bounds = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [s.size]))
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_recall_at_rate(
    labels: np.ndarray, scores: np.ndarray, review_rate: float
) -> tuple[float, float]:
    """Precision and recall when the top ``review_rate`` share of scores is flagged."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    k = max(1, round(review_rate * y.size))
    top = np.argsort(-s, kind="mergesort")[:k]
    hits = int(y[top].sum())
    return hits / k, hits / max(1, int(y.sum()))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of x1 y1 x2 y2 boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (area under the precision envelope)."""
    r = np.concatenate(([0.0], recall, [1.0]))
    p = np.concatenate(([1.0], precision, [0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


# One image: (boxes [K, 4], label indices [K]) for truth; (boxes, labels, scores) for predictions.
Truth = tuple[np.ndarray, np.ndarray]
Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


def mean_average_precision(
    truths: Sequence[Truth],
    predictions: Sequence[Prediction],
    n_classes: int,
    iou_threshold: float = 0.5,
) -> tuple[float, list[float]]:
    """VOC-style mAP at ``iou_threshold`` over images; also AP per class (nan: no truth)."""
    if len(truths) != len(predictions):
        raise ValueError(f"mAP | {len(truths)} truths vs {len(predictions)} predictions")
    aps: list[float] = []
    for c in range(n_classes):
        n_truth = 0
        scored: list[tuple[float, bool]] = []
        for (tb, tl), (pb, pl, ps) in zip(truths, predictions, strict=True):
            gt = np.asarray(tb).reshape(-1, 4)[np.asarray(tl) == c]
            n_truth += len(gt)
            mask = np.asarray(pl) == c
            boxes = np.asarray(pb).reshape(-1, 4)[mask]
            scores = np.asarray(ps)[mask]
            order = np.argsort(-scores, kind="mergesort")
            used = np.zeros(len(gt), dtype=bool)
            ious = box_iou(boxes, gt) if len(gt) else np.zeros((len(boxes), 0))
            for i in order:
                hit = False
                if len(gt):
                    cand = np.where(used, -1.0, ious[i])
                    j = int(np.argmax(cand))
                    if cand[j] >= iou_threshold:
                        used[j] = True
                        hit = True
                scored.append((float(scores[i]), hit))
        if n_truth == 0:
            aps.append(float("nan"))
            continue
        scored.sort(key=lambda t: -t[0])
        tp = np.cumsum([h for _, h in scored], dtype=np.float64)
        fp = np.cumsum([not h for _, h in scored], dtype=np.float64)
        recall = tp / n_truth if len(scored) else np.zeros(0)
        precision = tp / np.maximum(tp + fp, 1e-12) if len(scored) else np.zeros(0)
        aps.append(average_precision(recall, precision))
    valid = [a for a in aps if not np.isnan(a)]
    return (float(np.mean(valid)) if valid else 0.0), aps
