"""Isolate and retry: a batch that fails as a whole is run again record by record.

One rule for every stage that runs processor or engine code on a batch, on both
threads of a stream: the consumer thread's ``prepare`` (:func:`prepare_isolated`),
the engine thread's inference (:func:`infer_isolated`) and ``results``
(:func:`results_isolated`). The whole batch is tried first (the usual case costs
nothing more); when it raises, each record is run alone (:func:`each_alone`): a
record that fails alone gets its own error, the others go on. The errors carry the
reason their record is dead-lettered with:

* ``prepare`` -> a :class:`~pipeline.processors.base.Reject` with the caller's reason
  (``internal_error`` for built-in processors, ``processor_error`` for plug-ins);
* inference -> :class:`~streamfer.errors.RecordInferenceError` (``engine_error``);
  when every record of a batch fails alone the engine is broken, not the input:
  :class:`~streamfer.errors.EngineError` is raised and nothing of the batch resolves;
* ``results`` -> a :class:`~streamfer.errors.ProcessorError` with the caller's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from streamfer.errors import EngineError, ProcessorError, RecordInferenceError
from streamfer.pipeline.handoff import InferFn
from streamfer.pipeline.processors import processor_error
from streamfer.pipeline.processors.base import NO_EVENT_TIME, Prepared, Processor, Reject, Result
from streamfer.pipeline.processors.checks import PreparedCheck
from streamfer.streams.records import RecordBatch

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")


def each_alone(
    n: int, run_one: Callable[[int], T], failed: Callable[[int, Exception], E]
) -> list[T | E]:
    """``run_one(i)`` for each of ``n`` records; ``failed(i, error)`` stands for one that
    raised, so one record's failure never takes the others with it."""
    out: list[T | E] = []
    for i in range(n):
        try:
            out.append(run_one(i))
        except Exception as exc:
            out.append(failed(i, exc))
    return out


# -- the consumer thread: prepare -----------------------------------------------------------
def prepare_isolated(
    processor: Processor,
    batch: RecordBatch,
    reason: str,
    check: PreparedCheck | None = None,
    on_fault: Callable[[BaseException], None] = lambda error: None,
    prepare: Callable[[RecordBatch], Prepared] | None = None,
) -> list[Prepared]:
    """``[processor.prepare(batch)]`` (or ``prepare``, e.g. with the partition's state);
    if it raises, record by record to find the culprits.

    ``check`` (the processor contract) fails a ``Prepared`` like an exception would. A
    record whose own prepare raises becomes a Reject with ``reason`` (the exception's
    class and message in the dead letter); the rest are prepared alone and joined
    again, or handed over apart where their feeds do not stack (a processor that pads
    to the longest record of a batch). The rejects, absorbed and dropped rows ride on
    the first. (A stateful processor that raised midway may see the rows it had
    handled once more.) ``on_fault`` hears of a whole batch that failed.
    """
    prepare = prepare or processor.prepare
    name = f"{type(processor).__name__}.prepare"
    try:
        prepared = prepare(batch)
        if check is not None:
            check(batch, prepared)
        return [prepared]
    except Exception as exc:
        on_fault(exc)
        log.warning(
            "%s | %s of %d records failed (%s: %s); retrying record by record",
            batch.tp,
            name,
            len(batch),
            type(exc).__name__,
            exc,
        )

    def alone(i: int) -> Prepared:
        one = RecordBatch.of([batch.record(i)])
        one.span = batch.span
        got = prepare(one)
        if check is not None:
            check(one, got)
        return got

    def failed(i: int, exc: Exception) -> Reject:
        return Reject(i, reason, processor_error(name, exc, batch.coords(i), reason))

    return _rejoined(batch, each_alone(len(batch), alone, failed))


def _rejoined(batch: RecordBatch, outcomes: list[Prepared | Reject]) -> list[Prepared]:
    """The records prepared alone as rows of ``batch`` again, with every reject, absorbed
    and dropped row on the first."""
    parts: list[tuple[int, Prepared]] = []
    rejects: list[Reject] = []
    absorbed: list[int] = []
    dropped: dict[str, list[int]] = {}
    for i, got in enumerate(outcomes):
        if isinstance(got, Reject):
            rejects.append(got)
            continue
        rejects += [Reject(i, r.reason, r.error) for r in got.rejects]
        if len(got):
            parts.append((i, got))
        if got.absorbed is not None and len(got.absorbed):
            absorbed.append(i)
        for why, rows in (got.dropped or {}).items():
            if len(rows):
                dropped.setdefault(why, []).append(i)
    joined = _joined(batch, parts, rejects)
    joined[0].absorbed = np.asarray(absorbed, dtype=np.intp)
    joined[0].dropped = {why: np.asarray(rows, dtype=np.intp) for why, rows in dropped.items()}
    return joined


