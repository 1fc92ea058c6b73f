"""KafkaSource: a consumer-group member that commits only what has been resolved.

One thread (the *consumer thread*) calls ``start``, ``poll``, ``commit``,
``pause``/``resume``, ``lag`` and ``close``: Kafka consumers are not
thread-safe. ``poll`` returns one :class:`~streams.records.RecordBatch` per
partition, each tracked as one span of the :class:`~streams.tracker.OffsetTracker`.
Any thread resolves records once their outcome is final (decision
acknowledged, counted drop, dead-lettered) through ``source.tracker``, a row or
many rows of a span at a time (``streamfer.pipeline.outlet`` does). ``poll``
also applies backpressure (a partition with too many unresolved records is
paused until half of them resolve, through the one
:class:`~streams.pausing.Pausing` owner) and commits every
``commit_interval_s`` through its :class:`~streams.committer.Committer`.

On revocation (cooperative rebalancing) the revocation hook waits up to
``revoke_timeout_s`` for the revoked partitions' in-flight records, then
commits their resolved prefix before the rebalance completes; what is still
unresolved is abandoned uncommitted, so the next owner reprocesses it. A
client that cannot heartbeat during that wait (``heartbeats_during_revoke``
false) gets the wait capped at half the session timeout.

Exactly-once: ``use_transactions(sink)`` switches to the
:class:`~streams.committer.TransactionCommitter`.

``membership`` (:class:`~streams.membership.Membership`) holds the assignment;
``membership.listen(listener)`` reports partition events to one more party (a
stream's state): assignments, revocations (after the committer is done with them)
and rewinds to the committed offsets (after an abort).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamfer.errors import StreamError
from streamfer.streams.client import (
    ClientFactory,
    ConsumerClient,
    ConsumerOptions,
    TopicPartition,
    not_started,
)
from streamfer.streams.committer import Committer, OffsetCommitter, TransactionCommitter
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.factory import client_factory
from streamfer.streams.membership import Membership
from streamfer.streams.pausing import Pausing
from streamfer.streams.records import RecordBatch
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.tracker import OffsetTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceOptions:
    """Delivery behaviour on top of the consumer's tuning."""

    max_in_flight_per_partition: int = 10_000
    commit_interval_s: float = 0.2
    commit_timeout_s: float = 10.0
    revoke_timeout_s: float = 30.0


