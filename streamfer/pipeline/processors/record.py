"""A base for processors written one record at a time: decode, features, result.

Subclass :class:`RecordProcessor`, implement three methods, and the batch
work (stacking feeds, slicing outputs, rejects with reasons, per-record
error isolation) is done for you::

    class Shout(RecordProcessor[str]):
        expects = "a UTF-8 text line"

        def decode(self, record: Record) -> str:
            text = record.value.decode("utf-8")       # UnicodeDecodeError: processor_error
            if not text.strip():
                raise CodecError(f"{record.coords} | blank line", "empty")
            return text

        def features(self, text: str) -> np.ndarray:  # one row of the model's only input
            return np.array([len(text), text.count("!")], dtype=np.float32)

        def result(self, text: str, outputs: Mapping[str, np.ndarray]) -> Result:
            return {"loud": float(outputs["score"][0]) > 0.5}   # this record's output rows

Before ``decode``, a record without a value, an empty one, and one over
``limits.max_message_bytes`` is rejected (``null_value``, ``empty``,
``too_large``). A :class:`~streamfer.errors.CodecError` raised by ``decode``,
``features`` or ``result`` refuses that record with the error's reason; any
other exception dead-letters it as ``processor_error`` with the exception's
class and message. Either way the other records of the batch go on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

import numpy as np

from streamfer.errors import CodecError, ProcessorError
from streamfer.pipeline.processors.base import Prepared, Reject, Result, accepted, processor_error
from streamfer.pipeline.processors.context import ProcessorContext
from streamfer.streams.codecs.limits import check_size
from streamfer.streams.records import Record, RecordBatch

T = TypeVar("T")
Row = np.ndarray | Mapping[str, np.ndarray]


class RecordProcessor(Generic[T]):
    """A :class:`~pipeline.processors.base.Processor` from per-record methods (see module)."""

    expects = "a record"  # what a record should be, for the rejects' notes

    def __init__(self, context: ProcessorContext) -> None:
        self.context = context
        self._specs = context.inputs
        self._limit = context.limits.max_message_bytes
        self._name = type(self).__name__

    # -- what a subclass implements ---------------------------------------------------
    def decode(self, record: Record) -> T:
        """The record as the processor's own value (kept until ``result``)."""
        raise NotImplementedError

    def features(self, item: T) -> Row:
        """One row of the model's input (no batch axis), or one row per input by name."""
        raise NotImplementedError

    def result(self, item: T, outputs: Mapping[str, np.ndarray]) -> Result:
        """The result of one record; ``outputs`` holds its row of each model output."""
        raise NotImplementedError

    # -- the Processor interface --------------------------------------------------------
    def prepare(self, batch: RecordBatch) -> Prepared:
        rows: list[int] = []
        items: list[T] = []
        feature_rows: list[Row] = []
        rejects: list[Reject] = []
        for i in range(len(batch)):
            record = batch.record(i)
            step = "limits"
            try:
                check_size(record, self._limit, self.expects)
                step = f"{self._name}.decode"
                item = self.decode(record)
                step = f"{self._name}.features"
                row = self.features(item)
            except CodecError as exc:
                rejects.append(Reject(i, exc.reason, exc))
                continue
            except Exception as exc:  # plug-in code: this record only, the batch goes on
                err = processor_error(step, exc, batch.coords(i))
                rejects.append(Reject(i, err.reason, err))
                continue
            rows.append(i)
            items.append(item)
            feature_rows.append(row)
        feeds = self.stack(feature_rows) if rows else {}
        return Prepared(batch, accepted(rows), feeds, items, rejects=rejects)

    def stack(self, feature_rows: Sequence[Row]) -> dict[str, np.ndarray]:
        """The feeds of a batch: each input's rows stacked, in the input's dtype."""
        if isinstance(feature_rows[0], np.ndarray):
            if len(self._specs) != 1:
                raise ProcessorError(
                    f"{self._name}.features | returned one array for a model with inputs "
                    f"{[s.name for s in self._specs]}. Note: expected a row per input, by name"
                )
            spec = self._specs[0]
            arrays = cast("list[np.ndarray]", feature_rows)
            return {spec.name: np.stack(arrays).astype(spec.dtype, copy=False)}
        named = cast("list[Mapping[str, np.ndarray]]", feature_rows)
        return {
            spec.name: np.stack([r[spec.name] for r in named]).astype(spec.dtype, copy=False)
            for spec in self._specs
        }

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> list[Result | CodecError]:
        out: list[Result | CodecError] = []
        for i, item in enumerate(metas):
            try:
                out.append(self.result(item, {k: v[i] for k, v in outputs.items()}))
            except CodecError as exc:
                out.append(exc)
            except Exception as exc:  # plug-in code: this record only
                out.append(processor_error(f"{self._name}.result", exc))
        return out
