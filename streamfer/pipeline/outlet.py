"""The outlet of one stream: where every consumed record ends.

The outlet decides what a record becomes and sends it; resolving the record
is left to ``streams/`` (:class:`~streams.acks.Resolver`): each send carries
the delivery callback the resolver made for it, and the sink's acknowledgement
resolves the row in its span there, without coming back here.

* :meth:`Outlet.publish` encodes a segment's decisions and queues them; the
  rows resolve when the broker has acknowledged *all* of them. A decision that
  cannot be published stops the stream (nothing is committed past it); one that
  cannot be encoded (NaN, not JSON) is dead-lettered as ``bad_decision``.
* :meth:`Outlet.dropped` resolves rows dropped on purpose (stale, superseded),
  :meth:`Outlet.absorbed` rows held in state without a decision of their own.
* :meth:`Outlet.dead_letter` writes a record to the dead-letter topic with its
  reason; the row resolves when the dead letter is acknowledged. A dead letter
  that cannot be published stops the stream with an error naming the record
  (``dead_letters.on_failure: stop``, the default) or is counted as a drop
  (``skip``, reason ``dead_letter_failed``).

The records' broker latency (timestamp -> consumed) is read here, once per
segment: the ``broker`` stage metric (of records published, dropped or
absorbed), the decision documents and, at the acknowledgement, the e2e latency
(defined in :mod:`streamfer.streams.acks`) all use that reading.

With exactly-once delivery, each send checks under the transaction lock that
its span is still alive: output of records an abort abandoned never lands in
the next transaction.

Bad records are logged at WARNING once each, at most ``log_per_s`` lines a
second (the rest summarised); tracebacks only at DEBUG.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, NamedTuple

import numpy as np

from streamfer.errors import CodecError, RecordInferenceError, StreamError
from streamfer.pipeline.decisions import DecisionEncoder, SegmentTiming
from streamfer.pipeline.processors.base import Output, Prepared, Result
from streamfer.pipeline.recorder import StreamRecorder
from streamfer.streams.acks import Resolver
from streamfer.streams.client import Headers
from streamfer.streams.dlq import DeadLetterWriter, short
from streamfer.streams.reasons import dead_letter_reason
from streamfer.streams.records import RecordBatch
from streamfer.streams.sink import KafkaSink
from streamfer.streams.tracker import Span

log = logging.getLogger(__name__)

OnFailure = Literal["stop", "skip"]
Fatal = Callable[[BaseException], None]


class LogLimiter:
    """At most ``per_s`` WARNING lines a second; what is held back is counted and said once."""

    def __init__(self, per_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s = per_s
        self._clock = clock
        self._lock = threading.Lock()
        self._window = 0.0
        self._used = 0
        self._held = 0

    def allow(self) -> bool:
        now = self._clock()
        with self._lock:
            if now - self._window >= 1.0:
                held, self._held = self._held, 0
                self._window, self._used = now, 0
                if held:
                    log.warning("%d more bad-record lines held back in the last second", held)
            if self._used < self.per_s:
                self._used += 1
                return True
            self._held += 1
            return False


class _Unpacked(NamedTuple):
    """Per decided row: result, row, source key, output key; extras and headers per row,
    or None where no row has any (then the segment is encoded and sent the fast way)."""

    plain: list[Any]
    good: list[int]
    keys: list[bytes | None]
    out_keys: list[bytes | None]
    extras: list[Any] | None
    headers: list[Headers] | None


@dataclass(kw_only=True, eq=False)
class Outlet:
    """Publishes decisions and dead letters of one stream and hands their records over to
    be resolved (``encoder`` is replaced when the model is swapped)."""

    stream: str
    output_topic: str
    sink: KafkaSink
    dead_letters: DeadLetterWriter
    resolver: Resolver
    encoder: DecisionEncoder
    recorder: StreamRecorder
    on_fatal: Fatal
    on_dead_letter_failure: OnFailure = "stop"
    log_limiter: LogLimiter | None = None  # None: at most 10 bad-record lines a second

    def __post_init__(self) -> None:
        self._limiter = self.log_limiter or LogLimiter()

    # -- decisions -------------------------------------------------------------------------
    def publish(
        self,
        prepared: Prepared,
        rows: np.ndarray,
        results: Sequence[Result | BaseException],
        batch_size: int,
        timing: SegmentTiming,
    ) -> None:
        """Publish the decisions of ``rows`` (rows of ``prepared.batch``), one result each."""
        batch = prepared.batch
        handoff_ns = time.monotonic_ns()
        n = len(rows)
        broker_ms = batch.broker_ms()  # the one reading: stage metric, documents, e2e
        rec = self.recorder
        rec.observe_stage_many("broker", broker_ms[rows] / 1e3)
        rec.observe_stage_n("queue", timing.queue_ms / 1e3, n)
        rec.observe_stage_n("preprocess", timing.preprocess_ms / 1e3, n)
        if all(type(r) is dict for r in results):  # the usual case: one plain result a row
            plain: list[Any] = list(results)
            good: list[int] = rows.tolist()
            batch_keys = batch.keys
            keys = out_keys = [batch_keys[r] for r in good]
            extras = headers = None
        else:
            plain, good, keys, out_keys, extras, headers = self._unpack(batch, rows, results)
        if not good:
            return
        offsets = [batch.offsets[r] for r in good]
        broker = broker_ms[good]
        encoded = self.encoder.encode_segment(
            batch.topic, batch.partition, offsets, keys, plain, extras, broker.tolist(),
            batch_size, timing,
        )  # fmt: skip
        if not any(isinstance(doc, CodecError) for doc in encoded):
            values: list[bytes] = encoded  # type: ignore[assignment]
            sent_rows, sent_keys, sent_headers = good, out_keys, headers
        else:
            values, sent_rows, sent_keys = [], [], []
            sent_headers = [] if headers is not None else None
            for j, (row, doc) in enumerate(zip(good, encoded, strict=True)):
                if isinstance(doc, CodecError):
                    self.dead_letter(batch, row, doc, doc.reason)
                    continue
                values.append(doc)
                sent_rows.append(row)
                sent_keys.append(out_keys[j])
                if sent_headers is not None and headers is not None:
                    sent_headers.append(headers[j])
            if not any(sent_headers or ()):  # the rows with headers were dead-lettered
                sent_headers = None
        if not values:
            return
        span = _span(batch)
        sent = np.asarray(sent_rows, dtype=np.intp)
        callback = self.resolver.decisions(
            span, sent, broker if len(sent) == len(good) else broker_ms[sent], batch.consumed_ns,
            handoff_ns, partial(self._publish_failed, batch, sent),
        )  # fmt: skip
        try:
            queued = self.sink.send_many(
                self.output_topic,
                values,
                sent_keys,
                callback,
                only_if=lambda: span.alive,
                headers=sent_headers,
            )
        except StreamError as exc:
            self.on_fatal(exc)
            return
        if not queued:
            log.debug("%s | %d decisions of an abandoned poll not sent", batch.tp, len(values))

    def _unpack(
        self, batch: RecordBatch, rows: np.ndarray, results: Sequence[Result | BaseException]
    ) -> _Unpacked:
        """Results that are not all plain dicts: errors are dead-lettered, ``Output`` split
        into result, extra fields, output key and headers."""
        plain: list[Any] = []
        good: list[int] = []
        keys: list[bytes | None] = []
        out_keys: list[bytes | None] = []
        extras: list[Any] = []
        headers: list[Headers] = []
        batch_keys = batch.keys
        for j, res in enumerate(results):
            row = int(rows[j])
            if isinstance(res, BaseException):
                self._failed_row(batch, row, res)
                continue
            key = batch_keys[row]
            if isinstance(res, Output):
                problem = output_problem(res)
                if problem:
                    err = CodecError(problem, "bad_decision")
                    self.dead_letter(batch, row, err, err.reason)
                    continue
                plain.append(res.result)
                extras.append(res.extra)
                out_keys.append(key if res.key is None else res.key)
                headers.append(tuple(res.headers))
            elif isinstance(res, Mapping):
                plain.append(res)
                extras.append(None)
                out_keys.append(key)
                headers.append(())
            else:
                err = CodecError(
                    f"decision | result is a {type(res).__name__} ({res!r:.80}). Note: expected "
                    "a mapping (JSON object) or an Output",
                    "bad_decision",
                )
                self.dead_letter(batch, row, err, "bad_decision")
                continue
            keys.append(key)
            good.append(row)
        has_extras = any(e for e in extras)
        has_headers = any(headers)
        return _Unpacked(
            plain,
            good,
            keys,
            out_keys,
            extras if has_extras else None,
            headers if has_headers else None,
        )

    def _publish_failed(self, batch: RecordBatch, rows: np.ndarray, error: object) -> None:
        """Never commit past it: the stream stops (what follows the last commit is read again)."""
        err = StreamError(
            f"{batch.coords(int(rows[0]))} | decision not published to {self.output_topic} "
            f"({error}); {len(rows)} decisions of {batch.tp[0]}[{batch.tp[1]}] left "
            "uncommitted. Note: the stream stops; a restart reads them again"
        )
        log.error("%s | %s", self.stream, err)
        self.on_fatal(err)

    def _failed_row(self, batch: RecordBatch, row: int, error: BaseException) -> None:
        reason = (
            error.reason
            if isinstance(error, CodecError | RecordInferenceError)
            else "processor_error"
        )
        self.dead_letter(batch, row, error, reason)

    # -- drops -----------------------------------------------------------------------------
    def dropped(self, batch: RecordBatch, rows: np.ndarray, reason: str) -> None:
        """Resolve ``rows`` of ``batch`` dropped on purpose (stale, superseded, late)."""
        if self.resolver.drop(_span(batch), rows, reason):
            self.recorder.observe_stage_many("broker", batch.broker_ms()[rows] / 1e3)

    def absorbed(self, batch: RecordBatch, rows: np.ndarray) -> None:
        """Resolve ``rows`` of ``batch`` held in state without a decision of their own."""
        if self.resolver.absorb(_span(batch), rows):
            self.recorder.observe_stage_many("broker", batch.broker_ms()[rows] / 1e3)

    # -- dead letters ----------------------------------------------------------------------
    def dead_letter(self, batch: RecordBatch, row: int, error: BaseException, reason: str) -> None:
        """Send record ``row`` of ``batch`` to the dead-letter topic with ``reason``.

        A reason outside the documented set (``streamfer.streams.reasons``; a plug-in's own code)
        is written as ``processor_error``, the code it came with kept in the message.
        """
        documented = dead_letter_reason(reason)
        if documented != reason:
            where = batch.coords(row)
            text = str(error).removeprefix(f"{where} | ")
            error = CodecError(
                f"{where} | {text} (reason {reason[:40]!r}). Note: not a documented reason; "
                "written as processor_error",
                documented,
            )
            reason = documented
        fields = self._log_fields(batch, row, reason)
        if self._limiter.allow():
            log.warning(
                "%s | dead letter (%s): %s", self.stream, reason, short(str(error)), extra=fields
            )
        log.debug(
            "%s | dead letter %s", self.stream, batch.coords(row), exc_info=error, extra=fields
        )
        span = _span(batch)
        record = batch.record(row)
        on_delivery = self.resolver.dead_letter(
            span, row, reason, partial(self._dead_letter_failed, batch, row, reason)
        )
        try:
            self.dead_letters.write(
                record, error, on_delivery, reason=reason, only_if=lambda: span.alive
            )
        except StreamError as exc:
            self._dead_letter_failed(batch, row, reason, exc)

    def _log_fields(self, batch: RecordBatch, row: int, reason: str) -> dict[str, object]:
        """A record's coordinates as log fields (``--log-format json``: ``streamfer.logs``)."""
        return {"stream": self.stream, "topic": batch.topic, "partition": batch.partition,
                "offset": batch.offsets[row], "reason": reason}  # fmt: skip

    def _dead_letter_failed(self, batch: RecordBatch, row: int, reason: str, error: object) -> None:
        where = batch.coords(row)
        topic = self.dead_letters.topic_for(batch.topic)
        if self.on_dead_letter_failure == "skip":
            log.error(
                "%s | %s: dead letter (%s) not published to %s (%s); skipped and counted "
                "as dropped (dead_letter_failed)",
                self.stream,
                where,
                reason,
                topic,
                error,
                extra=self._log_fields(batch, row, reason),
            )
            self.resolver.drop_row(_span(batch), row, "dead_letter_failed")
            return
        err = StreamError(
            f"{where} | dead letter ({reason}) not published to {topic}: {error}. "
            "Note: the stream stops rather than skip the record; set "
            "dead_letters.on_failure: skip to count it as dropped instead"
        )
        log.error("%s | %s", self.stream, err, extra=self._log_fields(batch, row, reason))
        self.on_fatal(err)

    def rejects(self, prepared: Prepared) -> None:
        """Dead-letter what the processor refused."""
        for rej in prepared.rejects:
            self.dead_letter(prepared.batch, rej.row, rej.error, rej.reason)


def output_problem(out: Output) -> str | None:
    """What makes an Output unpublishable (a key or header Kafka cannot carry), or None."""
    if not isinstance(out.result, Mapping):
        return (
            f"decision | Output.result is a {type(out.result).__name__}. "
            "Note: expected a mapping (JSON object)"
        )
    if out.key is not None and not isinstance(out.key, bytes):
        return f"decision | Output.key is a {type(out.key).__name__}. Note: expected bytes or None"
    for header in out.headers:
        if (
            not isinstance(header, tuple)
            or len(header) != 2
            or not isinstance(header[0], str)
            or not isinstance(header[1], bytes | None)
        ):
            return (
                f"decision | Output header {header!r:.80} is not a (str, bytes) pair. "
                "Note: expected headers like [('content-type', b'application/json')]"
            )
    return None


def _span(batch: RecordBatch) -> Span:
    if batch.span is None:
        raise StreamError(f"{batch.tp} | a batch without a span reached the outlet")
    return batch.span
