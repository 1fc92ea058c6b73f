"""The plug-in: machine telemetry in, an anomaly score and verdict out.

A record is one JSON reading keyed by machine id::

    {"machine_id": "machine-007", "ts": 1767225600000, "rpm": 1480.0,
     "temperature_c": 61.2, "vibration_mm_s": 3.0, "current_a": 13.7, "pressure_bar": 5.9}

and its decision's ``result``::

    {"machine_id": "machine-007", "anomaly_score": 0.0041, "threshold": 0.0261,
     "suspect": "vibration_mm_s", "z_score": 1.37, "z_signal": "rpm",
     "baseline": {"readings": 48, "mean": 1502.3, "std": 61.9}, "anomaly": false}

Two views of a reading. The model's: ``anomaly_score`` is the autoencoder's
reconstruction error (do the five signals agree, as on a healthy machine?),
``suspect`` the signal it reconstructs worst. The machine's own: each machine
has a :class:`~telemetry_anomaly.baseline.Baseline`, an exponentially weighted
mean and variance of each of its signals, kept per machine id in streamfer's
state store; ``z_score`` is how far the reading's most unusual signal
(``z_signal``) lies from that machine's baseline, in standard deviations, and
``baseline`` that signal's baseline before this reading (null until the
machine has ``warmup`` readings). A reading is an ``anomaly`` when the score
reaches ``threshold`` or the z-score reaches ``z_threshold``.

The baseline is updated in ``step``, before the model runs (a stateful
processor reads and writes its state in ``prepare``; see "Stateful
processors" in ``streamfer.pipeline.processors.base``), so it follows the readings
themselves, not the model's score. With ``state.enabled`` the baselines
survive a restart or a rebalance exactly; without it they live in memory.

An anomalous reading's decision also carries a Kafka header (``anomaly:
<suspect>`` by default), so an alerting consumer can filter without parsing
JSON. Readings that are not JSON objects with the five finite numbers are
dead-lettered with a reason (``bad_json``, ``missing_field``, ``bad_field``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, NamedTuple

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
    Result,
    StatefulRecordProcessor,
)
from telemetry_anomaly.baseline import BASELINE_CODEC, Baseline
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
    ``telemetry.threshold``); ``z_threshold``: the z-score from which a reading is an
    anomaly against its machine's baseline; ``alpha``: the weight of a new reading in
    the baseline (about ``2 / alpha`` recent readings count); ``warmup``: readings a
    machine needs before its baseline scores; ``alert_header``: the header anomalous
    decisions carry (its value: the suspect signal); ``explain``: add every signal's
    error and z-score to the result.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float | None = Field(default=None, gt=0)
    z_threshold: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    warmup: int = Field(default=20, ge=2)
    alert_header: str = "anomaly"
    explain: bool = False


class Reading(NamedTuple):
    """A decoded reading with its machine's baseline as it was before it."""

    sample: Sample
    x: np.ndarray  # the five signals, FEATURES order, float64
    baseline: Baseline | None  # None: the machine's first reading (or it expired)


class TelemetryAnomaly(StatefulRecordProcessor[Reading, Baseline]):
    """``kind: custom`` processor for the telemetry autoencoder (see the module docstring)."""

    config_model = AnomalyConfig
    codec = BASELINE_CODEC  # a Baseline <-> bytes, exactly
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
        self.z_threshold = config.z_threshold
        self.alpha = config.alpha
        self.warmup = config.warmup
        self.header = config.alert_header
        self.explain = config.explain
        self._decode = msgspec.json.Decoder(Sample).decode

    def decode(self, record: Record) -> Reading:
        try:
            sample = self._decode(record.value or b"")
        except msgspec.ValidationError as exc:
            reason = "missing_field" if "missing required field" in str(exc) else "bad_field"
            raise CodecError(f"{record.coords} | {exc}", reason) from None
        except msgspec.DecodeError as exc:
            raise CodecError(f"{record.coords} | invalid JSON ({exc})", "bad_json") from None
        x = np.array([getattr(sample, name) for name in FEATURES], dtype=np.float64)
        return Reading(sample, x, None)

    def state_key(self, record: Record, item: Reading) -> str:
        """The machine id. Readings are keyed by it (``produce.py``), so all of a machine's
        readings are in one partition, in order, and its baseline is in that partition's
        state (the default, the record key, would do too; this also works for keyless
        samples in ``streamfer check-processor``)."""
        return item.sample.machine_id

    def step(self, item: Reading, value: Baseline | None, record: Record
             ) -> tuple[Reading, Baseline]:  # fmt: skip
        """The machine's baseline (None: first reading, or none for ``state.ttl_s``) goes
        with the reading to ``result``; the reading is added to it. Event time: the
        record's timestamp, so the TTL runs on event time."""
        if value is None:
            return item, Baseline.first(item.x, record.timestamp_ms)
        return item._replace(baseline=value), value.updated(item.x, record.timestamp_ms,
                                                            self.alpha)  # fmt: skip

    def features(self, item: Reading) -> np.ndarray:
        return item.x.astype(np.float32)

    def result(self, item: Reading, outputs: Mapping[str, np.ndarray]) -> Result:
        score = float(outputs["score"][0])
        errors = outputs["errors"]
        suspect = FEATURES[int(errors.argmax())]
        result: dict[str, object] = {
            "machine_id": item.sample.machine_id,
            "anomaly_score": round(score, 6),
            "threshold": round(self.threshold, 6),
            "suspect": suspect,
            "z_score": None,
            "z_signal": None,
            "baseline": None,
        }
        z = 0.0
        base = item.baseline
        if base is not None and base.readings >= self.warmup:
            zs = base.z_scores(item.x)
            worst = int(zs.argmax())
            z = float(zs[worst])
            result["z_score"] = round(z, 4)
            result["z_signal"] = FEATURES[worst]
            result["baseline"] = {
                "readings": base.readings,
                "mean": round(float(base.mean[worst]), 4),
                "std": round(float(np.sqrt(base.var[worst])), 4),
            }
            if self.explain:
                result["z_scores"] = dict(zip(FEATURES, np.round(zs, 4).tolist(), strict=True))
        anomaly = score >= self.threshold or z >= self.z_threshold
        result["anomaly"] = anomaly
        if self.explain:
            per_signal = zip(FEATURES, errors.tolist(), strict=True)
            result["errors"] = {name: round(error, 6) for name, error in per_signal}
        if anomaly:
            return Output(result, headers=[(self.header, suspect.encode())])
        return result
