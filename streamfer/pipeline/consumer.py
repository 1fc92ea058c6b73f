"""The consumer thread of one stream: Source.poll -> prepare -> state view -> engine queue.

:class:`ConsumerLoop` owns the :class:`~streams.source.KafkaSource` (Kafka consumers
are single-threaded). Each poll gives a :class:`~streams.records.RecordBatch` per
partition; the processor prepares it (decode, validate, features; in consume order;
``pipeline.isolation``: a batch that raises is prepared record by record and only
the failing records are dead-lettered), with the partition's state view where the
stream keeps state (restored on this thread before the partition's first batch);
the outlet dead-letters what the processor rejected and the rest goes to the
engine's :class:`~pipeline.handoff.RowQueue`, never more than it has room for.

Backpressure by not fetching rather than by pausing partitions: while the queue is
full the loop does not poll; the client stops prefetching on its own once its
bounded queue is full (librdkafka's ``queued.max.messages.kbytes``), lag grows and
memory does not, and no pause/resume cycle restarts the fetcher. Commits (through
the source's committer), lag, the cluster's reachability (``pipeline.readiness``)
and the input topic (``pipeline.inputs``: waiting for it, losing it) are kept up
meanwhile.

On stop it drains (pauses, puts STOP behind what is queued, waits for the engine
thread, flushes the sink, commits and closes), or with ``stop_now`` set abandons
what is queued and commits only what is resolved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from streamfer.errors import StreamError, StreamferError
from streamfer.pipeline.config import PipelineConfig, StreamConfig
from streamfer.pipeline.handoff import STOP, RowQueue, hand_over
from streamfer.pipeline.health import HealthState
from streamfer.pipeline.inputs import InputTopic
from streamfer.pipeline.isolation import prepare_isolated
from streamfer.pipeline.metrics import StreamRecorder
from streamfer.pipeline.outlet import Outlet
from streamfer.pipeline.processors import Prepared, Processor
from streamfer.pipeline.processors.checks import PreparedCheck
from streamfer.pipeline.readiness import BrokerWatch, LagReporter, PartitionsSettled, safe_lag
from streamfer.pipeline.topics import ensure_output_topics, message_limits
from streamfer.pipeline.worker import EngineWorker
from streamfer.streams.admin import topic_partitions
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.records import RecordBatch
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource
from streamfer.streams.state import StateManager
from streamfer.threadnames import name_this_thread

log = logging.getLogger(__name__)

_POLL_S = 0.05
_LAG_EVERY_S = 0.5
# the consumer said "unknown topic" this recently: is the topic deleted? (asked 1, 2, 4 ...
# s after; librdkafka may report it once, while the deletion is still spreading)
_SUSPECT_FOR_S = 60.0


def _wall_ms() -> int:
    """Now, on the clock of record timestamps (ms since the epoch)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Preparing:
    """How a polled batch is made ready for the engine."""

    processor: Processor
    check: PreparedCheck | None
    error_reason: str  # of an exception escaping the processor
    state: StateManager[Any] | None


@dataclass(frozen=True)
class Watching:
    """What the consumer thread keeps up besides polling."""

    health: HealthState
    lag: LagReporter
    broker: BrokerWatch
    settled: PartitionsSettled
    input: InputTopic


