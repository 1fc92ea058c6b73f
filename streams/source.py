"""KafkaSource: a consumer-group member that commits only what has been resolved.

One thread (the *consumer thread*) calls ``start``, ``poll``, ``commit``,
``pause``/``resume``, ``lag`` and ``close``: Kafka consumers are not
thread-safe. Any thread may call ``resolve`` once a record's outcome is final
(decision acknowledged, counted drop, dead-lettered). ``poll`` also applies
backpressure (a partition with too many unresolved records is paused until
half of them resolve) and commits every ``commit_interval_s``.

On revocation (cooperative rebalancing) the consumer's I/O thread waits up to
``revoke_timeout_s`` for the revoked partitions' in-flight records, then
commits their resolved prefix before the rebalance completes; what is still
unresolved is abandoned uncommitted, so the next owner reprocesses it. The
kafka-python client runs that wait off its event loop, so heartbeats go on;
a client that cannot (no ``heartbeats_during_revoke``) gets the wait capped at
half the session timeout, so the member is not evicted while it waits.

Exactly-once: after ``use_transactions(sink)`` commits go through the sink's
transaction (``send_offsets_to_transaction`` with this consumer's group
metadata) at a barrier where nothing is in flight; a failed or timed-out
commit aborts the transaction and rewinds to the last committed offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from streamfer.errors import StreamError
from streams.client import (
    ClientFactory,
    ConsumerClient,
    ConsumerOptions,
    Delivered,
    DeliveryCallback,
    TopicPartition,
)
from streams.records import Record
from streams.settings import KafkaSettings
from streams.sink import KafkaSink
from streams.tracker import OffsetTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceOptions:
    """Delivery behaviour on top of the consumer's tuning."""

    max_in_flight_per_partition: int = 10_000
    commit_interval_s: float = 0.5
    commit_timeout_s: float = 10.0
    revoke_timeout_s: float = 10.0


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
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._bp_paused: set[TopicPartition] = set()
        self._user_paused = False
        self._next_commit = 0.0
        self._txn_sink: KafkaSink | None = None
        self._abort_needed = threading.Event()
        self.delivery_errors = 0

    # -- lifecycle (consumer thread) --------------------------------------------------------

    def start(self) -> KafkaSource:
        """Connect and subscribe; partitions arrive with the first polls."""
        if self._client is None:
            if self._factory is None:
                from streams.kafka_python import KafkaPythonFactory

                self._factory = KafkaPythonFactory()
            self._client = self._factory.consumer(
                self.settings, self.topics, self.consumer_options, self._on_revoke, self._on_assign
            )
            self._next_commit = time.monotonic() + self.options.commit_interval_s
        return self

    def __enter__(self) -> KafkaSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def use_transactions(self, sink: KafkaSink) -> None:
        """Commit through ``sink``'s transactions (exactly-once) instead of the consumer."""
        if not sink.transactional:
            raise StreamError(
                f"{self.topics} | use_transactions needs a transactional sink. "
                "Note: set ProducerOptions.transactional_id"
            )
        self._txn_sink = sink

    @property
    def client(self) -> ConsumerClient:
        if self._client is None:
            raise StreamError(
                f"{self.topics} | KafkaSource used before start(). "
                "Note: call start() or use it as a context manager"
            )
        return self._client

    def close(self, timeout_s: float | None = None) -> None:
        """Wait (bounded) for in-flight records, commit what is resolved, leave the group.

        Exactly-once: a transaction can commit only with nothing in flight, so what is
        still unresolved after ``timeout_s`` makes close abort the open transaction (no
        second wait, no rewind: the next owner reads from the last commit).
        """
        client = self._client
        if client is None:
            return
        wait = self.options.revoke_timeout_s if timeout_s is None else timeout_s
        try:
            idle = self.tracker.wait_idle(None, wait)
            if self._txn_sink is not None and not idle:
                log.warning(
                    "%s | closing with %d records unresolved; transaction aborted",
                    self.topics,
                    self.tracker.in_flight(),
                )
                tracker = self.tracker
                self._txn_sink.abort_transaction(then=lambda: tracker.remove(tracker.partitions()))
            else:
                self._final_commit(client, time.monotonic() + self.options.commit_timeout_s)
        finally:
            self.tracker.remove(self.tracker.partitions())
            client.close()  # its revocation hook finds nothing left to commit
            self._client = None

    def _final_commit(self, client: ConsumerClient, deadline: float) -> None:
        """Commit, retrying while a rebalance is in progress (polls drive it to completion).

        Records such a poll returns are dropped: they lie beyond every tracked offset,
        so nothing commits past them and the next owner reads them.
        """
        while True:
            try:
                self.commit()
                return
            except StreamError as exc:
                if time.monotonic() >= deadline or self._txn_sink is not None:
                    log.warning("%s | final commit failed: %s", self.topics, exc)
                    return
            client.poll(0.05, 1)

    # -- consuming (consumer thread) --------------------------------------------------------

    def poll(self, timeout_s: float = 0.1, max_records: int | None = None) -> list[Record]:
        """The next records (maybe none); tracks them, applies backpressure, commits if due."""
        client = self.client
        if time.monotonic() >= self._next_commit:  # before fetching: a barrier commit
            self._commit_due()  # (exactly-once) then waits only for what earlier polls returned
        limit = max_records or self.consumer_options.max_poll_records
        batches = client.poll(timeout_s, limit)
        if self._abort_needed.is_set():
            self._abort_and_rewind()
            return []
        if self._user_paused:
            self._pause_new_assignments(client)
        records: list[Record] = []
        tracker = self.tracker
        assigned = client.assignment() if batches else set()
        for tp, recs in batches.items():
            if tp not in assigned:  # fetched before a revocation: the new owner reads it
                continue
            gen = tracker.add(tp, [r.offset for r in recs])
            records.extend([r._replace(generation=gen) for r in recs])
        self._backpressure()
        return records

    def _backpressure(self) -> None:
        limit = self.options.max_in_flight_per_partition
        counts = self.tracker.in_flight_by_partition()
        over = {tp for tp, n in counts.items() if n >= limit} - self._bp_paused
        under = {tp for tp in self._bp_paused if counts.get(tp, 0) <= limit // 2}
        if over:
            self._bp_paused |= over
            self.client.pause(over)
        if under:
            self._bp_paused -= under
            if not self._user_paused:
                self.client.resume(under & self._assigned)

    def pause(self) -> None:
        """Stop fetching every assigned partition (e.g. a downstream queue is full)."""
        self._user_paused = True
        self.client.pause(self.client.assignment())

    def _pause_new_assignments(self, client: ConsumerClient) -> None:
        """Partitions assigned while paused would be fetched: pause them too."""
        unpaused = client.assignment() - client.paused()
        if unpaused:
            client.pause(unpaused)

    def resume(self) -> None:
        """Undo ``pause``; partitions paused for in-flight backpressure stay paused."""
        self._user_paused = False
        self.client.resume(self.client.assignment() - self._bp_paused)

    def _commit_due(self) -> None:
        try:
            self.commit()
        except StreamError as exc:  # e.g. a rebalance in progress: the next interval retries
            log.warning("%s | periodic commit skipped: %s", self.topics, exc)

    def commit(self) -> dict[TopicPartition, int]:
        """Commit resolved positions now; returns what was committed."""
        self._next_commit = time.monotonic() + self.options.commit_interval_s
        if self._txn_sink is not None:
            return self._commit_transaction(self._txn_sink)
        positions = self.tracker.positions()
        if positions:
            self.client.commit(positions, self.options.commit_timeout_s)
            self.tracker.mark_committed(positions)
        return positions

    def _commit_transaction(self, sink: KafkaSink) -> dict[TopicPartition, int]:
        if self._abort_needed.is_set():  # a partition was lost: its output must not commit
            self._abort_and_rewind()
            return {}
        if not self.tracker.wait_idle(None, self.options.commit_timeout_s):
            unresolved = self.tracker.in_flight()
            self._abort_and_rewind()
            raise StreamError(
                f"{self.topics} | {unresolved} records still unresolved after "
                f"{self.options.commit_timeout_s:.1f} s; transaction aborted and rewound. "
                "Note: exactly-once commits wait until every polled record is resolved"
            )
        positions = self.tracker.positions()
        if not positions:
            self._abort_orphans(sink)
            return positions
        try:
            sink.commit_transaction(positions, self.client.group_metadata())
        except StreamError:
            self._abort_and_rewind()
            raise
        self.tracker.mark_committed(positions)
        return positions

    def _abort_orphans(self, sink: KafkaSink) -> None:
        """Nothing resolved since the last commit, yet a transaction is open: what it
        holds belongs to no tracked record (abandoned work), so it must not commit."""
        if sink.in_transaction:
            log.warning("%s | open transaction without resolved records aborted", self.topics)
            sink.abort_transaction()

    def abort_transaction(self) -> None:
        """Abort the open transaction and rewind every partition to its committed offset."""
        self._abort_and_rewind()

    def _abort_and_rewind(self) -> None:
        self._abort_needed.clear()
        tracker = self.tracker
        if self._txn_sink is not None:
            try:  # under the sink's lock: no output of an abandoned record slips in between
                self._txn_sink.abort_transaction(then=lambda: tracker.remove(tracker.partitions()))
            except StreamError as exc:
                log.warning("%s | abort failed: %s", self.topics, exc)
        else:
            tracker.remove(tracker.partitions())
        self.client.rewind(self.client.assignment(), self.options.commit_timeout_s)

    # -- resolving (any thread) -------------------------------------------------------------

    def resolve(self, record: Record) -> bool:
        """Mark one record's outcome final; False if it was not in flight."""
        return self.tracker.resolve(
            (record.topic, record.partition), record.offset, record.generation
        )

    def is_pending(self, record: Record) -> bool:
        """False once a record was resolved, or abandoned by a revocation or an abort
        (a re-polled copy of the same offset is a new generation: the abandoned one
        stays not pending).

        With transactions, check it inside ``KafkaSink.send(..., only_if=...)``: work for
        an abandoned record must not land in the next transaction (it will be re-polled).
        """
        return self.tracker.is_pending(
            (record.topic, record.partition), record.offset, record.generation
        )

    def resolve_many(self, records: Iterable[Record]) -> int:
        return self.tracker.resolve_many(
            ((r.topic, r.partition), r.offset, r.generation) for r in records
        )

    def ack_callback(self, record: Record) -> DeliveryCallback:
        """A sink ``on_delivery`` that resolves ``record`` once its output is acknowledged.

        A failed delivery leaves the record unresolved, so it is never committed past.
        """

        def on_delivery(_md: Delivered | None, error: Exception | None) -> None:
            if error is None:
                self.resolve(record)
            else:
                self.delivery_errors += 1
                log.warning("%s | output not delivered: %r", record.coords, error)

        return on_delivery

    # -- state ------------------------------------------------------------------------------

    @property
    def assigned(self) -> frozenset[TopicPartition]:
        """Current assignment (safe from any thread)."""
        return self._assigned

    def in_flight(self) -> int:
        return self.tracker.in_flight()

    def lag(self) -> dict[TopicPartition, int]:
        """Records behind the high watermark, per assigned partition (consumer thread)."""
        return self.client.lag()

    # -- rebalance hooks (consumer I/O thread, while the consumer thread is in poll) ----------

    @property
    def revoke_wait_s(self) -> float:
        """How long the revocation hook waits for in-flight records (see the module doc)."""
        wait = self.options.revoke_timeout_s
        if self._client is not None and getattr(self._client, "heartbeats_during_revoke", False):
            return wait
        return min(wait, self.consumer_options.session_timeout_ms / 2000)

    def _on_assign(self, tps: list[TopicPartition]) -> None:
        self._assigned = self._assigned | frozenset(tps)

    def _on_revoke(self, tps: list[TopicPartition], lost: bool) -> Mapping[TopicPartition, int]:
        self._assigned = self._assigned - frozenset(tps)
        self._bp_paused -= set(tps)
        if lost:
            self.tracker.remove(tps)
            if self._txn_sink is not None:
                self._abort_needed.set()
            return {}
        if self._txn_sink is None:
            if not self.tracker.wait_idle(tps, self.revoke_wait_s):
                log.warning("%s | revoked with records in flight; they will be reprocessed", tps)
            return self.tracker.remove(tps)
        try:
            self._commit_transaction_on_revoke(self._txn_sink)
        except StreamError as exc:
            log.warning("%s | transaction on revocation failed: %s", tps, exc)
            self._abort_needed.set()
        self.tracker.remove(tps)
        return {}

    def _commit_transaction_on_revoke(self, sink: KafkaSink) -> None:
        if self._abort_needed.is_set():
            raise StreamError("a partition was lost; the open transaction is to be aborted")
        if not self.tracker.wait_idle(None, self.revoke_wait_s):
            raise StreamError(f"{self.tracker.in_flight()} records unresolved at revocation")
        positions = self.tracker.positions()
        if not positions:
            self._abort_orphans(sink)
            return
        sink.commit_transaction(positions, self.client.group_metadata())
        self.tracker.mark_committed(positions)
