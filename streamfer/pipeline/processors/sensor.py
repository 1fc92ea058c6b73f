"""Sensor windows: one decoded window per record, stacked into the model's batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.postprocess import SensorPostprocessor
from streamfer.pipeline.processors.base import (
    Postprocessor,
    Prepared,
    Result,
    accepted,
    codec_rejects,
)
from streamfer.streams.codecs import decode_sensor
from streamfer.streams.records import RecordBatch


class SensorProcessor:
    """``kind: sensor``: float32 windows (raw or JSON) in, event class and score out."""

    def __init__(
        self,
        stream: StreamConfig,
        labels: Sequence[str],
        input_name: str = "window",
        output_name: str | None = "probs",
        shape: tuple[int, int] = (100, 6),
        post: Postprocessor | None = None,
    ) -> None:
        self.limits = stream.limits.codec_limits(sensor_shape=shape)
        self.input_name = input_name
        self.shape = shape
        self.post: Postprocessor = post or SensorPostprocessor(stream.sensor, labels, output_name)
        self._configure(stream)

    def _configure(self, stream: StreamConfig) -> None:
        """What a subclass builds from its stream's config once the model's side is set."""

    def prepare(self, batch: RecordBatch) -> Prepared:
        rows, windows, rejects = codec_rejects(batch, decode_sensor, self.limits)
        if windows:
            stacked = np.stack(windows).astype(np.float32, copy=False)
        else:
            stacked = np.empty((0, *self.shape), dtype=np.float32)
        return Prepared(batch, accepted(rows), {self.input_name: stacked}, rejects=rejects)

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> Sequence[Result | BaseException]:
        return self.post.results(outputs, metas)