def _joined(
    batch: RecordBatch, parts: list[tuple[int, Prepared]], rejects: list[Reject]
) -> list[Prepared]:
    """The records prepared alone (``(row, Prepared)``) as rows of ``batch`` again."""
    if not parts:
        return [Prepared(batch, np.empty(0, dtype=np.intp), {}, rejects=rejects)]
    metas: list[Any] | None = None
    if any(p.metas is not None for _, p in parts):
        metas = [m for _, p in parts for m in (p.metas or [None] * len(p))]
    events = None
    if any(p.event_ns is not None for _, p in parts):
        events = np.concatenate([
            np.full(len(p), NO_EVENT_TIME, np.int64) if p.event_ns is None else p.event_ns
            for _, p in parts
        ])  # fmt: skip
    rows = np.asarray([i for i, p in parts for _ in range(len(p))], dtype=np.intp)
    try:
        feeds = {k: np.concatenate([p.feeds[k] for _, p in parts]) for k in parts[0][1].feeds}
    except ValueError:  # rows that differ along a dynamic axis: each goes alone
        apart = [
            Prepared(batch, np.full(len(p), i, dtype=np.intp), p.feeds, p.metas, p.event_ns)
            for i, p in parts
        ]
        apart[0].rejects = rejects
        return apart
    return [Prepared(batch, rows, feeds, metas, events, rejects)]


# -- the engine thread: inference and results ----------------------------------------------
def infer_isolated(
    name: str,
    infer: InferFn,
    processor: Processor,
    feeds: Mapping[str, np.ndarray],
    metas: Sequence[Any],
    error: Exception,
    *,
    error_reason: str,
) -> list[Result | BaseException]:
    """Inference failed for a batch (``error``): each row alone, then its ``results``.

    A row whose inference fails alone gets a RecordInferenceError (dead-lettered as
    ``engine_error``); when every row of a batch of more than one fails alone, raises
    EngineError: the engine is broken, not the input, and nothing of the batch resolves.
    """
    n = len(metas)

    def alone(i: int) -> Result | BaseException:
        out = infer({k: v[i : i + 1] for k, v in feeds.items()})
        return _each_result(processor, out, metas[i : i + 1], error_reason)[0]

    def failed(i: int, exc: Exception) -> RecordInferenceError:
        return RecordInferenceError(
            f"engine failed on this record alone ({type(exc).__name__}: {exc}). "
            "Note: the other records of its batch were run without it"
        )

    outcomes = each_alone(n, alone, failed)
    if n > 1 and all(isinstance(o, RecordInferenceError) for o in outcomes):
        raise EngineError(
            f"{name} | every record of a batch of {n} fails alone in the engine "
            f"({error}). Note: the engine is broken, not the input; the stream stops "
            "with the batch uncommitted"
        ) from error
    return outcomes


def results_isolated(
    processor: Processor,
    outputs: Mapping[str, np.ndarray],
    metas: Sequence[Any],
    *,
    error_reason: str = "processor_error",
    on_fault: Callable[[str, BaseException | None], None] = lambda problem, error: None,
) -> list[Result | BaseException]:
    """``processor.results`` with one result (or the error of that row) per row.

    A whole-batch failure is retried row by row (a row that fails alone gets a
    ProcessorError with ``error_reason``); a wrong number of results fails every row of
    the batch, so nothing of it is published. ``on_fault(problem, error)`` hears of each
    (``error`` None for a wrong count).
    """
    n = len(metas)
    name = type(processor).__name__
    try:
        results: list[Result | BaseException] = list(processor.results(outputs, metas))
    except Exception as exc:
        on_fault(
            f"{name}.results of a batch of {n} failed ({type(exc).__name__}: {exc}); "
            "retrying record by record",
            exc,
        )
        return _each_result(processor, outputs, metas, error_reason)
    if len(results) != n:
        err = ProcessorError(
            f"{name}.results | returned {len(results)} results for a batch of {n} records; "
            "none of the batch is published. Note: expected one result per record, in order"
        )
        on_fault(str(err), None)
        return [err] * n
    return results


def _each_result(
    processor: Processor,
    outputs: Mapping[str, np.ndarray],
    metas: Sequence[Any],
    error_reason: str,
) -> list[Result | BaseException]:
    """``processor.results`` of each row alone."""
    name = type(processor).__name__

    def alone(i: int) -> Result | BaseException:
        row = {k: v[i : i + 1] for k, v in outputs.items()}
        one = list(processor.results(row, metas[i : i + 1]))
        if len(one) != 1:
            return ProcessorError(
                f"{name}.results | returned {len(one)} results for 1 record. "
                "Note: expected one result per record"
            )
        return one[0]

    def failed(i: int, exc: Exception) -> ProcessorError:
        return processor_error(f"{name}.results", exc, reason=error_reason)

    return each_alone(len(metas), alone, failed)
