"""The plug-in: machine telemetry in, an anomaly score and verdict out.

A record is one JSON reading keyed by machine id::

    {"machine_id": "machine-007", "ts": 1767225600000, "rpm": 1480.0,
     "temperature_c": 61.2, "vibration_mm_s": 3.0, "current_a": 13.7, "pressure_bar": 5.9}

and its decision's ``result``::

    {"machine_id": "machine-007", "anomaly_score": 0.0041, "anomaly": false,
     "suspect": "vibration_mm_s", "threshold": 0.0261}

``suspect`` is the signal the model reconstructs worst. An anomalous reading's
decision also carries a Kafka header (``anomaly: <suspect>`` by default), so
an alerting consumer can filter without parsing JSON. Readings that are not
JSON objects with the five finite numbers are dead-lettered with a reason
(``bad_json``, ``missing_field``, ``bad_field``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated

import msgspec
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamfer.pipeline.processors import (
    CodecError,
    ConfigError,
    ConfigProblem,
    Output,
    ProcessorContext,
    Record,
    RecordProcessor,
    Result,
)
from telemetry_anomaly.data import FEATURES

_Reading = Annotated[float, msgspec.Meta(ge=-1e6, le=1e6)]  # finite: msgspec refuses NaN here
_HEADER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Sample(msgspec.Struct, forbid_unknown_fields=False):
    """The fields a reading must carry; others are ignored."""

    machine_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    rpm: _Reading
    temperature_c: _Reading
    vibration_mm_s: _Reading
    current_a: _Reading
    pressure_bar: _Reading


class AnomalyConfig(BaseModel):
    """``processor_config`` of the plug-in.

    ``threshold``: the score from which a reading is an anomaly (unset: the model's
    ``telemetry.threshold``); ``alert_header``: the header anomalous decisions carry
    (its value: the suspect signal); ``explain``: add every signal's error to the result.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float | None = Field(default=None, gt=0)
    alert_header: str = "anomaly"
    explain: bool = False


class TelemetryAnomaly(RecordProcessor[Sample]):
    """``kind: custom`` processor for the telemetry autoencoder (see the module docstring)."""

    config_model = AnomalyConfig
    expects = "a JSON telemetry reading"

    @staticmethod
    def validate_config(config: AnomalyConfig) -> list[ConfigProblem]:
        if not _HEADER.match(config.alert_header):
            return [ConfigProblem("alert_header", "not a usable header name",
                                  config.alert_header, ["1-64 of A-Z a-z 0-9 _ . -"])]  # fmt: skip
        return []

    def __init__(self, context: ProcessorContext) -> None:
        super().__init__(context)
        config: AnomalyConfig = context.config
        features = json.loads(context.metadata.get("telemetry.features", "[]"))
        if tuple(features) != FEATURES or context.input.shape[1:] != (len(FEATURES),):
            raise ConfigError(
                f"{context.model} | model features {features}, input {context.input.describe()}. "
                f"Note: expected a telemetry autoencoder over {list(FEATURES)}"
            )
        self.threshold = config.threshold or float(context.metadata["telemetry.threshold"])
        self.header = config.alert_header
        self.explain = config.explain
        self._decode = msgspec.json.Decoder(Sample).decode

    def decode(self, record: Record) -> Sample:
        try:
            return self._decode(record.value or b"")
        except msgspec.ValidationError as exc:
            reason = "missing_field" if "missing required field" in str(exc) else "bad_field"
            raise CodecError(f"{record.coords} | {exc}", reason) from None
        except msgspec.DecodeError as exc:
            raise CodecError(f"{record.coords} | invalid JSON ({exc})", "bad_json") from None

    def features(self, item: Sample) -> np.ndarray:
        return np.array([getattr(item, name) for name in FEATURES], dtype=np.float32)

    def result(self, item: Sample, outputs: Mapping[str, np.ndarray]) -> Result:
        score = float(outputs["score"][0])
        errors = outputs["errors"]
        suspect = FEATURES[int(errors.argmax())]
        anomaly = score >= self.threshold
        result: dict[str, object] = {
            "machine_id": item.machine_id,
            "anomaly_score": round(score, 6),
            "anomaly": anomaly,
            "suspect": suspect,
            "threshold": round(self.threshold, 6),
        }
        if self.explain:
            per_signal = zip(FEATURES, errors.tolist(), strict=True)
            result["errors"] = {name: round(error, 6) for name, error in per_signal}
        if anomaly:
            return Output(result, headers=[(self.header, suspect.encode())])
        return result
