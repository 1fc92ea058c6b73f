"""The processor interface: what turns a batch of records into model feeds, and model
outputs back into one result per record.

A processor knows a record kind and a model; it knows nothing about Kafka
delivery, batching across polls, deadlines, dead letters or metrics, which
the pipeline gives every processor alike (the three built-in kinds are
processors too). Two calls:

* ``prepare(batch) -> Prepared`` runs on the consumer thread, in consume
  order per partition (a processor may keep per-key state). It decodes and
  validates every record of one :class:`~streams.records.RecordBatch`,
  returns the model feeds of the records it accepts (one row each, in
  order) and a :class:`Reject` with a reason for each one it does not.
  Every record of the batch is either accepted or rejected, exactly once;
  the feeds have the model's input names, dtypes and fixed dimensions.
* ``results(outputs, metas) -> [result, ...]`` runs on the engine thread
  after inference, on a batch the pipeline formed (rows of one or more
  ``Prepared``): one JSON-serialisable result per row, in order, or an
  :class:`Output` where a record needs more (extra top-level decision
  fields, its own output key or headers), or an exception instance for a
  row it refuses or failed on (a :class:`~streamfer.errors.CodecError`
  carries its reason; that record is dead-lettered, the others decided).

Optional: ``close()``, called once when the stream stops, to free what the
processor holds; ``infer_with(runner) -> infer`` to replace the runner's
``infer`` for its stream (the GPU camera path decodes on the device there;
its feeds are then its own, not the model's inputs).

A whole processor, batch at a time, for a model with one input ``[N, 1]``
(``RecordProcessor`` does the same one record at a time, with less code)::

    import numpy as np
    from streamfer.pipeline.processors import (
        Prepared, ProcessorContext, RecordBatch, accepted, reject,
    )

    class Lengths:  # text in, the model's score of its length out
        def __init__(self, context: ProcessorContext) -> None:
            self.input, self.output = context.input.name, context.output.name

        def prepare(self, batch: RecordBatch) -> Prepared:
            rows, rejects = [], []
            for i, value in enumerate(batch.values):
                if value:
                    rows.append(i)
                else:
                    rejects.append(reject(batch, i, "no text", "empty", "expected UTF-8 text"))
            x = np.array([[len(batch.values[i] or b"")] for i in rows], dtype=np.float32)
            return Prepared(batch, accepted(rows), {self.input: x}, rejects=rejects)

        def results(self, outputs, metas):
            return [{"score": float(y)} for y in outputs[self.output][:, 0]]

An exception a processor raises for a whole batch is retried record by
record to isolate the record that causes it (``processor_error``, the
exception's class and message in the dead letter); a ``Prepared`` that
breaks the rules above is treated like an exception; a wrong number of
results fails the batch before anything of it is published.

Stateful processors
-------------------

A processor that keeps per-key state (a card's history, a machine's baseline)
and implements :class:`StatefulProcessor` (``state_codec()`` and
``prepare_with_state(batch, state)``) has that state kept for it on a stream
with ``state.enabled``: a local store per input partition, backed by a
compacted changelog topic (``<consumer.group_id>.<stream>.state``). A
per-record plug-in subclasses
:class:`~streamfer.pipeline.processors.record.StatefulRecordProcessor`
instead, which does all of the below for it.

* **When state is read and written**: only in ``prepare_with_state``, on the
  consumer thread, in consume order per partition; ``state`` is the batch's
  partition's :class:`StateView`. ``state.get_many(keys, now_ms)`` reads
  values (None: absent or expired), ``state.put(key, value)`` sets a new
  one, and ``state.updated(keys, offsets)`` names the keys the batch changed,
  each with the input offset of the record that changed it (the last one
  wins). Those three are all a processor calls. A value got from
  ``get_many`` may be changed in place; changed or put, a key not named in
  ``updated`` is not written, and a key named but neither read nor put is an
  error. When ``prepare_with_state`` returns, the pipeline encodes each
  updated key once and sends it to the changelog (in the transaction, with
  exactly-once delivery) before any record of the batch can be decided or
  committed. ``results`` runs later, on the engine thread, and cannot touch
  state: what a result needs from it, ``prepare`` passes on in the
  ``metas``. So state holds what the records themselves tell, not model
  outputs (they do not exist yet when the state is written).
* **The codec** (:class:`StateCodec`): ``decode(encode(value))`` must give a
  value from which the processor computes exactly the same results
  (floats as their bits, e.g. ``struct`` ``"d"``, not rounded text): a value
  restored from bytes must decide as the one that never left memory.
  ``seen_ms(value)`` is the event time (epoch ms) of the value's last update.
* **TTL** (``state.ttl_s``): a value whose ``seen_ms`` is ``ttl_s`` or more
  before ``now_ms`` (give each key the reading record's own event time) reads
  as absent, and is later deleted from the store and the changelog. Expiry
  so depends on event time only, never on batching or on when a sweep ran.
* **Restore** (start, restart after a crash, rebalance): before a
  partition's first batch is prepared, its state is brought to the state
  after exactly the committed input records. With ``exactly_once`` the
  changelog entries share the transaction of the decisions and offsets;
  with ``at_least_once`` every entry carries the input offset that produced
  it and the restore ignores entries at or past the committed offset. The
  records after the committed offset are consumed again and re-apply their
  updates, once. This is exact only if ``prepare_with_state`` is a
  deterministic function of the state and the records: no wall clock, no
  randomness, no per-key memory beside the state.
* **Failures**: a ``prepare_with_state`` that raises for a whole batch is
  retried record by record, and may apply the updates of the rows it had
  handled once more; refuse a bad record with a :class:`Reject` instead.
* Without ``state.enabled``, ``prepare(batch)`` runs: the processor keeps its
  state in memory (lost at a restart) or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from streamfer.errors import CodecError, ProcessorError
from streamfer.streams.records import RecordBatch
from streamfer.streams.state.view import StateCodec, StateView

NO_EVENT_TIME = -1  # in Prepared.event_ns: this row's deadline runs from its record timestamp


class Reject(NamedTuple):
    """A record a processor refused: its row in the batch, a reason code, the error."""

    row: int
    reason: str
    error: BaseException


@dataclass(slots=True, eq=False)
class Prepared:
    """One record batch made ready for the engine.

    ``rows``: the accepted records' rows in ``batch`` (non-decreasing: a record that
    yields several model inputs, e.g. completes several windows, appears once per
    input, and gets a decision per input); ``feeds``: the model inputs, one row per
    entry of ``rows`` (first axis ``len(rows)``);
    ``metas``: per accepted record, what ``results`` needs (None: nothing);
    ``event_ns``: per accepted record, the event time (epoch ns) its deadline runs
    from (None, or ``NO_EVENT_TIME`` for a row: the Kafka record timestamp);
    ``rejects``: the rest, with reasons; ``absorbed``: rows whose work ended in
    ``prepare`` without a model input (a sample held in a window's state), resolved
    without a decision; ``dropped``: rows dropped on purpose, by reason (counted,
    e.g. ``late`` samples).
    The pipeline fills ``prepare_ns`` and ``ready_ns``.
    """

    batch: RecordBatch
    rows: np.ndarray
    feeds: dict[str, np.ndarray]
    metas: Sequence[Any] | None = None
    event_ns: np.ndarray | None = None
    rejects: list[Reject] = field(default_factory=list)
    absorbed: np.ndarray | None = None
    dropped: dict[str, np.ndarray] | None = None
    prepare_ns: int = 0  # how long prepare() took
    ready_ns: int = 0  # monotonic, when it was handed to the engine

    def __len__(self) -> int:
        return len(self.rows)


class Output(NamedTuple):
    """A result with more than the ``result`` field: ``extra`` top-level decision
    fields (e.g. ``frame``), the decision's Kafka ``key`` (default: the input's)
    and ``headers``."""

    result: Mapping[str, Any]
    extra: Mapping[str, Any] | None = None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


Result = Mapping[str, Any] | Output


@runtime_checkable
class Processor(Protocol):
    """See the module docstring."""

    def prepare(self, batch: RecordBatch) -> Prepared: ...

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> Sequence[Result | BaseException]: ...


@runtime_checkable
class StatefulProcessor(Processor, Protocol):
    """A processor whose per-key state the pipeline keeps, restores and expires
    (see "Stateful processors" in the module docstring)."""

    def state_codec(self) -> StateCodec[Any]:
        """How one key's value becomes bytes and back (exactly); called once, at start."""
        ...

    def prepare_with_state(self, batch: RecordBatch, state: StateView[Any]) -> Prepared:
        """``prepare`` reading and writing per-key values through ``state`` (the batch's
        partition: ``get_many``, ``put``), naming the keys each accepted record changed
        with its offset (``state.updated``)."""
        ...


