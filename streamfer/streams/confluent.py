"""The librdkafka (confluent-kafka) implementation of the ``streamfer.streams.client`` Protocols.

librdkafka fetches, heartbeats and sends on its own C threads, so the Python
side only moves batches in and out: ``consume(n)`` returns up to n messages,
which are grouped into one :class:`~streams.records.RecordBatch` per
partition; ``produce`` only enqueues, and delivery reports are served by
``poll``/``flush`` (``KafkaSink`` keeps a thread polling).

Rebalance callbacks (cooperative-sticky, incremental) run inside ``consume``
on the consumer thread. The revocation hook may wait there for in-flight
records and commit; heartbeats go on meanwhile (they are librdkafka's).
Offsets returned by the hook are committed synchronously before the
callback returns, so they land before the partitions move.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as CTP

from streamfer.errors import StreamError
from streamfer.streams.admin import BOOTSTRAP_ENV
from streamfer.streams.client import (
    ConsumerOptions,
    DeliveryCallback,
    Headers,
    OffsetReset,
    ProducerOptions,
    ReaderOptions,
    RevokeHook,
    TopicPartition,
)
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.records import RecordBatch
from streamfer.streams.security import LOGIN_CHECK_TIMEOUT_S, check_login
from streamfer.streams.settings import KafkaSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

_EOF = KafkaError._PARTITION_EOF
_NOT_KNOWN_YET = (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART)
_METADATA_RETRY_S = 0.1
# librdkafka backs off reconnecting up to 10 s: a broker back after an outage was found
# up to 10 s late (the Java client waits at most 1 s)
_RECONNECT_BACKOFF_MAX_MS = 1000
_BUFFER_WAIT_S = 0.05  # a full local queue: serve delivery reports, then retry


def _error_of(exc: BaseException) -> Any:
    return exc.args[0] if exc.args else exc


def _guard(what: str, settings: KafkaSettings, call: Callable[[], T]) -> T:
    """Run a client call; library errors become StreamError naming the cluster."""
    try:
        return call()
    except KafkaException as exc:
        raise StreamError(f"{settings.describe()} | {what} failed: {_error_of(exc)}") from exc


def _positions(positions: Mapping[TopicPartition, int]) -> list[CTP]:
    return [CTP(t, p, off) for (t, p), off in positions.items()]


def _tps(tps: Collection[TopicPartition]) -> list[CTP]:
    return [CTP(t, p) for t, p in tps]


def _check_reachable(
    client: Consumer | Producer,
    what: str,
    settings: KafkaSettings,
    timeout_s: float,
    monitor: ConnectionMonitor,
) -> None:
    """One metadata request: a cluster that never answers fails the start, clearly."""
    try:
        client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        detail = monitor.last_error or str(_error_of(exc))
        raise StreamError(
            f"{settings.describe()} | {what}: no broker answered within {timeout_s:g} s "
            f"({detail}). Note: start one with `streamfer broker start` or point "
            f"{BOOTSTRAP_ENV} / --bootstrap at a running cluster"
        ) from exc
    monitor.ok()


class ConfluentConsumer:
    """``ConsumerClient`` over ``confluent_kafka.Consumer`` (cooperative sticky, manual commit)."""

    heartbeats_during_revoke = True  # librdkafka heartbeats on its own thread

    def __init__(
        self,
        consumer: Consumer,
        settings: KafkaSettings,
        reset: OffsetReset,
        monitor: ConnectionMonitor,
        one_topic: bool = False,
    ) -> None:
        self._c = consumer
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
        return _batches(groups, now)

    def _message_error(self, m: Any) -> None:
        err = m.error()
        if err.code() == _EOF:
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
        self._c.commit(offsets=_positions(positions), asynchronous=True)
        got = _guard(
            what,
            self._settings,
            lambda: self._c.committed(_tps(positions), timeout=timeout_s),
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

    def committed(self, tp: TopicPartition, timeout_s: float) -> int | None:
        (got,) = _guard(
            f"committed offset of {tp[0]}[{tp[1]}]",
            self._settings,
            lambda: self._c.committed([CTP(*tp)], timeout=timeout_s),
        )
        return None if got.offset == OFFSET_INVALID else int(got.offset)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        _guard(f"seek {tp[0]}[{tp[1]}]", self._settings, lambda: self._c.seek(CTP(*tp, offset)))

    def rewind(self, tps: Collection[TopicPartition], timeout_s: float) -> None:
        if not tps:
            return
        got = _guard(
            f"committed offsets of {sorted(tps)}",
            self._settings,
            lambda: self._c.committed(_tps(tps), timeout=timeout_s),
        )
        fallback = OFFSET_BEGINNING if self._reset == "earliest" else OFFSET_END
        for ctp in got:
            offset = fallback if ctp.offset == OFFSET_INVALID else ctp.offset
            self.seek((ctp.topic, ctp.partition), offset)

    def pause(self, tps: Collection[TopicPartition]) -> None:
        if tps:
            self._c.pause(_tps(tps))
            self._paused |= set(tps)

    def resume(self, tps: Collection[TopicPartition]) -> None:
        if tps:
            self._c.resume(_tps(tps))
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


class ConfluentProducer:
    """``ProducerClient`` over ``confluent_kafka.Producer``."""

    needs_polling = True

    def __init__(
        self,
        producer: Producer,
        settings: KafkaSettings,
        options: ProducerOptions,
        monitor: ConnectionMonitor,
    ) -> None:
        self._p = producer
        self._settings = settings
        self._max_block_s = options.max_block_ms / 1000
        self._txn_timeout_s = options.transaction_timeout_ms / 1000
        self.monitor = monitor

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        on_delivery: DeliveryCallback | None,
        partition: int | None = None,
    ) -> None:
        produce = self._p.produce
        kwargs: dict[str, Any] = {"on_delivery": on_delivery}
        if headers:
            kwargs["headers"] = list(headers)
        if partition is not None:
            kwargs["partition"] = partition
        deadline = 0.0
        while True:
            try:
                produce(topic, value, key, **kwargs)
                return
            except BufferError:  # the local queue is full: backpressure, not failure
                now = time.monotonic()
                deadline = deadline or now + self._max_block_s
                if now >= deadline:
                    raise StreamError(
                        f"{topic} | the producer queue stayed full for {self._max_block_s:g} s. "
                        f"Note: is {self._settings.describe()} accepting writes?"
                    ) from None
                self._p.poll(_BUFFER_WAIT_S)
            except KafkaException as exc:
                raise StreamError(
                    f"{topic} | send to {self._settings.describe()} failed: {_error_of(exc)}"
                ) from exc

    def send_many(
        self,
        topic: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None],
        on_delivery: DeliveryCallback,
        partition: int | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> None:
        """``send`` for many messages (decisions, state changelog entries): one call each,
        no extras on the fast path (no headers)."""
        if headers is not None:
            for value, key, hdrs in zip(values, keys, headers, strict=True):
                self.send(topic, value, key, hdrs, on_delivery, partition)  # type: ignore[arg-type]
            return
        produce = self._p.produce
        where: dict[str, Any] = {} if partition is None else {"partition": partition}
        for value, key in zip(values, keys, strict=True):
            try:
                produce(topic, value, key, on_delivery=on_delivery, **where)
            except BufferError:  # full: the slow path waits for room, or fails clearly
                self.send(topic, value, key, (), on_delivery, partition)  # type: ignore[arg-type]
            except KafkaException as exc:
                raise StreamError(
                    f"{topic} | send to {self._settings.describe()} failed: {_error_of(exc)}"
                ) from exc

    def poll(self, timeout_s: float) -> None:
        self._p.poll(timeout_s)

    def flush(self, timeout_s: float) -> None:
        left = self._p.flush(timeout_s)
        if left:
            raise StreamError(
                f"{self._settings.describe()} | flush: {left} messages still unacknowledged "
                f"after {timeout_s:g} s. Note: is the cluster reachable?"
            )

    def init_transactions(self) -> None:
        _guard(
            "init_transactions",
            self._settings,
            lambda: self._p.init_transactions(self._max_block_s + self._txn_timeout_s),
        )

    def begin_transaction(self) -> None:
        _guard("begin_transaction", self._settings, self._p.begin_transaction)

    def send_offsets_to_transaction(
        self, positions: Mapping[TopicPartition, int], group_metadata: object
    ) -> None:
        offsets = _positions(positions)
        _guard(
            "send_offsets_to_transaction",
            self._settings,
            lambda: self._p.send_offsets_to_transaction(
                offsets, group_metadata, self._txn_timeout_s
            ),
        )

    def commit_transaction(self) -> None:
        _guard(
            "commit_transaction",
            self._settings,
            lambda: self._p.commit_transaction(self._txn_timeout_s),
        )

    def abort_transaction(self) -> None:
        _guard(
            "abort_transaction",
            self._settings,
            lambda: self._p.abort_transaction(self._txn_timeout_s),
        )

    def close(self, timeout_s: float) -> None:
        self._p.flush(timeout_s)


_COMPRESSION = {"none": "none", "gzip": "gzip", "lz4": "lz4", "zstd": "zstd"}


class ConfluentFactory:
    """``ClientFactory`` for confluent-kafka (librdkafka)."""

    def consumer(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        options: ConsumerOptions,
        on_revoke: RevokeHook,
        on_assign: Callable[[list[TopicPartition]], None],
    ) -> ConfluentConsumer:
        # librdkafka retries a refused login for ever: fail at once, explained
        check_login(settings, min(options.request_timeout_ms / 1000, LOGIN_CHECK_TIMEOUT_S))
        monitor = ConnectionMonitor(settings.describe())
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
            "reconnect.backoff.max.ms": _RECONNECT_BACKOFF_MAX_MS,
            "error_cb": monitor.on_error,
            "stats_cb": monitor.on_stats,
            "statistics.interval.ms": options.stats_interval_ms,
            "logger": monitor,
        }
        consumer = Consumer(conf)
        hooks = _RebalanceHooks(consumer, on_revoke, on_assign, settings)
        _check_reachable(
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
            consumer, settings, options.auto_offset_reset, monitor, one_topic=len(topics) == 1
        )

    def reader(self, settings: KafkaSettings, options: ReaderOptions) -> ConfluentReader:
        check_login(settings, min(options.request_timeout_ms / 1000, LOGIN_CHECK_TIMEOUT_S))
        conf: dict[str, Any] = {
            **settings.librdkafka_config(),
            # librdkafka wants a group id; a reader that only assigns never joins the group
            "group.id": f"{settings.client_id}-{options.client_id_suffix}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": options.fetch_max_wait_ms,
            "max.partition.fetch.bytes": options.max_partition_fetch_bytes,
            "socket.timeout.ms": options.request_timeout_ms,
            "logger": ConnectionMonitor(settings.describe()),
        }
        uncommitted = {**conf, "isolation.level": "read_uncommitted"}
        return ConfluentReader(Consumer(conf), Consumer(uncommitted), settings)

    def producer(self, settings: KafkaSettings, options: ProducerOptions) -> ConfluentProducer:
        check_login(settings, min(options.max_block_ms / 1000, LOGIN_CHECK_TIMEOUT_S))
        monitor = ConnectionMonitor(settings.describe())
        conf: dict[str, Any] = {
            **settings.librdkafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": options.linger_ms,
            "batch.size": options.batch_size,
            "compression.type": _COMPRESSION[options.compression],
            "message.max.bytes": options.max_request_size,
            "delivery.timeout.ms": options.delivery_timeout_ms,
            "request.timeout.ms": options.request_timeout_ms,
            "queue.buffering.max.messages": options.queue_max_messages,
            "reconnect.backoff.max.ms": _RECONNECT_BACKOFF_MAX_MS,
            "error_cb": monitor.on_error,
            "stats_cb": monitor.on_stats,
            "statistics.interval.ms": options.stats_interval_ms,
            "logger": monitor,
        }
        if options.transactional_id is not None:
            conf["transactional.id"] = options.transactional_id
            conf["transaction.timeout.ms"] = options.transaction_timeout_ms
            # librdkafka: a message may not outlive the transaction it belongs to
            conf["delivery.timeout.ms"] = min(
                options.delivery_timeout_ms, options.transaction_timeout_ms
            )
        producer = Producer(conf)
        _check_reachable(producer, "producer start", settings, options.max_block_ms / 1000, monitor)
        return ConfluentProducer(producer, settings, options, monitor)


class ConfluentReader:
    """``ReaderClient`` over a ``confluent_kafka.Consumer`` that never joins its group."""

    def __init__(self, consumer: Consumer, watermarks: Consumer, settings: KafkaSettings) -> None:
        self._c = consumer  # read_committed
        self._w = watermarks  # read_uncommitted: its high watermark is the end of every write
        self._settings = settings

    def offsets(self, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
        # A topic created a moment ago (a changelog made when a stream's input appeared) is
        # not in this client's metadata yet: librdkafka answers _UNKNOWN_PARTITION at once
        # and does not look it up. Ask for the topic's metadata and try again, until timeout.
        deadline = time.monotonic() + timeout_s
        while True:
            left = max(0.1, deadline - time.monotonic())
            try:
                low, high = self._w.get_watermark_offsets(CTP(*tp), timeout=left, cached=False)
                return int(low), int(high)
            except KafkaException as exc:
                code = getattr(_error_of(exc), "code", lambda: None)()
                if code not in _NOT_KNOWN_YET or time.monotonic() >= deadline:
                    raise StreamError(
                        f"{self._settings.describe()} | offsets of {tp[0]}[{tp[1]}] failed: "
                        f"{_error_of(exc)}"
                    ) from exc
            with contextlib.suppress(KafkaException):  # a failed look-up: the loop tries again
                self._w.list_topics(tp[0], timeout=left)
            time.sleep(_METADATA_RETRY_S)  # a retry's backoff

    def assign(self, tp: TopicPartition, offset: int) -> None:
        _guard(f"assign {tp[0]}[{tp[1]}]", self._settings,
               lambda: self._c.assign([CTP(*tp, offset)]))  # fmt: skip

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]:
        msgs: list[Any] = self._c.consume(max_records, timeout_s)
        now = time.monotonic_ns()
        groups: dict[TopicPartition, list[Any]] = {}
        for m in msgs:
            err = m.error()
            if err is None:
                groups.setdefault((m.topic(), m.partition()), []).append(m)
            elif err.code() != _EOF:
                raise StreamError(f"{self._settings.describe()} | reading failed: {err}")
        return _batches(groups, now)

    def position(self, tp: TopicPartition) -> int:
        (got,) = _guard(f"position of {tp[0]}[{tp[1]}]", self._settings,
                        lambda: self._c.position([CTP(*tp)]))  # fmt: skip
        return int(got.offset)

    def close(self) -> None:
        self._c.close()
        self._w.close()


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
                self._consumer.commit(offsets=_positions(positions), asynchronous=False)
            except KafkaException as exc:
                log.warning(
                    "commit on revocation of %s failed: %s", sorted(positions), _error_of(exc)
                )


def _batches(groups: dict[TopicPartition, list[Any]], now: int) -> list[RecordBatch]:
    """One RecordBatch per partition of messages grouped by ``(topic, partition)``."""
    return [
        RecordBatch(
            topic,
            partition,
            [m.offset() for m in group],
            [m.key() for m in group],
            [m.value() for m in group],
            [m.headers() for m in group],
            [m.timestamp()[1] for m in group],
            now,
        )
        for (topic, partition), group in groups.items()
    ]
