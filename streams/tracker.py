"""Per-partition offset tracking: commit only below the lowest unresolved record.

Records are *added* in poll order by the consumer thread and *resolved* in any
order by any thread (decision acked, counted drop, dead-lettered). The commit
position of a partition is the offset after the longest resolved prefix of
what was added, so out-of-order completion never lets a commit skip a record
that is still in flight.

Each tracked partition has a *generation*, new every time tracking starts
again after ``remove`` (revocation, abort and rewind). ``add`` returns it and
records carry it: a late resolve of a record from an earlier generation (work
abandoned by an abort) is ignored instead of resolving the re-polled copy at
the same offset.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping

TopicPartition = tuple[str, int]


class _Partition:
    __slots__ = ("committed", "generation", "outstanding", "pending", "position")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.pending: deque[int] = deque()  # added offsets, in order, not yet passed
        self.outstanding: set[int] = set()  # added and not resolved
        self.position: int | None = None  # offset after the resolved prefix
        self.committed: int | None = None  # last position handed out for commit

    def advance(self) -> None:
        pending, outstanding = self.pending, self.outstanding
        while pending and pending[0] not in outstanding:
            self.position = pending.popleft() + 1


class OffsetTracker:
    """Thread-safe: ``add`` from the consumer thread, ``resolve`` from anywhere."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._generations = 0

    def add(self, tp: TopicPartition, offsets: Iterable[int]) -> int:
        """Track records polled from ``tp`` (offsets increasing, gaps allowed).

        Returns the partition's generation, for ``resolve``/``is_pending``.
        """
        with self._cond:
            part = self._parts.get(tp)
            if part is None:
                self._generations += 1
                part = self._parts[tp] = _Partition(self._generations)
            offs = list(offsets)
            part.pending.extend(offs)
            part.outstanding.update(offs)
            self._in_flight += len(offs)
            return part.generation

    def generation(self, tp: TopicPartition) -> int | None:
        """The current generation of ``tp``, None while it is not tracked."""
        with self._cond:
            part = self._parts.get(tp)
            return None if part is None else part.generation

    def resolve(self, tp: TopicPartition, offset: int, generation: int | None = None) -> bool:
        """Mark one record resolved; False when it was not in flight (twice, or revoked).

        With ``generation`` (what ``add`` returned), a record of an earlier generation
        (abandoned by ``remove``, then polled again) is not in flight either.
        """
        with self._cond:
            part = self._parts.get(tp)
            if part is None or offset not in part.outstanding:
                return False
            if generation is not None and generation != part.generation:
                return False
            part.outstanding.remove(offset)
            self._in_flight -= 1
            if part.pending[0] == offset:
                part.advance()
            if not part.outstanding:
                self._cond.notify_all()
            return True

    def resolve_many(
        self, items: Iterable[tuple[TopicPartition, int] | tuple[TopicPartition, int, int | None]]
    ) -> int:
        """Resolve ``(tp, offset[, generation])`` items under one lock; how many were in flight."""
        done = 0
        with self._cond:
            touched: set[TopicPartition] = set()
            for item in items:
                tp, offset = item[0], item[1]
                generation = item[2] if len(item) > 2 else None
                part = self._parts.get(tp)
                if part is None or offset not in part.outstanding:
                    continue
                if generation is not None and generation != part.generation:
                    continue
                part.outstanding.remove(offset)
                touched.add(tp)
                done += 1
            self._in_flight -= done
            idle = False
            for tp in touched:
                part = self._parts[tp]
                part.advance()
                idle = idle or not part.outstanding
            if idle:
                self._cond.notify_all()
        return done

    def is_pending(self, tp: TopicPartition, offset: int, generation: int | None = None) -> bool:
        """True while the record is tracked and unresolved (and of ``generation``, if given)."""
        with self._cond:
            part = self._parts.get(tp)
            if part is None or offset not in part.outstanding:
                return False
            return generation is None or generation == part.generation

    def in_flight(self, tp: TopicPartition | None = None) -> int:
        """Records added and not yet resolved, for one partition or all."""
        with self._cond:
            if tp is None:
                return self._in_flight
            part = self._parts.get(tp)
            return len(part.outstanding) if part else 0

    def in_flight_by_partition(self) -> dict[TopicPartition, int]:
        with self._cond:
            return {tp: len(p.outstanding) for tp, p in self._parts.items()}

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
            return all(not self._parts[tp].outstanding for tp in wanted if tp in self._parts)

        with self._cond:
            while not idle():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def remove(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Stop tracking ``tps``; returns their uncommitted positions. Late resolves are ignored.

        Tracking ``tp`` again (``add``) starts a new generation.
        """
        out: dict[TopicPartition, int] = {}
        with self._cond:
            for tp in tps:
                part = self._parts.pop(tp, None)
                if part is None:
                    continue
                self._in_flight -= len(part.outstanding)
                if part.position is not None and part.position != part.committed:
                    out[tp] = part.position
            self._cond.notify_all()
        return out

    def partitions(self) -> list[TopicPartition]:
        with self._cond:
            return list(self._parts)
