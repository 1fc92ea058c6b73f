"""Decoding YOLO-style detector outputs: layouts, thresholds, class-wise NMS, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamfer.errors import ConfigError, EngineError
from streamfer.models.detect import (
    Detection,
    cxcywh_to_xyxy,
    decode_detections,
    detect_layout,
    nms,
)
from streamfer.models.metrics import box_iou

LABELS = ["vehicle", "pedestrian", "cyclist", "sign"]


def v8(rows: list[tuple[float, float, float, float, int, float]], anchors: int = 50) -> np.ndarray:
    """YOLOv8 [4+C, A]: rows (cx, cy, w, h, class, score), other anchors empty."""
    out = np.zeros((4 + len(LABELS), anchors), np.float32)
    out[2:4] = 1.0
    for a, (cx, cy, w, h, c, s) in enumerate(rows):
        out[:4, a] = (cx, cy, w, h)
        out[4 + c, a] = s
    return out


def test_yolov8_layout_decodes_boxes_labels_scores() -> None:
    dets = decode_detections(v8([(50, 60, 20, 40, 1, 0.9), (150, 100, 30, 30, 3, 0.6)]), LABELS)
    assert [d.label for d in dets] == ["pedestrian", "sign"]
    assert dets[0].score == pytest.approx(0.9)
    assert dets[0].box == pytest.approx((40, 40, 60, 80))


def test_all_layouts_agree() -> None:
    out = v8([(50, 60, 20, 40, 1, 0.9), (150, 100, 30, 30, 3, 0.6), (10, 10, 4, 4, 0, 0.1)])
    yolov5 = np.concatenate([out.T[:, :4], np.ones((out.shape[1], 1), np.float32), out.T[:, 4:]], 1)
    expected = decode_detections(out, LABELS)
    assert decode_detections(out.T, LABELS) == expected
    assert decode_detections(yolov5, LABELS) == expected
    assert decode_detections(out[None], LABELS) == expected  # leading batch axis of 1
    assert detect_layout(out.shape, 4) == "yolov8"
    assert detect_layout(out.T.shape, 4) == "yolov8_transposed"
    assert detect_layout(yolov5.shape, 4) == "yolov5"


def test_yolov5_objectness_scales_scores() -> None:
    row = np.array([[50, 50, 10, 10, 0.5, 0.0, 0.8, 0.0, 0.0]], np.float32)
    (det,) = decode_detections(row, LABELS, score_threshold=0.1)
    assert det.label == "pedestrian" and det.score == pytest.approx(0.4)
    assert decode_detections(row, LABELS, score_threshold=0.5) == []


def test_nms_is_per_class() -> None:
    same = v8([(50, 50, 40, 40, 0, 0.9), (52, 50, 40, 40, 0, 0.8), (51, 50, 40, 40, 2, 0.7)])
    dets = decode_detections(same, LABELS, iou_threshold=0.45)
    assert [(d.label, round(d.score, 2)) for d in dets] == [("vehicle", 0.9), ("cyclist", 0.7)]
    loose = decode_detections(same, LABELS, iou_threshold=0.95)
    assert len(loose) == 3


def test_threshold_and_max_detections() -> None:
    rows = [(10.0 + 20 * i, 10.0, 10.0, 10.0, 0, 0.3 + 0.01 * i) for i in range(30)]
    assert len(decode_detections(v8(rows), LABELS, score_threshold=0.5)) == 10
    top = decode_detections(v8(rows), LABELS, max_detections=5)
    assert [round(d.score, 2) for d in top] == [0.59, 0.58, 0.57, 0.56, 0.55]


def test_empty_and_non_finite_outputs() -> None:
    assert decode_detections(np.zeros((8, 0), np.float32), LABELS) == []
    out = v8([(50, 50, 10, 10, 0, 0.9), (80, 80, 10, 10, 1, 0.8)])
    out[0, 0] = np.nan
    out[5, 2] = np.nan
    assert [d.label for d in decode_detections(out, LABELS)] == ["pedestrian"]


@pytest.mark.parametrize(
    "shape", [(7, 100), (100, 7), (100, 10), (8,), (2, 8, 100), (3, 8, 100, 1)]
)
def test_wrong_shapes_raise_engine_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(EngineError, match="detector output") as err:
        decode_detections(np.zeros(shape, np.float32), LABELS)
    assert str(shape) in str(err.value) or str(shape[1:]) in str(err.value)


def test_bad_arguments_raise_config_error() -> None:
    out = v8([])
    with pytest.raises(EngineError, match="dtype"):
        decode_detections(out.astype(np.int32), LABELS)
    for kwargs in ({"score_threshold": 1.5}, {"iou_threshold": 0.0}, {"max_detections": 0}):
        with pytest.raises(ConfigError):
            decode_detections(out, LABELS, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="labels"):
        decode_detections(out, [])


@settings(max_examples=80, deadline=None)
@given(
    raw=hnp.arrays(
        np.float32,
        st.tuples(st.just(8), st.integers(1, 120)),
        elements=st.floats(0, 1, width=32),
    ),
    iou=st.floats(0.1, 0.9),
    max_det=st.integers(1, 50),
)
def test_nms_properties(raw: np.ndarray, iou: float, max_det: int) -> None:
    out = raw.copy()
    out[:4] *= 200.0  # centres and sizes in pixels
    dets = decode_detections(
        out, LABELS, score_threshold=0.2, iou_threshold=iou, max_detections=max_det
    )
    assert len(dets) <= max_det
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True)
    assert all(s >= 0.2 for s in scores)
    for label in LABELS:
        boxes = np.array([d.box for d in dets if d.label == label]).reshape(-1, 4)
        ious = box_iou(boxes, boxes)
        np.fill_diagonal(ious, 0.0)
        assert (ious <= iou + 1e-5).all()
    # every anchor above threshold is either kept or overlaps a kept box of its class
    if len(dets) < max_det:
        best = out[4:].argmax(0)
        score = out[4:].max(0)
        for a in np.flatnonzero(score >= 0.2):
            cx, cy, w, h = out[:4, a]
            box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
            kept = np.array([d.box for d in dets if d.label == LABELS[best[a]]]).reshape(-1, 4)
            assert len(kept) > 0
            covered = box_iou(box, kept).max() > iou - 1e-4
            assert covered or any(np.allclose(box[0], k, atol=1e-3) for k in kept)


def reference(out: np.ndarray, layout: str, threshold: float) -> list[Detection]:
    """Box by box, as the detector's output is read: the first best class, its score in
    float32, boxes over the threshold with finite numbers only, highest score first."""
    rows = out.T if layout == "yolov8" else out
    found = []
    for a, row in enumerate(rows):
        scores = row[5:] * row[4] if layout == "yolov5" else row[4:]
        c = int(np.argmax(scores))
        score = np.float32(scores[c])
        box = row[:4].astype(np.float32)
        if score >= threshold and np.isfinite(score) and np.isfinite(box).all():
            found.append((-score, a, c, score, box))
    found.sort(key=lambda f: (f[0], f[1]))
    if not found:
        return []
    cls = np.array([f[2] for f in found])
    scores = np.array([f[3] for f in found], np.float32)
    boxes = cxcywh_to_xyxy(np.array([f[4] for f in found], np.float32))
    return [
        Detection(LABELS[int(cls[k])], float(scores[k]), tuple(float(v) for v in boxes[k]))
        for k in nms(boxes, scores, cls, 0.45, 100)
    ]


@settings(max_examples=150, deadline=None)
@given(
    layout=st.sampled_from(["yolov8", "yolov8_transposed", "yolov5"]),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    anchors=st.integers(0, 40),
    data=st.data(),
)
def test_decoding_equals_reading_the_output_box_by_box(
    layout: str, dtype: type, anchors: int, data: st.DataObject
) -> None:
    # scores cluster near the threshold and repeat (ties); NaN and infinities anywhere
    values = st.sampled_from([0.0, 0.1, 0.25, 0.2500001, 0.5, 0.9, 0.9, 1.0, 30.0, 150.0,
                              np.nan, np.inf, -np.inf])  # fmt: skip
    width = len(LABELS) + (5 if layout == "yolov5" else 4)
    shape = (width, anchors) if layout == "yolov8" else (anchors, width)
    out = data.draw(hnp.arrays(dtype, shape, elements=values))
    read_as = detect_layout(out.shape, len(LABELS))  # a square output reads as yolov8
    with np.errstate(invalid="ignore", over="ignore"):
        assert decode_detections(out, LABELS) == reference(out, read_as, 0.25)
