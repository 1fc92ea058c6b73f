"""The kafka-python (3.x) implementation of the ``streamfer.streams.client`` Protocols.

Four workarounds for kafka-python 3.0.x behaviour apply only to the versions
they were written for (``workaround(name)``: 3.0.x, said once in the log when
active); tests/streams/test_kafka_python_workarounds.py reproduces each
behaviour on the installed version and fails once the library no longer has it:

* ``parked-records``: a partition resumed after a pause never gets the records
  fetched for it before the pause (``_unstick_parked_records``, private fields);
* ``listener-sleep``: a rebalance listener has no public way to wait without
  blocking the client's event loop, heartbeats included (``_Listener.loop_sleep``,
  a private field);
* ``producer-idempotence``: a non-transactional idempotent producer turns any
  batch the broker refuses for good (a record too large, a keyless record on a
  compacted topic, no write permission) into a fatal state that fails every
  later send; such producers run without idempotence instead, one request in
  flight per connection so order holds (a retried batch may be written twice,
  which at-least-once allows);
* ``no-auto-create``: a consumer's ``allow_auto_create_topics=False`` never reaches
  its metadata requests, so a consumer would create its missing (or just deleted)
  input topic with the broker's default partition count; the flag is set on the
  consumer's cluster metadata (a private field).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import kafka
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from kafka.structs import MemberState, OffsetAndMetadata
from kafka.structs import TopicPartition as KTP

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
from streamfer.streams.connection import ConnectionMonitor, LibraryNoise
from streamfer.streams.records import RecordBatch
from streamfer.streams.security import LOGIN_CHECK_TIMEOUT_S, check_login
from streamfer.streams.settings import KafkaSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

WORKAROUNDS_FOR = (3, 0)  # the kafka-python release line the workarounds were written for
_WHY = {
    "parked-records": "records parked for a paused partition are handed back on resume",
    "listener-sleep": "the revocation hook waits off the event loop (heartbeats go on)",
    "no-auto-create": "consumers do not create the topics they subscribe to",
    "producer-idempotence": "non-transactional producers run without idempotence, one "
    "request in flight per connection (a refused batch would fail every later send)",
}
_said: set[str] = set()


_NOISE = LibraryNoise()


def summarise_library_logs() -> None:
    """Put the repeat summary (``LibraryNoise``) on every kafka-python logger there is.

    A filter on a logger sees only that logger's own lines, not its children's, so
    each gets it; the factory calls this again when it makes a client, for loggers of
    modules imported meanwhile.
    """
    for name, logger in list(logging.root.manager.loggerDict.items()):
        ours = name == "kafka" or name.startswith("kafka.")
        if ours and isinstance(logger, logging.Logger) and _NOISE not in logger.filters:
            logger.addFilter(_NOISE)


def installed_version() -> tuple[int, ...]:
    """The installed kafka-python's version, e.g. (3, 0, 12)."""
    return tuple(int(n) for n in re.findall(r"\d+", kafka.__version__)[:3])


def workaround(name: str) -> bool:
    """Whether workaround ``name`` (module doc) applies to the installed kafka-python;
    the first time it does, one INFO line says so."""
    active = installed_version()[:2] == WORKAROUNDS_FOR
    if active and name not in _said:
        _said.add(name)
        log.info("kafka-python %s: workaround %s active: %s", kafka.__version__, name, _WHY[name])
    return active

# How often the revocation listener yields to the client's event loop (heartbeats).
_REVOKE_YIELD_S = 0.05
_PROBE_EVERY_S = 1.0  # how often an idle consumer checks it still has a connection
# kafka-python backs off reconnecting up to 30 s, so a broker back after an outage was
# found up to 30 s late; the Java client waits at most 1 s, librdkafka 10 s
_RECONNECT_BACKOFF_MAX_MS = 1000


def _guard(what: str, settings: KafkaSettings, call: Callable[[], T]) -> T:
    """Run a client call; library errors become StreamError naming the broker."""
    try:
        return call()
    except KafkaError as exc:
        raise StreamError(f"{settings.describe()} | {what} failed: {exc!r}") from exc


def _connect(what: str, settings: KafkaSettings, timeout_ms: int, call: Callable[[], T]) -> T:
    """Create a client; a broker that never answers gets a message saying so."""
    # a refused TLS/SASL login fails here, explained; kafka-python would retry it until
    # timeout_ms and then report only "Unable to bootstrap"
    check_login(settings, timeout_s=min(timeout_ms / 1000, LOGIN_CHECK_TIMEOUT_S))
    try:
        return call()
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        raise StreamError(
            f"{settings.describe()} | {what}: no broker answered within {timeout_ms / 1000:g} s "
            f"({exc}). Note: start one with `streamfer broker start` or point "
            f"{BOOTSTRAP_ENV} / --bootstrap at a running cluster"
        ) from exc
    except KafkaError as exc:
        raise StreamError(f"{settings.describe()} | {what} failed: {exc!r}") from exc


