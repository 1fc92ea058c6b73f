"""The confluent-kafka group consumer: ``ConsumerClient`` over ``confluent_kafka.Consumer``.

``consume(n)`` returns up to n messages, grouped into one RecordBatch per
partition. Rebalance callbacks (cooperative-sticky, incremental) run inside
``consume`` on the consumer thread. The revocation hook may wait there for
in-flight records and commit; heartbeats go on meanwhile (they are librdkafka's).
Offsets returned by the hook are committed synchronously before the callback
returns, so they land before the partitions move. Periodic commits are sent
asynchronously (``commit_async``); librdkafka's ``on_commit`` reports them from a
later ``consume``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, Consumer, KafkaException
from confluent_kafka import TopicPartition as CTP

from streamfer.errors import StreamError
from streamfer.streams.client import (
    CommitDone,
    ConsumerOptions,
    OffsetReset,
    RevokeHook,
    TopicPartition,
)
from streamfer.streams.confluent.common import (
    EOF,
    RECONNECT_BACKOFF_MAX_MS,
    check_reachable,
    error_of,
    guard,
    positions_of,
    to_batches,
    tps_of,
)
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.records import RecordBatch
from streamfer.streams.security import LOGIN_CHECK_TIMEOUT_S, check_login
from streamfer.streams.settings import KafkaSettings

log = logging.getLogger(__name__)

_CommitKey = frozenset[tuple[str, int, int]]


class CommitResults:
    """librdkafka's ``on_commit`` reports, handed to the ``done`` of the ``commit_async``
    that sent the same offsets. Reports of other commits (the confirmed ones, the
    revocation hook's) match nothing and are dropped: those callers learn the outcome
    themselves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[_CommitKey, tuple[Mapping[TopicPartition, int], CommitDone]] = {}

    def expect(self, positions: Mapping[TopicPartition, int], done: CommitDone) -> None:
        key = frozenset((t, p, o) for (t, p), o in positions.items())
        with self._lock:
            self._pending[key] = (positions, done)

    def on_commit(self, err: Any, partitions: list[Any]) -> None:
        key = frozenset((tp.topic, tp.partition, tp.offset) for tp in partitions)
        with self._lock:
            waiting = self._pending.pop(key, None)
        if waiting is None:
            return
        failed = err if err is not None else next((tp.error for tp in partitions if tp.error), None)
        positions, done = waiting
        done(positions, None if failed is None else str(failed))


class ConfluentConsumer:
    """``ConsumerClient`` over ``confluent_kafka.Consumer`` (cooperative sticky, manual commit)."""

    heartbeats_during_revoke = True  # librdkafka heartbeats on its own thread

    def __init__(
        self,
        consumer: Consumer,
        settings: KafkaSettings,
        reset: OffsetReset,
        monitor: ConnectionMonitor,
        commits: CommitResults,
        one_topic: bool = False,
    ) -> None:
        self._c = consumer
        self._commits = commits
        self._settings = settings
        self._reset = reset
        self._paused: set[TopicPartition] = set()
        self.monitor = monitor
        self._one_topic = one_topic  # subscribed to one topic: a partition number says all

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]:
        consume = self._c.consume
        # consume(n, t) waits until n messages are there or t has passed: at low rates that
        # is t of latency per poll. Take what is there now; else wait for the first only.
        msgs: list[Any] = consume(max_records, 0)
        if not msgs:
            msgs = consume(1, timeout_s)
            if not msgs:
                return []
            if max_records > 1:
                msgs += consume(max_records - 1, 0)
        now = time.monotonic_ns()
        self.monitor.ok()  # messages or EOF: the cluster answered
        if any(m.error() is not None for m in msgs):
            for m in msgs:
                if m.error() is not None:
                    self._message_error(m)
            msgs = [m for m in msgs if m.error() is None]
        if not msgs:
            return []
        head: Any = msgs[0]
        partition = head.partition()
        groups: dict[TopicPartition, list[Any]]
        if self._one_topic and all(m.partition() == partition for m in msgs):
            groups = {(head.topic(), partition): msgs}  # the usual case: one partition
        else:
            groups = {}
            message: Any
            for message in msgs:
                groups.setdefault((message.topic(), message.partition()), []).append(message)
        return to_batches(groups, now)

    def _message_error(self, m: Any) -> None:
        err = m.error()
        if err.code() == EOF:
            return
        if err.fatal():
            raise StreamError(f"{self._settings.describe()} | consumer failed: {err}")
        log.warning("%s | consumer: %s", self._settings.describe(), err)

    def commit(self, positions: Mapping[TopicPartition, int], timeout_s: float) -> None:
        """Commit and wait (at most ``timeout_s``) until the group's offsets say so.

        librdkafka's synchronous commit has no timeout: begun as the coordinator goes
        away, it waits until the coordinator is back, holding the consumer thread (no
        polls, no liveness, no lag) for the whole outage. So the commit is sent
        asynchronously and confirmed by reading the committed offsets back, which has a
        timeout; requests to the coordinator are answered in order.
        """
        what = f"commit {sorted(positions.items())}"
        self._c.commit(offsets=positions_of(positions), asynchronous=True)
        got = guard(
            what,
            self._settings,
            lambda: self._c.committed(tps_of(positions), timeout=timeout_s),
        )
        behind = {
            (tp.topic, tp.partition): tp.offset
            for tp in got
            if tp.offset != positions[(tp.topic, tp.partition)]
        }
        if behind:
            raise StreamError(
                f"{self._settings.describe()} | {what} not confirmed: the group has "
                f"{sorted(behind.items())}. Note: retried at the next commit"
            )
        self.monitor.ok()

    def commit_async(self, positions: Mapping[TopicPartition, int], done: CommitDone) -> None:
        self._commits.expect(positions, done)
        self._c.commit(offsets=positions_of(positions), asynchronous=True)

    def committed(self, tp: TopicPartition, timeout_s: float) -> int | None:
        (got,) = guard(
            f"committed offset of {tp[0]}[{tp[1]}]",
            self._settings,
            lambda: self._c.committed([CTP(*tp)], timeout=timeout_s),
        )
        return None if got.offset == OFFSET_INVALID else int(got.offset)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        guard(f"seek {tp[0]}[{tp[1]}]", self._settings, lambda: self._c.seek(CTP(*tp, offset)))

    def rewind(self, tps: Collection[TopicPartition], timeout_s: float) -> None:
        if not tps:
            return
        got = guard(
            f"committed offsets of {sorted(tps)}",
            self._settings,
            lambda: self._c.committed(tps_of(tps), timeout=timeout_s),
        )
        fallback = OFFSET_BEGINNING if self._reset == "earliest" else OFFSET_END
        for ctp in got:
            offset = fallback if ctp.offset == OFFSET_INVALID else ctp.offset
            self.seek((ctp.topic, ctp.partition), offset)

    def pause(self, tps: Collection[TopicPartition]) -> None:
        if tps:
            self._c.pause(tps_of(tps))
            self._paused |= set(tps)

    def resume(self, tps: Collection[TopicPartition]) -> None:
        if tps:
            self._c.resume(tps_of(tps))
            self._paused -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return self._paused & self.assignment()

    def assignment(self) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in self._c.assignment()}

    def lag(self) -> dict[TopicPartition, int]:
        """High watermark (as of the last fetch) minus position, per assigned partition."""
        out: dict[TopicPartition, int] = {}
        assigned = self._c.assignment()
        if not assigned:
            return out
        for ctp in self._c.position(assigned):
            if ctp.offset < 0:
                continue  # nothing consumed yet: no position to measure from
            _low, high = self._c.get_watermark_offsets(ctp, cached=True)
            if high >= 0:
                out[(ctp.topic, ctp.partition)] = max(high - ctp.offset, 0)
        return out

    def group_metadata(self) -> object:
        return self._c.consumer_group_metadata()

    def close(self) -> None:
        self._c.close()


