"""Detector output decoding: YOLO-style tensors -> scored, class-wise NMS'd boxes.

One image's raw output is accepted in the common layouts, with ``C = len(labels)``:

- YOLOv8 / v11 ``[4 + C, A]``: rows cx, cy, w, h, then C class scores (the
  reference camera model emits this);
- the same transposed, ``[A, 4 + C]``;
- YOLOv5 / v7 ``[A, 5 + C]``: cx, cy, w, h, objectness, then C class scores
  (score = objectness x class score).

A leading batch axis of size 1 is dropped. When a shape fits two readings
(only if ``A`` equals ``4 + C`` or ``5 + C``) the YOLOv8 ``[4 + C, A]`` reading
wins. Coordinates are input pixels (the letterboxed square); ``unletterbox``
maps them back to the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from streamfer.errors import ConfigError, EngineError

Layout = Literal["yolov8", "yolov8_transposed", "yolov5"]
_MAX_CANDIDATES = 4096  # NMS input cap: the highest-scoring boxes only


@dataclass(frozen=True)
class Detection:
    """A labelled box ``(x1, y1, x2, y2)`` with its score in 0..1."""

    label: str
    score: float
    box: tuple[float, float, float, float]


class LetterboxLike(Protocol):
    """What ``streamfer.models.preprocess.Letterbox`` provides: ``input = frame * scale + pad``."""

    @property
    def scale(self) -> float: ...
    @property
    def pad_x(self) -> int: ...
    @property
    def pad_y(self) -> int: ...


def detect_layout(shape: tuple[int, ...], n_classes: int) -> Layout:
    """Which layout a 2-D output of ``shape`` is for ``n_classes`` classes, or EngineError."""
    if len(shape) != 2:
        raise EngineError(
            f"detector output | shape {shape}. Note: expected 2-D [4+C, A], [A, 4+C] or [A, 5+C] "
            f"per image with C={n_classes}"
        )
    rows, cols = shape
    if rows == 4 + n_classes:
        return "yolov8"
    if cols == 4 + n_classes:
        return "yolov8_transposed"
    if cols == 5 + n_classes:
        return "yolov5"
    raise EngineError(
        f"detector output | shape {shape} does not fit {n_classes} labels. Note: expected "
        f"[{4 + n_classes}, A] or [A, {4 + n_classes}] (YOLOv8) or [A, {5 + n_classes}] (YOLOv5)"
    )


def decode_detections(
    output: np.ndarray,
    labels: Sequence[str],
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> list[Detection]:
    """Detections of ONE image, highest score first, after per-class NMS."""
    _check_thresholds(labels, score_threshold, iou_threshold, max_detections)
    arr = np.asarray(output)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if not np.issubdtype(arr.dtype, np.floating):
        raise EngineError(f"detector output | dtype {arr.dtype}. Note: expected floating point")
    n_classes = len(labels)
    layout = detect_layout(tuple(arr.shape), n_classes)
    # one column per candidate box: (4 [+ objectness] + classes, boxes)
    cols = arr if layout == "yolov8" else arr.T
    if cols.shape[1] == 0:
        return []
    class_scores = cols[5:] * cols[4:5] if layout == "yolov5" else cols[4:]
    # each box's best class score first, so the rest is computed for the few boxes over the
    # threshold only (a NaN best fails the comparison; an infinite one the check below)
    best = class_scores.max(axis=0).astype(np.float32)
    idx = np.flatnonzero(best >= score_threshold)
    if idx.size == 0:
        return []
    boxes_cxcywh = cols[:4, idx].T.astype(np.float32)
    scores = best[idx]
    finite = np.isfinite(scores) & np.isfinite(boxes_cxcywh).all(1)
    idx, scores, boxes_cxcywh = idx[finite], scores[finite], boxes_cxcywh[finite]
    if idx.size == 0:
        return []
    cls = np.argmax(class_scores[:, idx], axis=0)  # the first best class, as over all boxes
    order = np.argsort(-scores, kind="stable")[:_MAX_CANDIDATES]
    cls, scores = cls[order], scores[order]
    boxes = cxcywh_to_xyxy(boxes_cxcywh[order])
    kept = nms(boxes, scores, cls, iou_threshold, max_detections)
    return [
        Detection(
            labels[int(cls[k])],
            float(scores[k]),
            (float(boxes[k, 0]), float(boxes[k, 1]), float(boxes[k, 2]), float(boxes[k, 3])),
        )
        for k in kept
    ]


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = np.abs(b[:, 2:4]) / 2.0
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    max_keep: int | None = None,
) -> list[int]:
    """Greedy per-class NMS; indices of kept boxes, highest score first, at most ``max_keep``."""
    order = np.argsort(-scores, kind="stable")
    # Shift each class to its own region so one greedy pass never compares classes.
    span = float(np.max(np.abs(boxes))) * 2.0 + 1.0 if boxes.size else 1.0
    shifted = boxes + (classes.astype(np.float64) * span)[:, None]
    areas = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    kept: list[int] = []
    while order.size:
        i = int(order[0])
        kept.append(i)
        if max_keep is not None and len(kept) >= max_keep:
            break
        rest = order[1:]
        lt = np.maximum(shifted[i, :2], shifted[rest, :2])
        rb = np.minimum(shifted[i, 2:], shifted[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0.0, None), axis=1)
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= iou_threshold]
    return kept


def unletterbox(
    dets: Sequence[Detection], lb: LetterboxLike, width: int, height: int
) -> list[Detection]:
    """Detections in frame pixels (clipped to ``width x height``); boxes left empty are dropped."""
    if lb.scale <= 0:
        raise EngineError(f"unletterbox | scale {lb.scale}. Note: expected a positive scale")
    out: list[Detection] = []
    for d in dets:
        x1, y1, x2, y2 = d.box
        fx1 = min(max((x1 - lb.pad_x) / lb.scale, 0.0), float(width))
        fx2 = min(max((x2 - lb.pad_x) / lb.scale, 0.0), float(width))
        fy1 = min(max((y1 - lb.pad_y) / lb.scale, 0.0), float(height))
        fy2 = min(max((y2 - lb.pad_y) / lb.scale, 0.0), float(height))
        if fx2 > fx1 and fy2 > fy1:
            out.append(Detection(d.label, d.score, (fx1, fy1, fx2, fy2)))
    return out


def _check_thresholds(
    labels: Sequence[str], score_threshold: float, iou_threshold: float, max_detections: int
) -> None:
    if len(labels) == 0:
        raise ConfigError("detection labels | empty. Note: expected one label per class score")
    if not 0.0 <= score_threshold <= 1.0:
        raise ConfigError(f"score_threshold | got {score_threshold!r}. Note: expected 0..1")
    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(f"iou_threshold | got {iou_threshold!r}. Note: expected 0 < iou <= 1")
    if max_detections < 1:
        raise ConfigError(f"max_detections | got {max_detections!r}. Note: expected >= 1")