def _offsets(positions: Mapping[TopicPartition, int]) -> dict[KTP, OffsetAndMetadata]:
    return {KTP(t, p): OffsetAndMetadata(pos, "", -1) for (t, p), pos in positions.items()}


class _Listener(AsyncConsumerRebalanceListener):
    """Runs on the consumer's I/O thread while the owner thread is inside poll().

    That thread's event loop also sends the group heartbeats, so the revocation hook
    (which may wait for in-flight records and commit a transaction, for up to the
    source's ``revoke_timeout_s``) runs on a helper thread while the listener awaits
    it in short sleeps that yield to the loop: heartbeats keep flowing and the session
    does not expire however long the drain takes. Where the client does not offer that
    sleep, the hook runs inline and ``KafkaSource`` caps its wait at half the session
    timeout (``KafkaPythonConsumer.heartbeats_during_revoke``).
    """

    def __init__(self, on_revoke: RevokeHook, on_assign: Callable[[list[TopicPartition]], None]):
        self._on_revoke = on_revoke
        self._on_assign = on_assign
        self.consumer: KafkaConsumer | None = None
        self.heard = False  # an assignment was reported (see KafkaPythonConsumer.poll)

    def loop_sleep(self) -> Callable[[float], Any] | None:
        """The client event loop's ``sleep`` awaitable factory (kafka-python 3.0 internals;
        workaround ``listener-sleep``), or None where it does not apply."""
        if not workaround("listener-sleep"):
            return None
        sleep = getattr(getattr(self.consumer, "_net", None), "sleep", None)
        return sleep if callable(sleep) else None

    async def _off_loop(self, call: Callable[[], T]) -> T:
        """Run ``call`` on a helper thread, yielding to the event loop until it is done."""
        sleep = self.loop_sleep()
        if sleep is None:
            return call()
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # re-raised on the loop below
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name="streamfer-revoke", daemon=True).start()
        while not done.is_set():
            await sleep(_REVOKE_YIELD_S)
        if "error" in box:
            raise box["error"]
        value: T = box["value"]
        return value

    async def _revoke(self, revoked: Collection[KTP], lost: bool) -> None:
        tps = [(tp.topic, tp.partition) for tp in revoked]
        positions = await self._off_loop(partial(self._on_revoke, tps, lost))
        if positions and self.consumer is not None and not lost:
            try:  # awaited here so the commit lands before the rebalance completes
                await self.consumer.commit_async(_offsets(positions))
            except KafkaError as exc:
                log.warning("commit on revocation of %s failed: %r", sorted(positions), exc)

    async def on_partitions_revoked(self, revoked: Collection[KTP]) -> None:
        await self._revoke(revoked, lost=False)

    async def on_partitions_lost(self, lost: Collection[KTP]) -> None:  # type: ignore[override]
        await self._revoke(lost, lost=True)

    async def on_partitions_assigned(self, assigned: Collection[KTP]) -> None:
        self.heard = True
        self._on_assign([(tp.topic, tp.partition) for tp in assigned])

    def report_empty_join(self, consumer: KafkaConsumer) -> None:
        """Under cooperative rebalancing kafka-python calls ``on_partitions_assigned`` only
        with partitions added, so a member that joins with none would never hear that it
        joined: tell it once, with none, when its group membership is first stable."""
        if self.heard:
            return
        if getattr(consumer.group_metadata(), "state", None) is MemberState.STABLE:
            self.heard = True
            self._on_assign([])


