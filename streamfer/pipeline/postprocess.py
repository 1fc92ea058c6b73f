"""Model outputs -> decision results, one per item of a batch.

One postprocessor per stream kind (a
:class:`~pipeline.processors.base.Postprocessor`) turns a whole batch of model
outputs into one result dict per item; the decision document around a result
(source, model identity, batch size, latencies) is encoded by
:class:`streamfer.pipeline.decisions.DecisionEncoder` alone. The result shapes are:

* transaction: ``{"fraud_score", "action": "approve" | "review" | "decline"}``
  (score >= decline threshold -> decline; >= review -> review; else approve);
* sensor: ``{"class", "score"}``, class ``"uncertain"`` when the top
  probability is below ``min_confidence``;
* camera: ``{"detections": [{"label", "score", "box": [x1, y1, x2, y2]}]}`` in
  frame pixels, plus a top-level ``"frame": {"seq", "capture_ts_ns", "width",
  "height"}``.

Model labels come from the ONNX metadata (``streamfer.labels``, or the
``names`` an Ultralytics export writes), unless the config names them.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from streamfer.errors import EngineError
from streamfer.pipeline.config import DetectionThresholds, FraudThresholds, SensorThresholds
from streamfer.pipeline.decisions import ModelIdentity

__all__ = ["ModelIdentity"]  # where the benchmarks and plug-ins have found it

UNCERTAIN = "uncertain"
T = TypeVar("T")
USUAL = "<usual>"  # output argument left out: the kind's usual output name
Result = dict[str, Any]


@dataclass(frozen=True)
class CameraMeta:
    """What postprocessing needs to map detections back to the frame."""

    letterbox: Any  # models.preprocess.Letterbox (scale, pad_x, pad_y)
    width: int
    height: int
    frame_seq: int | None
    capture_ts_ns: int | None


def labels_from_metadata(metadata: Mapping[str, str], model: str) -> list[str]:
    raw = metadata.get("streamfer.labels")
    try:
        labels = json.loads(raw) if raw is not None else None
    except ValueError:
        labels = None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise EngineError(
            f"{model} | metadata streamfer.labels is missing or not a JSON list of strings "
            f"(got {raw!r}). Note: the model's ONNX metadata_props must carry its labels"
        )
    return labels


def detector_labels(
    metadata: Mapping[str, str], configured: Sequence[str] | None, model: str
) -> list[str]:
    """A detector's class names: ``detection.labels`` when configured, else the model's
    ``streamfer.labels``, else the ``names`` Ultralytics exports write (``{0: 'person', ...}``)."""
    if configured:
        return list(configured)
    if "streamfer.labels" in metadata or "names" not in metadata:
        return labels_from_metadata(metadata, model)
    raw = metadata["names"]
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        names = None
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
        raise EngineError(
            f"{model} | metadata names is not a list of class names or a dict 0..N-1 -> name "
            f"(got {raw[:80]!r}). Note: set detection.labels in the stream's config instead"
        )
    return names


def _single_output(outputs: Mapping[str, np.ndarray], name: str | None) -> np.ndarray:
    if name is not None and name in outputs:
        return outputs[name]
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    raise EngineError(
        f"postprocess | output {name!r} not found (got {sorted(outputs)}). "
        "Note: expected the model's declared output"
    )


class FraudPostprocessor:
    def __init__(self, thresholds: FraudThresholds, output: str | None = "score") -> None:
        self.t = thresholds
        self.output = output

    def actions(self, scores: np.ndarray) -> list[str]:
        """Compared in the model's float32 so a score printed as 0.9 meets a 0.9 threshold."""
        s = scores.astype(np.float32)
        decline, review = np.float32(self.t.decline), np.float32(self.t.review)
        return np.where(
            s >= decline, "decline", np.where(s >= review, "review", "approve")
        ).tolist()

    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        scores = _single_output(outputs, self.output).reshape(len(metas), -1)[:, 0]
        return [
            {"fraud_score": s, "action": a}
            for s, a in zip(scores.astype(float).tolist(), self.actions(scores), strict=True)
        ]


class _Labelled(Generic[T]):
    """A postprocessor of class scores: its thresholds, the class labels, the output read."""

    usual_output = ""  # the output a model of this kind names its scores

    def __init__(self, thresholds: T, labels: Sequence[str], output: str | None = USUAL) -> None:
        self.t = thresholds
        self.labels = list(labels)
        self.output = self.usual_output if output == USUAL else output


class SensorPostprocessor(_Labelled[SensorThresholds]):
    usual_output = "probs"

    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        probs = _single_output(outputs, self.output).reshape(len(metas), -1).astype(float)
        if probs.shape[1] != len(self.labels):
            raise EngineError(
                f"sensor postprocess | {probs.shape[1]} class scores for {len(self.labels)} "
                f"labels {self.labels}. Note: model output and labels must agree"
            )
        out = []
        for row in probs.tolist():
            top = max(range(len(row)), key=row.__getitem__)
            label = self.labels[top] if row[top] >= self.t.min_confidence else UNCERTAIN
            out.append({"class": label, "score": row[top]})
        return out


class DetectionPostprocessor(_Labelled[DetectionThresholds]):
    usual_output = "output0"

    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        from streamfer.models.detect import decode_detections, unletterbox

        raw = _single_output(outputs, self.output)
        out = []
        for i, meta in enumerate(metas):
            dets = decode_detections(
                raw[i],
                self.labels,
                score_threshold=self.t.score,
                iou_threshold=self.t.iou,
                max_detections=self.t.max_detections,
            )
            dets = unletterbox(dets, meta.letterbox, meta.width, meta.height)
            out.append(
                {
                    "detections": [
                        {
                            "label": d.label,
                            "score": float(d.score),
                            "box": [float(v) for v in d.box],
                        }
                        for d in dets
                    ]
                }
            )
        return out
