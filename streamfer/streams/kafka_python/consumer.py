"""The kafka-python group consumer: ``ConsumerClient`` over ``kafka.KafkaConsumer``, and
the rebalance listener that runs the source's hooks without stopping heartbeats."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from kafka import KafkaConsumer
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import KafkaError, UnknownTopicOrPartitionError
from kafka.structs import MemberState
from kafka.structs import TopicPartition as KTP

from streamfer.streams.client import (
    CommitDone,
    ConsumerOptions,
    OffsetReset,
    RevokeHook,
    TopicPartition,
)
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.kafka_python.common import (
    RECONNECT_BACKOFF_MAX_MS,
    connect,
    guard,
    offsets_of,
    to_batches,
)
from streamfer.streams.kafka_python.workarounds import summarise_library_logs, workaround
from streamfer.streams.records import RecordBatch
from streamfer.streams.settings import KafkaSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# How often the revocation listener yields to the client's event loop (heartbeats).
_REVOKE_YIELD_S = 0.05
_PROBE_EVERY_S = 1.0  # how often an idle consumer checks it still has a connection


class Listener(AsyncConsumerRebalanceListener):
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
                await self.consumer.commit_async(offsets_of(positions))
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
        listener: Listener | None = None,
    ) -> None:
        self._c = consumer
        self._listener = listener
        self._settings = settings
        self._reset = reset
        # True: the revocation hook runs off the event loop (see Listener), so a long
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
        batches = guard(
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
        return to_batches(batches, now)

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
        if any(not self._has_partitions(t) for t in self._c.subscription() or ()):
            self.monitor.unknown_topic()
        count = self._c.metrics().get("consumer-metrics", {}).get("connection-count", 0)
        if count > 0:
            self.monitor.ok()
        else:
            self.monitor.error("no connection to any broker", kind="no connection")

    def _has_partitions(self, topic: str) -> bool:
        """The topic is in the cluster's metadata. A topic being deleted may come back as
        an error instead of as absent (kafka-python 3 raises it from the metadata
        request): that is the same answer, not a fault of the stream. Any other error
        of the request (a timeout, a broker going away) answers nothing: it is reported,
        the topic is not called missing, and the connection check that follows says
        whether the cluster is out of reach."""
        try:
            return bool(self._c.partitions_for_topic(topic))
        except UnknownTopicOrPartitionError:
            return False
        except KafkaError as exc:
            self.monitor.error(f"metadata of {topic}: {exc!r}", kind=type(exc).__name__,
                               connection=False)  # fmt: skip
            return True

    def commit(self, positions: Mapping[TopicPartition, int], timeout_s: float) -> None:
        offsets = offsets_of(positions)
        guard(
            f"commit {sorted(positions.items())}",
            self._settings,
            lambda: self._c.commit(offsets, timeout_ms=int(timeout_s * 1000)),
        )
        self.monitor.ok()

    def commit_async(self, positions: Mapping[TopicPartition, int], done: CommitDone) -> None:
        def report(_offsets: object, response: object) -> None:  # from a later poll
            done(positions, str(response) if isinstance(response, Exception) else None)

        try:
            self._c.commit_async(offsets_of(positions), callback=report)
        except KafkaError as exc:  # e.g. no coordinator known: the next interval retries
            done(positions, str(exc))

    def committed(self, tp: TopicPartition, timeout_s: float) -> int | None:
        result: int | None = guard(
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


def open_consumer(
    settings: KafkaSettings,
    topics: Sequence[str],
    options: ConsumerOptions,
    on_revoke: RevokeHook,
    on_assign: Callable[[list[TopicPartition]], None],
) -> KafkaPythonConsumer:
    summarise_library_logs()
    listener = Listener(on_revoke, on_assign)

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
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            max_poll_interval_ms=options.max_poll_interval_ms,
            request_timeout_ms=options.request_timeout_ms,
            bootstrap_timeout_ms=options.request_timeout_ms,
            # as librdkafka's consumer: a subscription never creates its topic (the
            # broker would give it its default partition count); the stream waits
            # for a missing input topic instead (streamfer.pipeline.inputs)
            allow_auto_create_topics=False,
        )

    consumer = connect(
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
    guard("metadata fetch", settings, consumer.topics)
    return KafkaPythonConsumer(
        consumer,
        settings,
        options.auto_offset_reset,
        heartbeats_during_revoke=listener.loop_sleep() is not None,
        monitor=ConnectionMonitor(settings.describe()),
        listener=listener,
    )