class KafkaPythonConsumer:
    """``ConsumerClient`` over ``kafka.KafkaConsumer`` (cooperative sticky, manual commit)."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        settings: KafkaSettings,
        reset: OffsetReset,
        heartbeats_during_revoke: bool = False,
        monitor: ConnectionMonitor | None = None,
        listener: _Listener | None = None,
    ) -> None:
        self._c = consumer
        self._listener = listener
        self._settings = settings
        self._reset = reset
        # True: the revocation hook runs off the event loop (see _Listener), so a long
        # wait in it does not stop heartbeats
        self.heartbeats_during_revoke = heartbeats_during_revoke
        self.monitor = monitor or ConnectionMonitor(settings.describe())
        self._next_probe = 0.0
        self._unstick = workaround("parked-records")

    def _unstick_parked_records(self) -> None:
        """Work around a kafka-python 3.0 fetcher bug (resume after pause stalls;
        workaround ``parked-records``).

        Records parked for a paused partition are restored only while the fetcher's
        in-line slot is None, but a drained slot stays a falsy object instead of None,
        so a resumed partition with parked records is never fetched again.
        """
        if not self._unstick:
            return
        fetcher = getattr(self._c, "_fetcher", None)
        if fetcher is None or not getattr(fetcher, "_paused_partition_records", None):
            return
        current = getattr(fetcher, "_next_partition_records", None)
        if current is not None and not current:
            fetcher._next_partition_records = None

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]:
        self._unstick_parked_records()
        batches = _guard(
            "poll",
            self._settings,
            lambda: self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records),
        )
        if self._listener is not None:
            self._listener.report_empty_join(self._c)
        if not batches:
            self._probe()
            return []
        now = time.monotonic_ns()
        self.monitor.ok()
        return _batches(batches, now)

    def _probe(self) -> None:
        """An idle consumer proves the cluster is there by having a connection to it
        (the public ``metrics()``: kafka-python has no liveness callback), and tells
        whether a subscribed topic left its metadata (deleted: the group may stay
        mid-rebalance with the partitions still assigned). A topic in the cached metadata
        costs no request; one that is not there costs one."""
        now = time.monotonic()
        if now < self._next_probe:
            return
        self._next_probe = now + _PROBE_EVERY_S
        if any(not self._c.partitions_for_topic(t) for t in self._c.subscription() or ()):
            self.monitor.unknown_topic()
        count = self._c.metrics().get("consumer-metrics", {}).get("connection-count", 0)
        if count > 0:
            self.monitor.ok()
        else:
            self.monitor.error("no connection to any broker", kind="no connection")

    def commit(self, positions: Mapping[TopicPartition, int], timeout_s: float) -> None:
        offsets = _offsets(positions)
        _guard(
            f"commit {sorted(positions.items())}",
            self._settings,
            lambda: self._c.commit(offsets, timeout_ms=int(timeout_s * 1000)),
        )
        self.monitor.ok()

    def committed(self, tp: TopicPartition, timeout_s: float) -> int | None:
        result: int | None = _guard(
            f"committed offset of {tp[0]}[{tp[1]}]",
            self._settings,
            lambda: self._c.committed(KTP(*tp), timeout_ms=int(timeout_s * 1000)),
        )
        return result

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._c.seek(KTP(*tp), offset)

    def rewind(self, tps: Collection[TopicPartition], timeout_s: float) -> None:
        unset = []
        for tp in tps:
            offset = self.committed(tp, timeout_s)
            if offset is None:
                unset.append(KTP(*tp))
            else:
                self._c.seek(KTP(*tp), offset)
        if unset and self._reset == "earliest":
            self._c.seek_to_beginning(*unset)
        elif unset:
            self._c.seek_to_end(*unset)

    def pause(self, tps: Collection[TopicPartition]) -> None:
        self._c.pause(*(KTP(*tp) for tp in tps))

    def resume(self, tps: Collection[TopicPartition]) -> None:
        self._c.resume(*(KTP(*tp) for tp in tps))

    def paused(self) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in self._c.paused()}

    def assignment(self) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in self._c.assignment()}

    def lag(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in self._c.assignment():
            try:
                high = self._c.highwater(tp)
                pos = self._c.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if high is not None and pos is not None:
                out[(tp.topic, tp.partition)] = max(high - pos, 0)
        return out

    def group_metadata(self) -> object:
        return self._c.group_metadata()

    def close(self) -> None:
        self._c.close(autocommit=False)


class KafkaPythonProducer:
    """``ProducerClient`` over ``kafka.KafkaProducer`` (thread-safe send; delivery callbacks
    run on the client's own I/O thread, so nothing needs to poll)."""

    needs_polling = False

    def __init__(
        self, producer: KafkaProducer, settings: KafkaSettings, monitor: ConnectionMonitor
    ) -> None:
        self._p = producer
        self._settings = settings
        self.monitor = monitor

    def _on_ok(self, cb: DeliveryCallback, md: Any) -> None:
        self.monitor.ok()
        cb(None, md)

    def _on_err(self, cb: DeliveryCallback, exc: Exception) -> None:
        cb(exc, None)

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        on_delivery: DeliveryCallback | None,
        partition: int | None = None,
    ) -> None:
        try:
            fut = self._p.send(
                topic, value=value, key=key, headers=list(headers), partition=partition
            )
        except KafkaError as exc:
            raise StreamError(
                f"{topic} | send to {self._settings.describe()} failed: {exc!r}"
            ) from exc
        if on_delivery is not None:
            fut.add_callback(self._on_ok, on_delivery)
            fut.add_errback(self._on_err, on_delivery)

    def send_many(
        self,
        topic: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None],
        on_delivery: DeliveryCallback,
        partition: int | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> None:
        every = headers if headers is not None else [()] * len(values)
        for value, key, hdrs in zip(values, keys, every, strict=True):
            self.send(topic, value, key, hdrs, on_delivery, partition)  # type: ignore[arg-type]

    def poll(self, timeout_s: float) -> None:
        """Nothing to serve: callbacks run on the client's I/O thread."""

    def flush(self, timeout_s: float) -> None:
        _guard("flush", self._settings, lambda: self._p.flush(timeout=timeout_s))

    def init_transactions(self) -> None:
        _guard("init_transactions", self._settings, self._p.init_transactions)

    def begin_transaction(self) -> None:
        _guard("begin_transaction", self._settings, self._p.begin_transaction)

    def send_offsets_to_transaction(
        self, positions: Mapping[TopicPartition, int], group_metadata: object
    ) -> None:
        offsets = _offsets(positions)
        _guard(
            "send_offsets_to_transaction",
            self._settings,
            lambda: self._p.send_offsets_to_transaction(offsets, group_metadata),
        )

    def commit_transaction(self) -> None:
        _guard("commit_transaction", self._settings, self._p.commit_transaction)

    def abort_transaction(self) -> None:
        _guard("abort_transaction", self._settings, self._p.abort_transaction)

    def close(self, timeout_s: float) -> None:
        self._p.close(timeout=timeout_s)


