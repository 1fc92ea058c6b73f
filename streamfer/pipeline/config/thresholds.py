"""A stream's decision thresholds, one section per built-in kind (``fraud``, ``detection``,
``sensor``)."""

from __future__ import annotations

from pydantic import Field

from streamfer.pipeline.config.base import Frozen


class FraudThresholds(Frozen):
    """Score >= review -> review; score >= decline -> decline; else approve."""

    review: float = Field(default=0.5, ge=0, le=1)
    """Score at or above which a transaction is marked review."""
    decline: float = Field(default=0.9, ge=0, le=1)
    """Score at or above which a transaction is declined."""


class DetectionThresholds(Frozen):
    """``labels``: the detector's class names in output order, for a model whose ONNX
    metadata carries none (or the wrong ones); unset: ``streamfer.labels`` or the
    Ultralytics ``names`` entry of the model's metadata."""

    score: float = Field(default=0.25, ge=0, le=1)
    """Detections below this score are discarded."""
    iou: float = Field(default=0.45, ge=0, le=1)
    """Overlap above which non-maximum suppression keeps only the best box."""
    max_detections: int = Field(default=100, ge=1)
    """Most detections kept per frame."""
    labels: list[str] | None = Field(default=None, min_length=1)
    """Class names in output order, for a model whose metadata has none; unset: the model's own."""


class SensorThresholds(Frozen):
    """Below ``min_confidence`` the event label is ``uncertain``."""

    min_confidence: float = Field(default=0.5, ge=0, le=1)
    """Below this confidence the event label is uncertain."""