def open_consumer(
    settings: KafkaSettings,
    topics: Sequence[str],
    options: ConsumerOptions,
    on_revoke: RevokeHook,
    on_assign: Callable[[list[TopicPartition]], None],
) -> ConfluentConsumer:
    # librdkafka retries a refused login for ever: fail at once, explained
    check_login(settings, min(options.request_timeout_ms / 1000, LOGIN_CHECK_TIMEOUT_S))
    monitor = ConnectionMonitor(settings.describe())
    commits = CommitResults()
    conf: dict[str, Any] = {
        **settings.librdkafka_config(),
        "group.id": options.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": options.auto_offset_reset,
        "isolation.level": options.isolation_level,
        "fetch.wait.max.ms": options.fetch_max_wait_ms,
        "fetch.min.bytes": options.fetch_min_bytes,
        "max.partition.fetch.bytes": options.max_partition_fetch_bytes,
        "queued.max.messages.kbytes": options.queued_max_kbytes,
        # a full prefetch queue makes librdkafka wait fetch.queue.backoff.ms (default
        # 1 s) before fetching again: a stall at every pause/resume or burst
        "queued.min.messages": options.queued_min_messages,
        "fetch.queue.backoff.ms": options.fetch_queue_backoff_ms,
        "session.timeout.ms": options.session_timeout_ms,
        "heartbeat.interval.ms": options.heartbeat_interval_ms,
        "max.poll.interval.ms": options.max_poll_interval_ms,
        "socket.timeout.ms": options.request_timeout_ms,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "error_cb": monitor.on_error,
        "stats_cb": monitor.on_stats,
        "statistics.interval.ms": options.stats_interval_ms,
        "logger": monitor,
        "on_commit": commits.on_commit,
    }
    consumer = Consumer(conf)
    hooks = _RebalanceHooks(consumer, on_revoke, on_assign, settings)
    check_reachable(
        consumer,
        f"consumer for group {options.group_id!r}",
        settings,
        options.request_timeout_ms / 1000,
        monitor,
    )
    consumer.subscribe(
        list(topics), on_assign=hooks.assign, on_revoke=hooks.revoke, on_lost=hooks.lost
    )
    return ConfluentConsumer(
        consumer, settings, options.auto_offset_reset, monitor, commits, one_topic=len(topics) == 1
    )