class Postprocessor(Protocol):
    """The results step alone: what ``postprocessor:`` puts in place of a built-in kind's.

    ``metas`` per kind: camera :class:`~pipeline.postprocess.CameraMeta` (letterbox,
    frame size, ``frame_seq``, ``capture_ts_ns``); transaction and sensor None.
    """

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> Sequence[Result | BaseException]: ...


def reject(batch: RecordBatch, row: int, problem: str, reason: str, note: str) -> Reject:
    """A Reject whose CodecError reads ``topic[p]@offset | problem. Note: note``."""
    return Reject(row, reason, CodecError(f"{batch.coords(row)} | {problem}. Note: {note}", reason))


def processor_error(
    step: str, exc: BaseException, where: str | None = None, reason: str = "processor_error"
) -> ProcessorError:
    """The ProcessorError for an exception processor code raised on one record: ``where`` (the
    record's ``topic[partition]@offset``, when known) ``| step raised Class: message``."""
    text = f"{step} raised {type(exc).__name__}: {exc}"
    err = ProcessorError(f"{where} | {text}" if where else text, reason, type(exc).__name__)
    err.__cause__ = exc  # the traceback, for the DEBUG log
    return err


def accepted(rows: Sequence[int]) -> np.ndarray:
    return np.asarray(rows, dtype=np.intp)


def codec_rejects(
    batch: RecordBatch, decode: Any, limits: Any
) -> tuple[list[int], list[Any], list[Reject]]:
    """Decode every record of ``batch`` with a per-record codec ``decode(record, limits)``:
    the accepted rows, their decoded values, and a Reject per CodecError."""
    rows: list[int] = []
    values: list[Any] = []
    rejects: list[Reject] = []
    for i in range(len(batch)):
        try:
            values.append(decode(batch.record(i), limits))
        except CodecError as exc:
            rejects.append(Reject(i, exc.reason, exc))
            continue
        rows.append(i)
    return rows, values, rejects
