"""Model outputs -> decisions (``schema: streamfer.decision.v1``).

One postprocessor per stream kind (a
:class:`~pipeline.processors.base.Postprocessor`) turns a whole batch of model
outputs into one result dict per item; :func:`build_decision` wraps a result
with the source coordinates, the model identity, the batch size and the
latency of every stage. The result shapes are:

* transaction: ``{"fraud_score", "action": "approve" | "review" | "decline"}``
  (score >= decline threshold -> decline; >= review -> review; else approve);
* sensor: ``{"class", "score"}``, class ``"uncertain"`` when the top
  probability is below ``min_confidence``;
* camera: ``{"detections": [{"label", "score", "box": [x1, y1, x2, y2]}]}`` in
  frame pixels, plus a top-level ``"frame": {"seq", "capture_ts_ns", "width",
  "height"}``.

Every decision also carries a top-level ``"stream"`` (the config's stream
name). Latencies are what is known when the decision is encoded: ``publish``
is null (it ends at the broker's acknowledgement, which the
``streamfer_stage_latency_seconds{stage="publish"}`` metric records) and
``e2e`` runs from the record timestamp to the hand-off to the producer (the
``streamfer_e2e_latency_seconds`` metric runs to the acknowledgement). The
document follows ``streamfer.streams.codecs.DECISION_SCHEMA``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamfer.errors import EngineError
from streamfer.pipeline.config import DetectionThresholds, FraudThresholds, SensorThresholds
from streamfer.pipeline.decisions import SCHEMA, ModelIdentity, key_text

__all__ = ["SCHEMA", "ModelIdentity", "build_decision", "key_text"]

UNCERTAIN = "uncertain"


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

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> list[dict[str, Any]]:
        scores = _single_output(outputs, self.output).reshape(len(metas), -1)[:, 0]
        return [
            {"fraud_score": s, "action": a}
            for s, a in zip(scores.astype(float).tolist(), self.actions(scores), strict=True)
        ]


class SensorPostprocessor:
    def __init__(
        self, thresholds: SensorThresholds, labels: Sequence[str], output: str | None = "probs"
    ) -> None:
        self.t = thresholds
        self.labels = list(labels)
        self.output = output

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> list[dict[str, Any]]:
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


class DetectionPostprocessor:
    def __init__(
        self, thresholds: DetectionThresholds, labels: Sequence[str], output: str | None = "output0"
    ) -> None:
        self.t = thresholds
        self.labels = list(labels)
        self.output = output

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> list[dict[str, Any]]:
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


def build_decision(
    *,
    stream: str,
    kind: str,
    record: Any,
    model: ModelIdentity,
    result: Mapping[str, Any],
    batch_size: int,
    latency_ms: Mapping[str, float | None],
    meta: Any = None,
) -> dict[str, Any]:
    """The decision document for one record (``record`` is a ``streams.records.Record``)."""
    decision = {
        "schema": SCHEMA,
        "stream": stream,
        "kind": kind,
        "source": {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": key_text(record.key),
        },
        "model": {
            "name": model.name,
            "version": model.version,
            "engine": model.engine,
            "precision": model.precision,
        },
        "result": dict(result),
        "batch_size": batch_size,
        "latency_ms": {k: None if v is None else round(v, 3) for k, v in latency_ms.items()},
    }
    if isinstance(meta, CameraMeta):
        decision["frame"] = {
            "seq": meta.frame_seq,
            "capture_ts_ns": meta.capture_ts_ns,
            "width": meta.width,
            "height": meta.height,
        }
    return decision