class _RebalanceHooks:
    """librdkafka's rebalance callbacks, turned into the source's hooks.

    Exceptions must not escape into ``consume`` (they would surface there, away from
    their cause): a failed hook is logged, and the offsets it returned are not committed.
    """

    def __init__(
        self,
        consumer: Consumer,
        on_revoke: RevokeHook,
        on_assign: Callable[[list[TopicPartition]], None],
        settings: KafkaSettings,
    ) -> None:
        self._consumer = consumer
        self._on_revoke = on_revoke
        self._on_assign = on_assign
        self._settings = settings

    def assign(self, _consumer: Consumer, partitions: list[CTP]) -> None:
        self._on_assign([(tp.topic, tp.partition) for tp in partitions])

    def revoke(self, _consumer: Consumer, partitions: list[CTP]) -> None:
        self._revoke(partitions, lost=False)

    def lost(self, _consumer: Consumer, partitions: list[CTP]) -> None:
        self._revoke(partitions, lost=True)

    def _revoke(self, partitions: list[CTP], lost: bool) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        try:
            positions = self._on_revoke(tps, lost)
        except Exception:
            log.exception("%s | revocation of %s failed", self._settings.describe(), tps)
            return
        if positions and not lost:
            try:  # before the callback returns: the commit lands before the partitions move
                self._consumer.commit(offsets=positions_of(positions), asynchronous=False)
            except KafkaException as exc:
                log.warning(
                    "commit on revocation of %s failed: %s", sorted(positions), error_of(exc)
                )