class KafkaPythonReader:
    """``ReaderClient`` over a ``kafka.KafkaConsumer`` without a group (assign only)."""

    def __init__(
        self, consumer: KafkaConsumer, watermarks: KafkaConsumer, settings: KafkaSettings
    ) -> None:
        self._c = consumer  # read_committed
        self._w = watermarks  # read_uncommitted: its end offset is the end of every write
        self._settings = settings

    def offsets(self, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
        ktp, timeout_ms = KTP(*tp), int(timeout_s * 1000)
        first = _guard("beginning offsets", self._settings,
                       lambda: self._w.beginning_offsets([ktp], timeout_ms=timeout_ms))
        end = _guard("end offsets", self._settings,
                     lambda: self._w.end_offsets([ktp], timeout_ms=timeout_ms))  # fmt: skip
        return int(first[ktp]), int(end[ktp])

    def assign(self, tp: TopicPartition, offset: int) -> None:
        ktp = KTP(*tp)
        self._c.assign([ktp])
        self._c.seek(ktp, offset)

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]:
        got = _guard(
            "poll",
            self._settings,
            lambda: self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records),
        )
        now = time.monotonic_ns()
        return _batches(got, now)

    def position(self, tp: TopicPartition) -> int:
        got = _guard("position", self._settings, lambda: self._c.position(KTP(*tp)))
        return int(got)

    def close(self) -> None:
        self._c.close(autocommit=False)
        self._w.close(autocommit=False)


_COMPRESSION = {"none": None, "gzip": "gzip", "lz4": "lz4", "zstd": "zstd"}


