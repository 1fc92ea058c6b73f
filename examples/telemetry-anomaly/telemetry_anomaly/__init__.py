"""Anomaly scoring of machine telemetry: a streamfer processor plug-in and its model.

``TelemetryAnomaly`` is registered as the ``telemetry-anomaly`` processor
(entry-point group ``streamfer.processors``), a stateful one: each machine's
``Baseline`` lives in streamfer's state store (``BASELINE_CODEC``: to bytes and
back exactly); ``telemetry_anomaly.train``
trains the autoencoder it runs; ``telemetry_anomaly.produce`` feeds a topic.
"""

from telemetry_anomaly.baseline import BASELINE_CODEC, Baseline
from telemetry_anomaly.processor import AnomalyConfig, TelemetryAnomaly

__all__ = ["BASELINE_CODEC", "AnomalyConfig", "Baseline", "TelemetryAnomaly"]
