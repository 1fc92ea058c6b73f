"""Offset tracking by ranges: commit only past polls whose records are all resolved.

Each poll of a partition becomes one :class:`Span` (its first offset, the
offset after its last record, and which of its rows are resolved). Records
are *resolved* in any order by any thread (decision acknowledged, counted
drop, dead letter; :class:`streamfer.streams.acks.Resolver` does it for a
stream), one row or many rows of a span at a time. A partition's
commit position is the end of the longest run of fully resolved spans from
the oldest one on, so out-of-order completion never lets a commit pass a
record still in flight, and the per-record cost is a counter, not a set.

A span can also be *held* (``hold``/``release``): work derived from its
records that must be durable before they are committed (their state
changelog entries) keeps the commit position from passing it until released,
and counts as in flight meanwhile. Spans held in one :class:`SpanGroup` are
passed together: the position passes none of them until every one is
passable, so it never stops between two of them (a state window whose
changelog entries hold only each key's last value needs that).

A span stays *alive* until its partition stops being tracked (``remove``:
revocation, abort and rewind, close). Resolving a row of a dead span does
nothing, so late work of an abandoned poll never resolves the re-polled copy
of the same offsets (the copy comes with a new span). Resolving the same row
twice does nothing either: each row counts once.

A span keeps a reference to its poll's record timestamps (no copy, no work per
record), so ``oldest_unresolved_ms`` can say, when lag is exported, how old the
oldest record still undecided is: the first unresolved row of each partition's
oldest span that has one (spans are resolved out of order; spans whose rows are
all resolved and that only a hold keeps are decided, not late).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

TopicPartition = tuple[str, int]


class SpanGroup:
    """Spans of one partition the position passes all at once (see the module docstring)."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = 0  # members not passable yet


class Span:
    """One poll's records of one partition: offsets ``first..end-1`` (gaps allowed)."""

    __slots__ = (
        "alive", "done", "end", "first", "group", "held", "left", "size", "timestamps_ms", "tp",
    )

    def __init__(
        self, tp: TopicPartition, first: int, end: int, size: int,
        timestamps_ms: Sequence[int] | None = None,
    ) -> None:  # fmt: skip
        self.tp = tp
        self.timestamps_ms = timestamps_ms  # the poll's record timestamps, by row (a reference)
        self.first = first
        self.end = end  # the commit position once every row is resolved
        self.size = size
        self.left = size
        self.done = np.zeros(size, dtype=bool)
        self.alive = True
        self.held = 0  # holds not yet released (see OffsetTracker.hold)
        self.group: SpanGroup | None = None

    @property
    def passable(self) -> bool:
        """Every row resolved and nothing holds it: the position may pass it."""
        return self.left == 0 and self.held == 0

    def oldest_ms(self) -> int | None:
        """Timestamp of the first unresolved row (None: no timestamps, or none left)."""
        if self.timestamps_ms is None or not self.left:
            return None
        return int(self.timestamps_ms[int(np.argmin(self.done))])

    def pending(self, index: int) -> bool:
        """Row ``index`` is tracked and not resolved yet."""
        return self.alive and not self.done[index]

    def __repr__(self) -> str:
        state = "alive" if self.alive else "abandoned"
        where = f"{self.tp[0]}[{self.tp[1]}] {self.first}..{self.end - 1}"
        return f"Span({where}, {self.left} left, {self.held} held, {state})"


class _Partition:
    __slots__ = ("committed", "position", "spans")

    def __init__(self) -> None:
        self.spans: deque[Span] = deque()  # in poll order, not yet passed
        self.position: int | None = None  # offset after the resolved prefix
        self.committed: int | None = None  # last position handed out for commit

    def advance(self) -> None:
        spans = self.spans
        while spans and spans[0].passable:
            group = spans[0].group
            if group is not None and group.pending:
                return  # a later member is still in flight: pass them together
            self.position = spans.popleft().end

    def in_flight(self) -> int:
        return sum(s.left + s.held for s in self.spans)


