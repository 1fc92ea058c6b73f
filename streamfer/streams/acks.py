"""Acknowledgements resolve records: the delivery callbacks of a stream and what they count.

The route of an acknowledgement stays in ``streams/``: the sink's delivery
thread calls the callback the sender handed over with the messages
(:meth:`Resolver.decisions`, :meth:`Resolver.dead_letter`, or the changelog's
own :class:`AckCount`), the callback counts acknowledgements, the last one
resolves the records' rows in the :class:`~streams.tracker.OffsetTracker`, and
the committer commits the resolved prefix. Nothing is resolved before the
broker has acknowledged what the record became, so no commit passes it.

What resolved is told to the stream's :class:`Resolutions` listener (given
once, to the :class:`Resolver`; the stream's recorder), once per group of rows,
never per record: decided records with their e2e latency, drops and dead
letters by reason, records absorbed into state. A row already resolved or
abandoned (its partition revoked, its transaction aborted) counts nothing.

**e2e latency** (the one definition; ``streamfer_e2e_latency_seconds``, the run
summaries): record timestamp -> the broker acknowledged the record's decision,
measured as the record's broker latency (timestamp -> consumed, wall clock,
never negative) plus the monotonic time from consumed to acknowledged.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streamfer.streams.tracker import OffsetTracker, Span


class Resolutions(Protocol):
    """What a stream counts as its records resolve (one call per group of rows)."""

    def decided(self, e2e_ms: np.ndarray, publish_s: float) -> None:
        """Decisions acknowledged: their e2e latencies (ms), and the seconds from the
        hand-off to the producer to the last acknowledgement."""

    def dropped(self, reason: str, n: int = 1) -> None: ...

    def dead_lettered(self, reason: str, n: int = 1) -> None: ...

    def absorbed(self, n: int) -> None: ...


class AckCount:
    """The delivery callback of ``size`` messages sent together: :meth:`acked` at the last
    acknowledgement, :meth:`failed` once at the first failure (the only Python work per
    message is a counter step)."""

    __slots__ = ("count", "failure", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = itertools.count(1)  # next() is atomic: callbacks may run on two threads
        self.failure = False

    def __call__(self, error: object | None, _message: object) -> None:
        if error is not None:
            if not self.failure:
                self.failure = True
                self.failed(error)
            return
        if next(self.count) == self.size:
            self.acked()

    def acked(self) -> None:
        raise NotImplementedError

    def failed(self, error: object) -> None:
        raise NotImplementedError


OnFailure = Callable[[object], None]  # called with the delivery error


@dataclass(slots=True, eq=False)
class _Decisions(AckCount):
    """One segment's decisions: their rows resolve at the last acknowledgement."""

    resolver: Resolver
    span: Span
    rows: np.ndarray
    broker_ms: np.ndarray
    consumed_ns: int
    handoff_ns: int
    on_failure: OnFailure

    def __post_init__(self) -> None:
        AckCount.__init__(self, len(self.rows))

    def acked(self) -> None:
        self.resolver._decided(self)

    def failed(self, error: object) -> None:
        self.on_failure(error)


@dataclass(slots=True, eq=False)
class _DeadLetter:
    """One dead letter: its row resolves when the dead-letter topic acknowledged it."""

    resolver: Resolver
    span: Span
    row: int
    reason: str
    on_failure: OnFailure

    def __call__(self, error: object | None, _message: object) -> None:
        if error is not None:
            self.on_failure(error)
        elif self.resolver.tracker.resolve(self.span, self.row):
            self.resolver.listener.dead_lettered(self.reason)


class Resolver:
    """Resolves the records of one stream in its tracker and tells its listener.

    The sender asks for a delivery callback when it sends (:meth:`decisions`,
    :meth:`dead_letter`) and hands it to the sink; records resolved without a
    message (:meth:`drop`, :meth:`absorb`) resolve at once.
    """

    __slots__ = ("listener", "tracker")

    def __init__(self, tracker: OffsetTracker, listener: Resolutions) -> None:
        self.tracker = tracker
        self.listener = listener

    def decisions(self, span: Span, rows: np.ndarray, broker_ms: np.ndarray, consumed_ns: int,
                  handoff_ns: int, on_failure: OnFailure) -> AckCount:  # fmt: skip
        """The callback of the decisions of ``rows`` of ``span`` (one message per row, in
        order; ``broker_ms`` per row; ``handoff_ns``: monotonic, when the engine handed them
        to be published, where the ``publish`` stage starts): the rows resolve when every
        one is acknowledged; ``on_failure`` runs once at the first failure and nothing
        resolves."""
        return _Decisions(self, span, rows, broker_ms, consumed_ns, handoff_ns, on_failure)

    def dead_letter(self, span: Span, row: int, reason: str,
                    on_failure: OnFailure) -> Callable[[object | None, object], None]:  # fmt: skip
        """The callback of the dead letter of ``row``: resolves it when acknowledged."""
        return _DeadLetter(self, span, row, reason, on_failure)

    def _decided(self, acks: _Decisions) -> None:
        now = time.monotonic_ns()
        if not self.tracker.resolve_rows(acks.span, acks.rows):
            return  # abandoned meanwhile (revocation): the next owner decides them again
        e2e_ms = acks.broker_ms + (now - acks.consumed_ns) / 1e6
        self.listener.decided(e2e_ms, (now - acks.handoff_ns) / 1e9)

    def drop(self, span: Span, rows: Sequence[int] | np.ndarray, reason: str) -> int:
        """Resolve ``rows`` dropped on purpose (``reason``: stale, superseded, ...)."""
        n = self.tracker.resolve_rows(span, rows)
        if n:
            self.listener.dropped(reason, n)
        return n

    def drop_row(self, span: Span, row: int, reason: str) -> bool:
        """Resolve one row dropped (e.g. a dead letter that could not be written)."""
        if not self.tracker.resolve(span, row):
            return False
        self.listener.dropped(reason)
        return True

    def absorb(self, span: Span, rows: Sequence[int] | np.ndarray) -> int:
        """Resolve ``rows`` held in state without a decision of their own."""
        n = self.tracker.resolve_rows(span, rows)
        if n:
            self.listener.absorbed(n)
        return n
