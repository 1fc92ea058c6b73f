"""Committers: the one place offsets are committed, plainly or in a transaction.

A committer turns the tracker's resolved positions into commits and decides
what a revocation, a lost partition and a close commit. Two of them:

* :class:`OffsetCommitter` (at-least-once): commits the resolved positions
  through the consumer every ``commit_interval_s`` and on revocation (after a
  bounded wait for the revoked partitions' in-flight records).
* :class:`TransactionCommitter` (exactly-once): commits the positions through
  the sink's transaction (``send_offsets_to_transaction`` with the consumer's
  group metadata) at a barrier where nothing is in flight; a failed or timed-out
  commit, or a partition *lost* (not revoked), aborts the open transaction and
  rewinds every partition to its last committed offset.

Both are driven by :class:`~streams.source.KafkaSource` from the consumer
thread (``commit_due``/``commit``/``close``) and from the rebalance hook
(``on_revoke``); the source is what they commit through (``CommitSource``: its
consumer, tracker and membership).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from streamfer.errors import StreamError
from streamfer.streams.client import ConsumerClient
from streamfer.streams.membership import Membership
from streamfer.streams.tracker import OffsetTracker

if TYPE_CHECKING:
    from streamfer.streams.sink import KafkaSink

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


class CommitTimeouts(Protocol):
    @property
    def commit_timeout_s(self) -> float: ...


class CommitSource(Protocol):
    """What a committer commits through: a ``streamfer.streams.source.KafkaSource``."""

    @property
    def topics(self) -> tuple[str, ...]: ...

    @property
    def options(self) -> CommitTimeouts: ...

    @property
    def tracker(self) -> OffsetTracker: ...

    @property
    def client(self) -> ConsumerClient: ...

    @property
    def membership(self) -> Membership: ...

    @property
    def revoke_wait_s(self) -> float: ...


class Committer(Protocol):
    def commit(self, wait: bool = True) -> dict[TopicPartition, int]:
        """Commit what is resolved now; returns what was committed (``wait`` False: what
        was sent, confirmed later where the committer can do that without waiting)."""
        ...

    def on_revoke(self, tps: list[TopicPartition], lost: bool) -> Mapping[TopicPartition, int]:
        """Partitions leave: positions to commit before they move (empty: nothing)."""
        ...

    def before_poll(self) -> bool:
        """Work due before the next fetch; False: skip this poll (its work was undone)."""
        ...

    def close(self, wait_s: float) -> None:
        """Wait (bounded) for what is in flight, commit what is resolved."""
        ...

    def abort(self) -> None:
        """Undo uncommitted work: exactly-once aborts and rewinds; at-least-once forgets."""
        ...


class OffsetCommitter:
    """At-least-once: resolved positions are committed through the consumer.

    The periodic commit (``wait=False``) is sent and not waited for: a wait is a round
    trip to the coordinator on the consumer thread every commit interval, and every
    record fetched meanwhile waits with it. Positions count as committed once the
    group confirms them; a commit that failed or is still unanswered leaves them
    uncommitted, so the next commit, the revocation's and the final one (which wait)
    send them again. Committing less than is resolved is always safe here: it only
    means records read again after a restart, which at-least-once allows.
    """

    def __init__(self, source: CommitSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._sent: Mapping[TopicPartition, int] | None = None  # unconfirmed, asynchronous

    def commit(self, wait: bool = True) -> dict[TopicPartition, int]:
        tracker = self.source.tracker
        positions = tracker.positions()
        if not positions:
            return positions
        if wait:
            self.source.client.commit(positions, self.source.options.commit_timeout_s)
            tracker.mark_committed(positions)
            return positions
        with self._lock:
            if positions == self._sent:  # on its way already
                return {}
            self._sent = positions
        self.source.client.commit_async(positions, self._confirmed)
        return positions

    def _confirmed(self, positions: Mapping[TopicPartition, int], error: str | None) -> None:
        with self._lock:
            if self._sent == positions:
                self._sent = None
        if error is None:
            self.source.tracker.mark_committed(positions)
        else:
            log.warning(
                "%s | commit %s failed: %s. Note: sent again at the next commit",
                self.source.topics, sorted(positions.items()), error,
            )  # fmt: skip

    def before_poll(self) -> bool:
        return True

    def on_revoke(self, tps: list[TopicPartition], lost: bool) -> Mapping[TopicPartition, int]:
        tracker = self.source.tracker
        if lost:  # someone else owns them already: a commit would be refused anyway
            tracker.remove(tps)
            return {}
        if not tracker.wait_idle(tps, self.source.revoke_wait_s):
            log.warning("%s | revoked with records in flight; they will be reprocessed", tps)
        return tracker.remove(tps)

    def close(self, wait_s: float) -> None:
        self.source.tracker.wait_idle(None, wait_s)
        deadline = time.monotonic() + self.source.options.commit_timeout_s
        while True:  # a rebalance in progress refuses commits: polls drive it to completion
            try:
                self.commit()
                return
            except StreamError as exc:
                if time.monotonic() >= deadline:
                    log.warning("%s | final commit failed: %s", self.source.topics, exc)
                    return
            # records such a poll returns lie beyond every tracked offset: nothing
            # commits past them, the next owner reads them
            self.source.client.poll(0.05, 1)

    def abort(self) -> None:
        tracker = self.source.tracker
        tracker.remove(tracker.partitions())
        assignment = self.source.client.assignment()
        self.source.client.rewind(assignment, self.source.options.commit_timeout_s)
        self.source.membership.rewound(assignment)


class TransactionCommitter:
    """Exactly-once: offsets and outputs commit together in the sink's transaction."""

    def __init__(self, source: CommitSource, sink: KafkaSink) -> None:
        if not sink.transactional:
            raise StreamError(
                f"{source.topics} | exactly-once needs a transactional sink. "
                "Note: set ProducerOptions.transactional_id"
            )
        self.source = source
        self.sink = sink
        self._abort_needed = threading.Event()

    def before_poll(self) -> bool:
        if self._abort_needed.is_set():  # a partition was lost since the last poll
            self.abort()
            return False
        return True

    def commit(self, wait: bool = True) -> dict[TopicPartition, int]:
        """Commits the open transaction; it always waits (``wait`` is not used)."""
        if self._abort_needed.is_set():  # a partition was lost: its output must not commit
            self.abort()
            return {}
        tracker, timeout = self.source.tracker, self.source.options.commit_timeout_s
        if not tracker.wait_idle(None, timeout):
            unresolved = tracker.in_flight()
            self.abort()
            raise StreamError(
                f"{self.source.topics} | {unresolved} records still unresolved after "
                f"{timeout:.1f} s; transaction aborted and rewound. "
                "Note: exactly-once commits wait until every polled record is resolved"
            )
        positions = tracker.positions()
        if not positions:
            self._abort_orphans()
            return positions
        try:
            self.sink.commit_transaction(positions, self.source.client.group_metadata())
        except StreamError:
            self.abort()
            raise
        tracker.mark_committed(positions)
        return positions

    def _abort_orphans(self) -> None:
        """Nothing resolved since the last commit, yet a transaction is open: what it
        holds belongs to no tracked record (abandoned work), so it must not commit."""
        if self.sink.in_transaction:
            log.warning(
                "%s | open transaction without resolved records aborted", self.source.topics
            )
            self.sink.abort_transaction()

    def on_revoke(self, tps: list[TopicPartition], lost: bool) -> Mapping[TopicPartition, int]:
        tracker = self.source.tracker
        if lost:
            # Their records are abandoned (no output of theirs joins the transaction from
            # now on: sends check the span under the transaction lock), and the open
            # transaction may hold some already: the next poll aborts it and rewinds.
            tracker.remove(tps)
            self._abort_needed.set()
            return {}
        try:
            self._commit_on_revoke()
        except StreamError as exc:
            log.warning("%s | transaction on revocation failed: %s", tps, exc)
            self._abort_needed.set()
        tracker.remove(tps)
        return {}

    def _commit_on_revoke(self) -> None:
        if self._abort_needed.is_set():
            raise StreamError("a partition was lost; the open transaction is to be aborted")
        tracker = self.source.tracker
        if not tracker.wait_idle(None, self.source.revoke_wait_s):
            raise StreamError(f"{tracker.in_flight()} records unresolved at revocation")
        positions = tracker.positions()
        if not positions:
            self._abort_orphans()
            return
        self.sink.commit_transaction(positions, self.source.client.group_metadata())
        tracker.mark_committed(positions)

    def close(self, wait_s: float) -> None:
        """A transaction commits only with nothing in flight: what is still unresolved
        after ``wait_s`` makes close abort the open transaction (no rewind: the next
        owner reads from the last commit)."""
        tracker = self.source.tracker
        if self._abort_needed.is_set() or not tracker.wait_idle(None, wait_s):
            log.warning(
                "%s | closing with %d records unresolved; transaction aborted",
                self.source.topics,
                tracker.in_flight(),
            )
            self.sink.abort_transaction(then=lambda: tracker.remove(tracker.partitions()))
            return
        try:
            self.commit()
        except StreamError as exc:
            log.warning("%s | final commit failed: %s", self.source.topics, exc)

    def abort(self) -> None:
        self._abort_needed.clear()
        tracker = self.source.tracker
        try:  # under the sink's lock: no output of an abandoned record slips in between
            self.sink.abort_transaction(then=lambda: tracker.remove(tracker.partitions()))
        except StreamError as exc:
            log.warning("%s | abort failed: %s", self.source.topics, exc)
        client = self.source.client
        assignment = client.assignment()
        client.rewind(assignment, self.source.options.commit_timeout_s)
        self.source.membership.rewound(assignment)