class OffsetTracker:
    """Thread-safe: ``add`` from the consumer thread, ``resolve*`` from anywhere."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0

    def add(
        self, tp: TopicPartition, offsets: Sequence[int],
        timestamps_ms: Sequence[int] | None = None,
    ) -> Span:  # fmt: skip
        """Track one poll of ``tp`` (offsets increasing, gaps allowed); returns its span.

        ``timestamps_ms`` (the records' timestamps, by row) is kept by reference for
        ``oldest_unresolved_ms``."""
        if not offsets:
            raise ValueError(f"{tp} | a span needs at least one offset")
        span = Span(tp, offsets[0], offsets[-1] + 1, len(offsets), timestamps_ms)
        with self._cond:
            part = self._parts.get(tp)
            if part is None:
                part = self._parts[tp] = _Partition()
            part.spans.append(span)
            self._in_flight += span.size
        return span

    def resolve(self, span: Span, index: int) -> bool:
        """Resolve row ``index`` of ``span``; False if it was resolved already or abandoned."""
        with self._cond:
            if not span.alive or span.done[index]:
                return False
            span.done[index] = True
            self._settle(span, 1)
            return True

    def resolve_rows(self, span: Span, rows: Sequence[int] | np.ndarray) -> int:
        """Resolve several rows of ``span``; how many were still pending."""
        with self._cond:
            if not span.alive:
                return 0
            idx = np.asarray(rows, dtype=np.intp)
            fresh = idx[~span.done[idx]]
            if len(fresh) != len(idx):  # a row given twice counts once
                fresh = np.unique(fresh)
            if not len(fresh):
                return 0
            span.done[fresh] = True
            self._settle(span, len(fresh))
            return len(fresh)

    def resolve_all(self, span: Span) -> int:
        """Resolve every row of ``span`` still pending; how many that was."""
        with self._cond:
            if not span.alive or not span.left:
                return 0
            n = span.left
            span.done[:] = True
            self._settle(span, n)
            return n

    def hold(self, span: Span, group: SpanGroup | None = None) -> bool:
        """Keep the position from passing ``span`` until ``release``; False if abandoned.

        ``group``: make ``span`` (not passable yet, in no group yet) one of the spans
        the position passes together."""
        with self._cond:
            if not span.alive:
                return False
            if group is not None and span.group is None and not span.passable:
                span.group = group
                group.pending += 1
            span.held += 1
            self._in_flight += 1
            return True

    def release(self, span: Span) -> None:
        """Undo one ``hold``; nothing once the span was abandoned."""
        self.release_many((span,))

    def release_many(self, spans: Iterable[Span]) -> None:
        """Undo one ``hold`` of each span, under one lock."""
        with self._cond:
            for span in spans:
                if span.alive and span.held:
                    span.held -= 1
                    self._settle(span, 1, rows=False)

    def _settle(self, span: Span, n: int, rows: bool = True) -> None:  # under the lock
        if rows:
            span.left -= n
        self._in_flight -= n
        if span.passable:
            part = self._parts[span.tp]
            group = span.group
            if group is not None:
                group.pending -= 1
                if not group.pending:  # the last member: the head may be the first one
                    part.advance()
            elif part.spans and part.spans[0] is span:
                part.advance()
            if not part.spans:
                self._cond.notify_all()

    def is_pending(self, span: Span, index: int) -> bool:
        with self._cond:
            return span.pending(index)

    def in_flight(self, tp: TopicPartition | None = None) -> int:
        """Records added and not yet resolved, for one partition or all."""
        with self._cond:
            if tp is None:
                return self._in_flight
            part = self._parts.get(tp)
            return part.in_flight() if part else 0

    def in_flight_by_partition(self) -> dict[TopicPartition, int]:
        with self._cond:
            return {tp: p.in_flight() for tp, p in self._parts.items()}

    def oldest_unresolved_ms(self) -> dict[TopicPartition, int]:
        """Per partition with records in flight: the timestamp (ms) of its oldest one.

        Spans at the front whose rows are all resolved and that only holds keep (a state
        window whose changelog entries are not written yet) are passed over: their
        decisions are out, so they are not late, however long the window. The first span
        with an unresolved row holds the partition's oldest one; one ``argmin`` over its
        rows, for the lag exporter.
        """
        with self._cond:
            out = {}
            for tp, part in self._parts.items():
                for span in part.spans:
                    if span.left:
                        if (ms := span.oldest_ms()) is not None:
                            out[tp] = ms
                        break
            return out

    def positions(self) -> dict[TopicPartition, int]:
        """Commit positions that moved since the last ``mark_committed``."""
        with self._cond:
            return {
                tp: p.position
                for tp, p in self._parts.items()
                if p.position is not None and p.position != p.committed
            }

    def mark_committed(self, positions: Mapping[TopicPartition, int]) -> None:
        with self._cond:
            for tp, position in positions.items():
                part = self._parts.get(tp)
                if part is not None:
                    part.committed = position

    def wait_idle(self, tps: Iterable[TopicPartition] | None, timeout_s: float) -> bool:
        """Block until the given partitions (None: all) have nothing in flight."""
        wanted = None if tps is None else set(tps)
        deadline = time.monotonic() + timeout_s

        def idle() -> bool:
            if wanted is None:
                return self._in_flight == 0
            return all(not self._parts[tp].spans for tp in wanted if tp in self._parts)

        with self._cond:
            while not idle():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def remove(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Stop tracking ``tps``: their spans are abandoned (later resolves do nothing).

        Returns the positions resolved but not yet committed.
        """
        out: dict[TopicPartition, int] = {}
        with self._cond:
            for tp in tps:
                part = self._parts.pop(tp, None)
                if part is None:
                    continue
                for span in part.spans:
                    span.alive = False
                    self._in_flight -= span.left + span.held
                if part.position is not None and part.position != part.committed:
                    out[tp] = part.position
            self._cond.notify_all()
        return out

    def partitions(self) -> list[TopicPartition]:
        with self._cond:
            return list(self._parts)
