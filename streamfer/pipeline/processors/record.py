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

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Generic, Protocol, TypeVar, cast

import numpy as np

from streamfer.errors import CodecError, ProcessorError
from streamfer.pipeline.processors.base import (
    Prepared,
    Reject,
    Result,
    StateCodec,
    StateView,
    accepted,
    processor_error,
)
from streamfer.pipeline.processors.context import ProcessorContext
from streamfer.streams.codecs.limits import check_size
from streamfer.streams.records import Record, RecordBatch

T = TypeVar("T")
S = TypeVar("S")
Row = np.ndarray | Mapping[str, np.ndarray]
# a record's state step: its item as features/result see it, and what commits the key's value
_Step = Callable[[Record, T], tuple[T, Callable[[], None]]]


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
        return self._prepare(batch, None)

    def _prepare(self, batch: RecordBatch, stateful: _Step[T] | None) -> Prepared:
        """``prepare``; with ``stateful``, each record's state step between decode and
        features, its new value committed once the record is accepted."""
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
                commit = None
                if stateful is not None:
                    step = f"{self._name}.step"
                    item, commit = stateful(record, item)
                step = f"{self._name}.features"
                row = self.features(item)
            except CodecError as exc:
                rejects.append(Reject(i, exc.reason, exc))
                continue
            except Exception as exc:  # plug-in code: this record only, the batch goes on
                err = processor_error(step, exc, batch.coords(i))
                rejects.append(Reject(i, err.reason, err))
                continue
            if commit is not None:
                commit()  # the key's new value, now that the record is accepted
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


class _KeyValues(Protocol[S]):
    """What ``StatefulRecordProcessor`` uses of a :class:`StateView`."""

    def get_many(self, keys: Sequence[str], now_ms: Sequence[int] | None = None
                 ) -> list[S | None]: ...  # fmt: skip

    def put(self, key: str, value: S) -> None: ...

    def updated(self, keys: Sequence[str], offsets: Sequence[int]) -> None: ...


class StatefulRecordProcessor(RecordProcessor[T], Generic[T, S]):
    """A :class:`RecordProcessor` with a value of type ``S`` per key (see the module
    docstring), a :class:`~pipeline.processors.base.StatefulProcessor`.

    Per accepted record, in consume order: ``decode``, then ``step(item, value, record)``
    with the current value of ``state_key(record, item)`` (None: a first-seen or
    expired key), then ``features``; the value ``step`` returned becomes the key's only
    if the record is accepted (a record refused in ``step`` or ``features`` changes
    nothing). ``step`` must not change ``value`` in place and must be deterministic
    (no clock, no randomness): after a crash the records past the committed offset
    are stepped again on the restored values. ``result`` sees the item ``step``
    returned: put there what a result needs from the state as it was.

    With ``state.enabled`` the values live in the pipeline's state store; without it,
    in memory (the ``memory_keys`` most recently updated keys; lost at a restart).
    """

    codec: StateCodec[S]  # how a value becomes bytes and back, exactly
    memory_keys = 100_000

    def __init__(self, context: ProcessorContext) -> None:
        super().__init__(context)
        self._memory: _MemoryValues[S] = _MemoryValues(self.memory_keys)

    # -- what a subclass implements (besides decode, features, result) -------------------
    def state_key(self, record: Record, item: T) -> str:
        """The key whose value the record reads and changes: the record's key."""
        if record.key is None:
            raise CodecError(f"{record.coords} | record without a key. Note: the state is per "
                             "record key", "no_key")  # fmt: skip
        return record.key.decode("utf-8", "replace")

    def step(self, item: T, value: S | None, record: Record) -> tuple[T, S]:
        """The record's item as ``features``/``result`` get it, and its key's new value."""
        raise NotImplementedError

    # -- the StatefulProcessor interface -------------------------------------------------
    def state_codec(self) -> StateCodec[S]:
        return self.codec

    def prepare(self, batch: RecordBatch) -> Prepared:
        return self._prepare(batch, partial(self._step, self._memory))

    def prepare_with_state(self, batch: RecordBatch, state: StateView[Any]) -> Prepared:
        return self._prepare(batch, partial(self._step, state))

    def _step(self, state: _KeyValues[S], record: Record, item: T) -> tuple[T, Callable[[], None]]:
        key = self.state_key(record, item)
        # one key at a time, at the record's own time: the value a record reads (and
        # whether it expired) is the same however the records were batched
        value = state.get_many([key], [record.timestamp_ms])[0]
        item, new = self.step(item, value, record)

        def commit() -> None:
            state.put(key, new)
            state.updated([key], [record.offset])

        return item, commit


class _MemoryValues(Generic[S]):
    """Per-key values in memory, without a state store: the ``limit`` most recently
    updated keys; no TTL."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._values: OrderedDict[str, S] = OrderedDict()

    def get_many(self, keys: Sequence[str], now_ms: Sequence[int] | None = None
                 ) -> list[S | None]:  # fmt: skip
        return [self._values.get(k) for k in keys]

    def put(self, key: str, value: S) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        if len(self._values) > self.limit:
            self._values.popitem(last=False)

    def updated(self, keys: Sequence[str], offsets: Sequence[int]) -> None:
        pass