class KafkaPythonFactory:
    """``ClientFactory`` for kafka-python 3."""

    def consumer(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        options: ConsumerOptions,
        on_revoke: RevokeHook,
        on_assign: Callable[[list[TopicPartition]], None],
    ) -> KafkaPythonConsumer:
        summarise_library_logs()
        listener = _Listener(on_revoke, on_assign)

        def make() -> KafkaConsumer:
            return KafkaConsumer(
                **settings.consumer_kwargs(),
                group_id=options.group_id,
                enable_auto_commit=False,
                partition_assignment_strategy=(CooperativeStickyAssignor,),
                max_poll_records=options.max_poll_records,
                fetch_max_wait_ms=options.fetch_max_wait_ms,
                fetch_min_bytes=options.fetch_min_bytes,
                max_partition_fetch_bytes=options.max_partition_fetch_bytes,
                auto_offset_reset=options.auto_offset_reset,
                isolation_level=options.isolation_level,
                session_timeout_ms=options.session_timeout_ms,
                heartbeat_interval_ms=options.heartbeat_interval_ms,
                reconnect_backoff_max_ms=_RECONNECT_BACKOFF_MAX_MS,
                max_poll_interval_ms=options.max_poll_interval_ms,
                request_timeout_ms=options.request_timeout_ms,
                bootstrap_timeout_ms=options.request_timeout_ms,
                # as librdkafka's consumer: a subscription never creates its topic (the
                # broker would give it its default partition count); the stream waits
                # for a missing input topic instead (streamfer.pipeline.inputs)
                allow_auto_create_topics=False,
            )

        consumer = _connect(
            f"consumer for group {options.group_id!r}", settings, options.request_timeout_ms, make
        )
        listener.consumer = consumer
        if workaround("no-auto-create"):
            consumer._cluster.config["allow_auto_create_topics"] = False
        consumer.subscribe(list(topics), listener=listener)
        # Fetch metadata once after subscribing, before the first poll joins the group: the
        # coordinator then assigns with a known metadata snapshot. Without it kafka-python
        # 3.0.12 always rebalances a second time right after the first join, and that second
        # rebalance sometimes never completes (SyncGroup answered, member never active again;
        # commits fail with RebalanceInProgress for good).
        _guard("metadata fetch", settings, consumer.topics)
        return KafkaPythonConsumer(
            consumer,
            settings,
            options.auto_offset_reset,
            heartbeats_during_revoke=listener.loop_sleep() is not None,
            monitor=ConnectionMonitor(settings.describe()),
            listener=listener,
        )

    def reader(self, settings: KafkaSettings, options: ReaderOptions) -> KafkaPythonReader:
        def make(isolation_level: str = "read_committed") -> KafkaConsumer:
            consumer = KafkaConsumer(
                **settings.consumer_kwargs(),
                group_id=None,
                enable_auto_commit=False,
                isolation_level=isolation_level,
                max_poll_records=options.max_poll_records,
                fetch_max_wait_ms=options.fetch_max_wait_ms,
                max_partition_fetch_bytes=options.max_partition_fetch_bytes,
                request_timeout_ms=options.request_timeout_ms,
                bootstrap_timeout_ms=options.request_timeout_ms,
                allow_auto_create_topics=False,  # asking a changelog's offsets never creates it
            )
            if workaround("no-auto-create"):
                consumer._cluster.config["allow_auto_create_topics"] = False
            return consumer

        reader = _connect("state reader", settings, options.request_timeout_ms, make)
        watermarks = _connect("state reader", settings, options.request_timeout_ms,
                              lambda: make("read_uncommitted"))  # fmt: skip
        return KafkaPythonReader(reader, watermarks, settings)

    def producer(self, settings: KafkaSettings, options: ProducerOptions) -> KafkaPythonProducer:
        summarise_library_logs()
        idempotence: dict[str, Any] = {"enable_idempotence": True}
        if options.transactional_id is None and workaround("producer-idempotence"):
            idempotence = {"enable_idempotence": False, "max_in_flight_requests_per_connection": 1}
        # kafka-python refuses a delivery timeout below linger + request timeout
        request_timeout_ms = min(
            options.request_timeout_ms, max(1, options.delivery_timeout_ms - options.linger_ms)
        )

        def make() -> KafkaProducer:
            return KafkaProducer(
                **settings.producer_kwargs(),
                **idempotence,
                acks="all",
                linger_ms=options.linger_ms,
                batch_size=options.batch_size,
                compression_type=_COMPRESSION[options.compression],
                max_request_size=options.max_request_size,
                delivery_timeout_ms=options.delivery_timeout_ms,
                request_timeout_ms=request_timeout_ms,
                max_block_ms=options.max_block_ms,
                bootstrap_timeout_ms=options.max_block_ms,
                transactional_id=options.transactional_id,
                transaction_timeout_ms=options.transaction_timeout_ms,
                reconnect_backoff_max_ms=_RECONNECT_BACKOFF_MAX_MS,
            )

        producer = _connect("producer start", settings, options.max_block_ms, make)
        return KafkaPythonProducer(producer, settings, ConnectionMonitor(settings.describe()))


def _batches(records: Mapping[Any, list[Any]], now: int) -> list[RecordBatch]:
    """One RecordBatch per partition of kafka-python's ``{TopicPartition: [records]}``."""
    return [
        RecordBatch(
            tp.topic,
            tp.partition,
            [m.offset for m in msgs],
            [m.key for m in msgs],
            [m.value for m in msgs],
            [m.headers for m in msgs],
            [m.timestamp for m in msgs],
            now,
        )
        for tp, msgs in records.items()
    ]
