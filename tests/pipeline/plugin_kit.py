"""Processor plug-ins the tests load by name (``plugin_kit:Name``), each for the sum model
of ``tiny_models.sum_model`` (``x`` float32 [N, 3] -> ``y`` [N, 1])."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamfer.pipeline.processors import (
    CodecError,
    ConfigProblem,
    Output,
    Prepared,
    ProcessorContext,
    Record,
    RecordBatch,
    RecordProcessor,
    Result,
)


class SumConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: float = Field(default=1.0, gt=0)
    alert_above: float | None = None


class JsonSum(RecordProcessor[dict[str, Any]]):
    """``{"values": [a, b, c]}`` -> ``{"sum": (a + b + c) * scale}``; above ``alert_above``
    the decision goes out keyed ``alerts`` with an ``alert: yes`` header. A record with
    ``"explode": "decode"`` or ``"result"`` makes that step raise (a plug-in bug)."""

    config_model = SumConfig
    expects = "a JSON object with three numbers under 'values'"

    @staticmethod
    def validate_config(config: SumConfig) -> list[ConfigProblem]:
        if config.alert_above is not None and config.alert_above < 0:
            return [ConfigProblem("alert_above", "sums are never negative", config.alert_above,
                                  [">= 0"])]  # fmt: skip
        return []

    def __init__(self, context: ProcessorContext) -> None:
        super().__init__(context)
        self.config: SumConfig = context.config

    def decode(self, record: Record) -> dict[str, Any]:
        obj = json.loads(record.value or b"")
        if obj.get("explode") == "decode":
            raise KeyError("explode")
        if not isinstance(obj.get("values"), list) or len(obj["values"]) != 3:
            raise CodecError(f"{record.coords} | no three 'values'", "missing_field")
        return dict(obj)

    def features(self, item: dict[str, Any]) -> np.ndarray:
        return np.asarray(item["values"], dtype=np.float64)  # cast to float32 by the base

    def result(self, item: dict[str, Any], outputs: Mapping[str, np.ndarray]) -> Result:
        if item.get("explode") == "result":
            raise ZeroDivisionError("division by zero")
        total = float(outputs["y"][0]) * self.config.scale
        alert = self.config.alert_above
        if alert is not None and total > alert:
            return Output({"sum": total}, key=b"alerts", headers=[("alert", b"yes")])
        return {"sum": total}


class Faulty:
    """A batch-at-a-time processor with faults on cue, for the isolation tests.

    Values are ``<cue>-<n>``; the decision of ``n`` is ``{"n": n}``. Cues: ``ok``;
    ``raise`` (prepare raises for every batch that holds it); ``late`` (results raises
    for every batch that holds it); ``count`` (results returns one result too few for
    every batch that holds it); ``tag`` (the decision carries a ``tag: <n>`` header).
    """

    def __init__(self, context: ProcessorContext) -> None:
        self.input = context.input.name

    def prepare(self, batch: RecordBatch) -> Prepared:
        cues = [(v or b"").split(b"-") for v in batch.values]
        bad = [batch.coords(i) for i, c in enumerate(cues) if c[0] == b"raise"]
        if bad:
            raise RuntimeError(f"cannot prepare {bad}")
        feats = np.array([[float(c[1]), 0.0, 0.0] for c in cues], dtype=np.float32)
        return Prepared(batch, np.arange(len(batch)), {self.input: feats}, [c[0] for c in cues])

    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        if b"late" in metas:
            raise ValueError(f"cannot decide a batch with 'late' in it ({len(metas)} records)")
        out: list[Result] = []
        for cue, y in zip(metas, outputs["y"][:, 0].tolist(), strict=True):
            n = round(y)
            tag = [("tag", b"%d" % n)] if cue == b"tag" else []
            out.append(Output({"n": n}, headers=tag) if tag else {"n": n})
        return out[:-1] if b"count" in metas else out


class SensorLabels:
    """A postprocessor for the built-in sensor kind: the top class index, no labels."""

    def __init__(self, context: ProcessorContext) -> None:
        self.output = context.output.name
        self.prefix = str(context.config.get("prefix", "class-"))

    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        top = outputs[self.output].argmax(axis=1).tolist()
        return [{"class": f"{self.prefix}{i}"} for i in top]


class Picky:
    """Refuses to be built (a plug-in that checks its environment in its constructor)."""

    def __init__(self, context: ProcessorContext) -> None:
        raise ValueError("needs a GPU")


class Lazy:
    """Builds, but is no processor."""

    def __init__(self, context: ProcessorContext) -> None:
        self.context = context


NOT_CALLABLE = 42