class KafkaSource:
    """Consumer group member with resolved-offset commits, backpressure and revocation."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        consumer: ConsumerOptions,
        options: SourceOptions | None = None,
        factory: ClientFactory | None = None,
    ) -> None:
        self.settings = settings
        self.topics = tuple(topics)
        self.consumer_options = consumer
        self.options = options or SourceOptions()
        self._factory = factory
        self._client: ConsumerClient | None = None
        self.tracker = OffsetTracker()
        self.committer: Committer = OffsetCommitter(self)
        self.pausing = Pausing(self.options.max_in_flight_per_partition)
        self.membership = Membership()
        self._next_commit = 0.0
        # how long the revocation hook waits for in-flight records (see the module doc)
        self.revoke_wait_s = revoke_wait(self.options, consumer, heartbeats=False)

    # -- lifecycle (consumer thread) --------------------------------------------------------

    def start(self) -> KafkaSource:
        """Connect and subscribe; partitions arrive with the first polls."""
        if self._client is None:
            factory = self._factory or client_factory()
            self._client = factory.consumer(
                self.settings,
                self.topics,
                self.consumer_options,
                self._on_revoke,
                self.membership.gained,
            )
            heartbeats = bool(getattr(self._client, "heartbeats_during_revoke", False))
            self.revoke_wait_s = revoke_wait(self.options, self.consumer_options, heartbeats)
            self._next_commit = time.monotonic() + self.options.commit_interval_s
        return self

    def __enter__(self) -> KafkaSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def use_transactions(self, sink: KafkaSink) -> None:
        """Commit through ``sink``'s transactions (exactly-once) instead of the consumer."""
        self.committer = TransactionCommitter(self, sink)

    @property
    def started(self) -> bool:
        """Between ``start()`` and ``close()`` (the source may be started again after)."""
        return self._client is not None

    @property
    def client(self) -> ConsumerClient:
        client = self._client
        if client is None:
            raise not_started(f"{self.topics} | KafkaSource")
        return client

    @property
    def monitor(self) -> object | None:
        """The client's connection monitor (``streamfer.streams.connection.ConnectionMonitor``)."""
        return getattr(self._client, "monitor", None)

    def close(self, timeout_s: float | None = None, *, discard: bool = False) -> None:
        """Wait (bounded) for in-flight records, commit what is resolved, leave the group.

        ``discard``: close without committing, forgetting every record in flight: the
        topic was deleted. Its offsets mean nothing now, and committed they would apply
        to a topic created again under the same name (skipping its first records).
        """
        client = self._client
        if client is None:
            return
        wait = self.options.revoke_timeout_s if timeout_s is None else timeout_s
        try:
            if not discard:
                self.committer.close(wait)
        finally:
            self.tracker.remove(self.tracker.partitions())
            client.close()  # its revocation hook finds nothing left to commit
            self._client = None

    # -- consuming (consumer thread) --------------------------------------------------------

    def poll(self, timeout_s: float = 0.1, max_records: int | None = None) -> list[RecordBatch]:
        """The next records (maybe none), a batch per partition; each batch carries its span.

        Applies backpressure and commits if due (before fetching: an exactly-once
        barrier then waits only for what earlier polls returned).
        """
        client = self.client
        self.commit_if_due()
        if not self.committer.before_poll():
            return []
        limit = max_records or self.consumer_options.max_poll_records
        batches = client.poll(timeout_s, limit)
        if not self.committer.before_poll():  # a partition was lost inside that poll
            return []
        out = []
        assigned = self.membership.assigned
        tracker = self.tracker
        for batch in batches:
            if batch.tp not in assigned:  # fetched before a revocation: the new owner reads it
                continue
            batch.span = tracker.add(batch.tp, batch.offsets, batch.timestamps_ms)
            out.append(batch)
        pausing = self.pausing
        pausing.observe_in_flight(tracker.in_flight_by_partition())
        pausing.apply(client, assigned)
        return out

    def pause(self) -> None:
        """Stop fetching every assigned partition (e.g. a downstream queue is full)."""
        self.pausing.set_downstream(True)
        self.pausing.apply(self.client, self.membership.assigned)

    def resume(self) -> None:
        """Undo ``pause``; partitions paused for in-flight backpressure stay paused."""
        self.pausing.set_downstream(False)
        self.pausing.apply(self.client, self.membership.assigned)

    def commit_if_due(self) -> None:
        """Commit if ``commit_interval_s`` has passed (``poll`` does it before fetching; a
        consumer thread that is not polling, its pipeline being full, calls it itself)."""
        if time.monotonic() < self._next_commit:
            return
        monitor = self.monitor
        if isinstance(monitor, ConnectionMonitor) and monitor.unreachable_s() > 0:
            # no commit can land while the client reports the cluster out of reach, and
            # trying blocks this thread (librdkafka's until the session times out, 10 s
            # by default): what is resolved is committed at the first interval after
            self._next_commit = time.monotonic() + self.options.commit_interval_s
            return
        try:
            self.commit(wait=False)
        except StreamError as exc:  # e.g. a rebalance in progress: the next interval retries
            log.warning("%s | periodic commit skipped: %s", self.topics, exc)

    def commit(self, wait: bool = True) -> dict[TopicPartition, int]:
        """Commit resolved positions now; returns what was committed (``wait`` False: sent,
        confirmed from a later poll where the committer allows, see ``OffsetCommitter``)."""
        self._next_commit = time.monotonic() + self.options.commit_interval_s
        return self.committer.commit(wait)

    def abort_transaction(self) -> None:
        """Exactly-once: abort the open transaction and rewind every partition."""
        self.committer.abort()

    # -- state ------------------------------------------------------------------------------

    @property
    def assigned(self) -> frozenset[TopicPartition]:
        """Current assignment (safe from any thread)."""
        return self.membership.assigned

    @property
    def joined(self) -> bool:
        """A rebalance completed for this member: its assignment, maybe empty, is known."""
        return self.membership.joined

    def lag(self) -> dict[TopicPartition, int]:
        """Records not yet consumed, per assigned partition with a position (consumer thread).

        The client's high watermark minus its *fetch position*, not minus the committed
        offset. Under exactly-once, each transaction ends with a commit marker (a control
        record) that takes an offset but is never returned: the committed offset stops
        at the last data record + 1, one short of the high watermark, so a lag measured
        from it stays at 1 on a caught-up partition. Both clients move their position past
        the control records they fetch, so a caught-up partition reports 0 here. Cost: no
        request to the broker (the watermark cached from the last fetch, the position the
        client keeps), a few dict operations per partition every export.
        """
        return self.client.lag()

    def lag_seconds(self, now_ms: int) -> dict[TopicPartition, float]:
        """Per assigned partition: the age (s, from its record timestamp at ``now_ms``) of
        the oldest record consumed but not yet resolved; 0 while none is in flight.

        Records not consumed yet do not count (``lag`` counts them). Any thread.
        """
        oldest = self.tracker.oldest_unresolved_ms()
        return {
            tp: max(0.0, (now_ms - oldest[tp]) / 1e3) if tp in oldest else 0.0
            for tp in self.membership.assigned
        }

    # -- rebalance hooks (inside the consumer's poll) ----------------------------------------

    def _on_revoke(self, tps: list[TopicPartition], lost: bool) -> Mapping[TopicPartition, int]:
        self.membership.leaving(tps)
        self.pausing.forget(tps)
        if lost:
            log.warning("%s | partitions lost (not revoked): %s", self.topics, sorted(tps))
        positions = self.committer.on_revoke(tps, lost)
        self.membership.revoked(tps, lost)
        return positions


def revoke_wait(options: SourceOptions, consumer: ConsumerOptions, heartbeats: bool) -> float:
    """How long the revocation hook waits for in-flight records: ``revoke_timeout_s``, capped
    at half the session timeout for a client that cannot heartbeat meanwhile."""
    if heartbeats:
        return options.revoke_timeout_s
    return min(options.revoke_timeout_s, consumer.session_timeout_ms / 2000)