class ConsumerLoop:
    """The consumer thread's target; ``stop`` ends it, draining unless ``stop_now`` is set."""

    def __init__(
        self,
        config: PipelineConfig,
        stream: StreamConfig,
        *,
        source: KafkaSource,
        sink: KafkaSink,
        preparing: Preparing,
        inbox: RowQueue,
        worker: EngineWorker,
        engine: threading.Thread,
        outlet: Outlet,
        recorder: StreamRecorder,
        watching: Watching,
        stop: threading.Event,
        stop_now: threading.Event,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.config, self.stream, self.name = config, stream, stream.name
        self.source, self.sink = source, sink
        self.preparing, self.inbox, self.worker, self.engine = preparing, inbox, worker, engine
        self.outlet, self.recorder = outlet, recorder
        self.watching, self.on_fatal = watching, on_fatal
        self.stop = stop
        self.stop_now = stop_now  # with stop: abandon what is queued, do not drain
        self._idle_logged = False

    def engine_alive(self) -> bool:
        return self.engine.is_alive()

    def run(self, started: threading.Event, errors: list[BaseException]) -> None:
        name_this_thread()
        source = self.source
        try:  # an unreachable cluster fails the start here, as the consumer's start would
            if self.watching.input.present():
                self._begin(source)
        except BaseException as exc:
            errors.append(exc)
            self._abandon()
            started.set()
            return
        started.set()
        hb = self.watching.health.heartbeat(f"consumer-{self.name}", max_age_s=60)
        try:
            self._consume_loop(source, hb.beat)
            self._finish(source)
        except BaseException as exc:
            log.exception("%s | consumer failed", self.name)
            self.on_fatal(exc)
            self._abandon()
            self._close_source(source, wait_s=0)
        finally:
            hb.close()

    def _consume_loop(self, source: KafkaSource, beat: Callable[[], None]) -> None:
        """Poll while the engine's queue has room; while it has none, do not poll."""
        inbox, worker, state = self.inbox, self.worker, self.preparing.state
        watching = self.watching
        max_poll = self.config.consumer.max_poll_records
        least = max(1, min(max_poll, inbox.max_rows) // 4)  # worth a poll
        next_lag = 0.0
        while not self.stop.is_set():
            beat()
            if not source.started:  # the input topic is missing
                self._wait_for_input(source)
                watching.broker.watch(source)
                continue
            room = inbox.max_rows - inbox.rows
            if room < least:
                inbox.wait_room(least, _POLL_S)
                source.commit_if_due()
            else:
                before = source.assigned
                batches = source.poll(_POLL_S, min(max_poll, room))
                if state is not None:  # partitions assigned in that poll: restore now
                    self._restore_pending(state, bool(source.assigned - before))
                for batch in batches:
                    self._hand_over(batch)
            self.recorder.set_queue_depth(inbox.rows + worker.queued)
            if time.monotonic() >= next_lag:
                next_lag = time.monotonic() + _LAG_EVERY_S
                watching.lag.update(
                    safe_lag(self.name, source), source.assigned, source.lag_seconds(_wall_ms())
                )
                watching.broker.watch(source)
                self._note_idle(source)
                if self._input_deleted(source):
                    self._lost_input(source)

    def _restore_pending(self, state: StateManager[Any], assigned_now: bool) -> None:
        """Restore what is pending; not ready meanwhile where partitions were just assigned
        (the flag is not touched on every poll: a probe could catch it)."""
        if not assigned_now:
            state.restore_pending()  # e.g. after a rewind; usually nothing
            return
        restoring = self.watching.settled.restoring
        restoring.set()
        try:
            state.restore_pending()
        finally:
            restoring.clear()

    # -- one polled batch ----------------------------------------------------------------
    def _hand_over(self, batch: RecordBatch) -> None:
        n = len(batch)
        self.recorder.consumed(n)
        processor, check, reason, state = (
            self.preparing.processor, self.preparing.check, self.preparing.error_reason,
            self.preparing.state,
        )  # fmt: skip
        start = time.perf_counter_ns()
        prepare = None
        view = None
        if state is not None:  # the view first: a partition not restored yet is restored now
            view = state.view(batch.partition)
            prepare = partial(processor.prepare_with_state, state=view)  # type: ignore[attr-defined]
        parts = prepare_isolated(processor, batch, reason, check, prepare=prepare)
        if state is not None and view is not None:
            state.write(batch, view)  # before any row of the batch can resolve
        took_ns = time.perf_counter_ns() - start
        self._settle(parts[0])
        for prepared in parts:  # one, unless isolating a failed batch left rows apart
            prepared.prepare_ns = took_ns
            self.outlet.rejects(prepared)
            if not len(prepared):
                continue
            prepared.ready_ns = time.monotonic_ns()
            if not self._put(prepared, len(prepared)):
                raise StreamError(f"{self.name} | engine worker stopped")

    def _settle(self, prepared: Prepared) -> None:
        """Rows that ended in ``prepare``: absorbed into state, or dropped (e.g. late)."""
        batch = prepared.batch
        if prepared.absorbed is not None and len(prepared.absorbed) and batch.span is not None:
            self.outlet.absorbed(batch, prepared.absorbed)
        for reason, rows in (prepared.dropped or {}).items():
            if len(rows):
                self.outlet.dropped(batch, rows, reason)

    def _put(self, item: Any, rows: int, deadline: float = float("inf")) -> bool:
        return hand_over(self.inbox, item, rows, self.engine_alive, deadline)

    # -- the input topic: waiting for it, losing it; idle --------------------------------
    def _wait_for_input(self, source: KafkaSource) -> None:
        """One step of waiting for the missing input topic; start consuming once it is
        there (after creating this stream's output topics, sized like it)."""
        try:
            appeared = self.watching.input.wait(self.stop)
        except StreamError as exc:  # the cluster out of reach: readiness says so already
            log.debug("%s | input topic check failed: %s", self.name, exc)
            return
        if appeared:
            self._begin(source)

    def _begin(self, source: KafkaSource) -> None:
        """The input topic exists: create this stream's output topics sized like it (the
        pipeline's own check leaves a stream out whose input was missing then, and the
        input may have appeared since, a producer being quicker than the start), then
        start consuming."""
        ensure_output_topics(self.config, streams=[self.name])
        limit = message_limits(self.config).get(self.stream.resolved_dlq_topic)
        letters = self.outlet.dead_letters
        if limit is not None and limit < letters.max_message_bytes:
            letters.max_message_bytes = limit  # a topic created just now (see topics.py)
        source.start()

    def _lost_input(self, source: KafkaSource) -> None:
        """The input topic was deleted: close the consumer without committing (it would
        find the topic again only at its next metadata refresh, minutes later) and wait
        for it. Records of the deleted topic still in the engine resolve nowhere."""
        try:
            source.close(discard=True)
        except StreamferError as exc:
            log.warning("%s | closing the consumer: %s", self.name, exc)
        self.watching.lag.update({}, ())
        self.watching.input.lost()  # not ready from here on: the old consumer is gone already

    def _input_deleted(self, source: KafkaSource) -> bool:
        monitor = source.monitor
        suspect = isinstance(monitor, ConnectionMonitor) and monitor.unknown_topic_within(
            _SUSPECT_FOR_S
        )
        try:
            return self.watching.input.deleted(bool(source.assigned), suspect)
        except StreamError as exc:
            log.debug("%s | input topic check failed: %s", self.name, exc)
            return False

    def _note_idle(self, source: KafkaSource) -> None:
        """One log line when this member is left without partitions (ready, idle)."""
        idle = source.joined and not source.assigned
        if idle and not self._idle_logged:
            log.info("%s | no partitions assigned: idle (%s)", self.name, self._why_idle())
        self._idle_logged = idle

    def _why_idle(self) -> str:
        topic = self.stream.input_topic
        try:
            kafka = self.config.kafka
            settings = kafka.to_settings()
            known = topic_partitions(settings, [topic], timeout_s=2.0, client=kafka.client)
        except StreamferError:
            known = {}
        n = known.get(topic)
        if n is None:
            return f"{topic}: partition count not known"
        if n == 0:
            return f"{topic} has no partitions"
        return (
            f"the group {self.config.consumer.group_id} has more members than {topic} "
            f"has partitions ({n})"
        )

    # -- stopping ------------------------------------------------------------------------
    def _finish(self, source: KafkaSource) -> None:
        """Stop asked: drain (finish, publish, commit) or just commit what is resolved."""
        if self.stop_now.is_set():
            self._abandon()
            self._close_source(source, wait_s=0)
            return
        if source.started:
            source.pause()
        deadline = time.monotonic() + self.config.runtime.drain_timeout_s
        if not self._put(STOP, 0, deadline):  # an engine that died behind a full queue
            log.error("%s | engine did not take STOP; abandoning", self.name)
            self._abandon()
            self._close_source(source, wait_s=0)
            return
        self.engine.join(max(0.0, deadline - time.monotonic()))
        try:
            self.sink.flush(max(0.1, deadline - time.monotonic()))
        except StreamError as exc:
            log.warning("%s | drain: %s", self.name, exc)
        self._close_source(source, wait_s=max(0.1, deadline - time.monotonic()))

    def _abandon(self) -> None:
        self.worker.abandon()
        self.inbox.put_nowait(STOP)

    def _close_source(self, source: KafkaSource, wait_s: float) -> None:
        try:
            source.close(timeout_s=wait_s)
        except StreamferError as exc:
            log.warning("%s | closing the consumer: %s", self.name, exc)
        finally:
            if self.preparing.state is not None:  # what the revocations at close left open
                self.preparing.state.close()
