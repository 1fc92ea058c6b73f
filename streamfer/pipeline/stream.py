"""One configured stream at run time: KafkaSource -> processor -> EngineWorker -> Outlet.

Two threads per stream, meeting at one bounded queue:

* the *consumer thread* owns the :class:`~streams.source.KafkaSource` (Kafka
  consumers are single-threaded): it polls a batch per partition, has the
  processor prepare it (decode, validate, features; in consume order),
  dead-letters what the processor rejects, and hands the rest to the engine's
  :class:`~pipeline.engine.RowQueue`, never more than it has room for. While
  the queue is full it does not poll (lag grows, memory does not: the client's
  prefetch is bounded), commits through the source's committer, exports lag,
  and watches the cluster's reachability for readiness. It starts the
  consumer only once the input topic exists, and closes it again if the
  topic is deleted (``pipeline.inputs``: waiting, not ready, said in the log
  and a gauge; the output topics are created once the input's partition
  count is known);
* the *engine thread* runs the :class:`~pipeline.engine.EngineWorker`
  (batcher, inference, results) and publishes through the
  :class:`~pipeline.outlet.Outlet`.

The Kafka client's own threads fetch and send; delivery reports resolve
records (the sink's delivery thread for librdkafka). A record's offset is
resolved only when its decision (or dead letter) is acknowledged, or when it
is dropped on purpose, so commits never pass a record whose outcome is not
final.

``delivery: exactly_once`` makes the sink transactional (id
``<client_id>-<stream>-<worker index>``, stable across restarts so a restarted
worker fences its predecessor) and the source commits offsets inside the
sink's transaction; decisions and dead letters share that transaction.

A new model version reaches the engine thread between two batches
(``EngineWorker.offer_swap``, ``streamfer.pipeline.reload``); a ``shadow`` model
scores the decided batches on a thread of its own (``streamfer.pipeline.shadow``).

``state.enabled`` (a :class:`~pipeline.processors.base.StatefulProcessor`)
adds a :class:`~streams.state.StateManager`: it hears the source's partition
events, restores an assigned partition on the consumer thread before its
first batch is prepared, hands the processor the partition's view, and after
``prepare`` holds the batch's span in its partition's window; before each
commit the windows' entries (one per updated key) go to the changelog through
the same sink (so through the same transaction), and the spans are released
when they are acknowledged: no commit passes a record whose state is not
durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from streamfer.engines.base import Runner
from streamfer.errors import StreamError, StreamferError
from streamfer.pipeline.config import PipelineConfig, StreamConfig
from streamfer.pipeline.decisions import DecisionEncoder, ModelIdentity
from streamfer.pipeline.engine import STOP, EngineWorker, InferFn, RowQueue, Swap
from streamfer.pipeline.health import HealthState
from streamfer.pipeline.inputs import InputTopic
from streamfer.pipeline.metrics import Metrics, StreamRecorder
from streamfer.pipeline.outlet import Outlet
from streamfer.pipeline.processors import (
    Prepared,
    Processor,
    engine_wiring,
    make_processor,
    processor_error,
)
from streamfer.pipeline.processors.base import NO_EVENT_TIME, Reject, StatefulProcessor
from streamfer.pipeline.processors.checks import PreparedCheck
from streamfer.pipeline.stats import StatsBook, StreamStats
from streamfer.pipeline.topics import ensure_output_topics, message_limits, within_limits
from streamfer.streams.acks import Resolver
from streamfer.streams.admin import topic_partitions
from streamfer.streams.client import ClientFactory, ReaderOptions
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.dlq import DeadLetterWriter
from streamfer.streams.factory import client_factory
from streamfer.streams.records import RecordBatch
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource, SourceOptions
from streamfer.streams.state import ChangelogWriter, StateCommitter, StateManager, StateOptions

if TYPE_CHECKING:
    from streamfer.pipeline.reload import Served
    from streamfer.pipeline.shadow import ShadowScorer

log = logging.getLogger(__name__)

_POLL_S = 0.05
_PUT_WAIT_S = 0.2  # a full queue: how often the consumer checks the engine is alive
_LAG_EVERY_S = 0.5
_INPUT_CHECK_TIMEOUT_S = 5.0  # one metadata request about the input topic
# the consumer said "unknown topic" this recently: is the topic deleted? (asked 1, 2, 4 ...
# s after; librdkafka may report it once, while the deletion is still spreading)
_SUSPECT_FOR_S = 60.0


def _wall_ms() -> int:
    """Now, on the clock of record timestamps (ms since the epoch)."""
    return time.time_ns() // 1_000_000


def hand_over(inbox: RowQueue, item: Any, rows: int, engine_alive: Callable[[], bool],
              deadline: float = float("inf")) -> bool:  # fmt: skip
    """Put ``item`` on the engine's queue; False if the engine died behind a full queue
    (or ``deadline``, monotonic seconds, passed): the consumer is told, never stuck."""
    while engine_alive() and time.monotonic() < deadline:
        if inbox.put(item, rows, _PUT_WAIT_S):
            return True
    return False


class LagReporter:
    """Exports consumer lag per assigned partition; a revoked partition's series goes away.

    Two gauges per partition, both computed here every ``_LAG_EVERY_S`` on the consumer
    thread and nowhere on the per-record path: records not yet consumed (``lags``, see
    :meth:`KafkaSource.lag`) and the age of the oldest record consumed but not yet
    resolved (``ages``, see :meth:`KafkaSource.lag_seconds`). With the count of
    partitions assigned (0: this member is idle).
    """

    def __init__(self, recorder: StreamRecorder, book: StatsBook) -> None:
        self.recorder = recorder
        self.book = book
        self._partitions: set[int] = set()  # partitions with an exported lag

    def update(
        self, lags: Mapping[tuple[str, int], int], assigned: Collection[tuple[str, int]],
        ages: Mapping[tuple[str, int], float] | None = None,
    ) -> None:  # fmt: skip
        for (_, partition), n in lags.items():
            self.recorder.set_lag(partition, n)
        for (_, partition), seconds in (ages or {}).items():
            self.recorder.set_lag_seconds(partition, seconds)
        self.recorder.set_partitions_assigned(len(assigned))
        self.book.set_lag(sum(lags.values()))
        self._partitions.update(p for _, p in lags)
        self._partitions.update(p for _, p in ages or {})
        gone = self._partitions - {p for _, p in assigned}
        for partition in gone:
            self.recorder.forget_partition(partition)
        self._partitions -= gone


def prepare_isolated(
    processor: Processor,
    batch: RecordBatch,
    reason: str,
    check: PreparedCheck | None = None,
    on_fault: Callable[[BaseException], None] = lambda error: None,
    prepare: Callable[[RecordBatch], Prepared] | None = None,
) -> list[Prepared]:
    """``[processor.prepare(batch)]`` (or ``prepare``, e.g. with the partition's state);
    if it raises, record by record to find the culprits.

    ``check`` (the processor contract) fails a ``Prepared`` like an exception would. A
    record whose own prepare raises becomes a Reject with ``reason`` (the exception's
    class and message in the dead letter); the rest are prepared alone and joined
    again, or handed over apart where their feeds do not stack (a processor that pads
    to the longest record of a batch). The rejects, absorbed and dropped rows ride on
    the first. (A stateful processor that raised midway may see the rows it had
    handled once more.) ``on_fault`` hears of a whole batch that failed.
    """
    prepare = prepare or processor.prepare
    name = f"{type(processor).__name__}.prepare"
    try:
        prepared = prepare(batch)
        if check is not None:
            check(batch, prepared)
        return [prepared]
    except Exception as exc:
        on_fault(exc)
        log.warning(
            "%s | %s of %d records failed (%s: %s); retrying record by record",
            batch.tp,
            name,
            len(batch),
            type(exc).__name__,
            exc,
        )
    parts: list[tuple[int, Prepared]] = []
    rejects: list[Reject] = []
    absorbed: list[int] = []
    dropped: dict[str, list[int]] = {}
    for i in range(len(batch)):
        one = RecordBatch.of([batch.record(i)])
        one.span = batch.span
        try:
            got = prepare(one)
            if check is not None:
                check(one, got)
        except Exception as exc:
            rejects.append(Reject(i, reason, processor_error(name, exc, batch.coords(i), reason)))
            continue
        rejects += [Reject(i, r.reason, r.error) for r in got.rejects]
        if len(got):
            parts.append((i, got))
        if got.absorbed is not None and len(got.absorbed):
            absorbed.append(i)
        for why, rows in (got.dropped or {}).items():
            if len(rows):
                dropped.setdefault(why, []).append(i)
    joined = _joined(batch, parts, rejects)
    joined[0].absorbed = np.asarray(absorbed, dtype=np.intp)
    joined[0].dropped = {why: np.asarray(rows, dtype=np.intp) for why, rows in dropped.items()}
    return joined


def _joined(
    batch: RecordBatch, parts: list[tuple[int, Prepared]], rejects: list[Reject]
) -> list[Prepared]:
    """The records prepared alone (``(row, Prepared)``) as rows of ``batch`` again."""
    if not parts:
        return [Prepared(batch, np.empty(0, dtype=np.intp), {}, rejects=rejects)]
    metas: list[Any] | None = None
    if any(p.metas is not None for _, p in parts):
        metas = [m for _, p in parts for m in (p.metas or [None] * len(p))]
    events = None
    if any(p.event_ns is not None for _, p in parts):
        events = np.concatenate([
            np.full(len(p), NO_EVENT_TIME, np.int64) if p.event_ns is None else p.event_ns
            for _, p in parts
        ])  # fmt: skip
    rows = np.asarray([i for i, p in parts for _ in range(len(p))], dtype=np.intp)
    try:
        feeds = {k: np.concatenate([p.feeds[k] for _, p in parts]) for k in parts[0][1].feeds}
    except ValueError:  # rows that differ along a dynamic axis: each goes alone
        apart = [
            Prepared(batch, np.full(len(p), i, dtype=np.intp), p.feeds, p.metas, p.event_ns)
            for i, p in parts
        ]
        apart[0].rejects = rejects
        return apart
    return [Prepared(batch, rows, feeds, metas, events, rejects)]


class StreamRuntime:
    """Threads and clients of one stream; ``start()`` connects, ``request_stop()`` ends it."""

    def __init__(
        self,
        config: PipelineConfig,
        stream: StreamConfig,
        runner: Runner,
        metrics: Metrics,
        health: HealthState,
        *,
        worker_index: int = 0,
        on_fatal: Callable[[str, BaseException], None] = lambda name, exc: None,
        processor: Processor | None = None,
        topic_limits: Mapping[str, int] | None = None,
        identity: ModelIdentity | None = None,
        shadow: Served | None = None,
    ) -> None:
        self.config = config
        self.shadow_model = shadow  # streamfer.pipeline.shadow
        self._shadow: ShadowScorer | None = None
        self.stream = stream
        self.runner = runner
        self.health = health
        self.worker_index = worker_index
        self.on_fatal = on_fatal
        # max.message.bytes of the output and dead-letter topics, where known
        self.topic_limits = dict(topic_limits or {})
        info = runner.info
        self.identity = identity or ModelIdentity.of(stream.model, runner)
        self._metrics = metrics
        self.recorder = metrics.stream(
            stream.name, model=stream.model, engine=info.kind, kind=stream.kind
        )
        metrics.engine_info(
            stream=stream.name,
            model=stream.model,
            engine=info.kind,
            precision=info.precision,
            device=info.device,
            version=self.identity.version,
        )
        self.book = self.recorder.book
        self.inbox = RowQueue(config.runtime.max_in_flight)
        self._processor = processor
        self._check: PreparedCheck | None = None
        self._builtin = processor is None and stream.plugin is None
        self._stop = threading.Event()
        self._drain = True
        self._threads: list[threading.Thread] = []
        self._source: KafkaSource | None = None
        self._sink: KafkaSink | None = None
        self._worker: EngineWorker | None = None
        self._state: StateManager[Any] | None = None
        self.lag = LagReporter(self.recorder, self.book)
        self._unreachable_since: float | None = None
        self._restoring = threading.Event()  # the consumer thread restores partition state
        self._idle_logged = False
        self.input = InputTopic(
            stream.name, stream.input_topic, self._input_partitions, health, self.recorder
        )

    # -- assembly ------------------------------------------------------------------------
    def start(self) -> None:
        s, cfg = self.stream, self.config
        factory = client_factory(cfg.kafka.client)
        settings = cfg.kafka.to_settings()
        # stable across restarts: a restarted worker fences its predecessor's open transaction
        txn_id = f"{cfg.kafka.client_id}-{s.name}-{self.worker_index}"
        exactly_once = s.delivery == "exactly_once"
        limits = self.topic_limits
        self._sink = KafkaSink(
            settings,
            within_limits(
                cfg.producer.options(s.knobs, transactional_id=txn_id if exactly_once else None),
                (limits.get(s.output_topic), limits.get(s.resolved_dlq_topic)),
            ),
            factory,
        ).start()
        self._source = KafkaSource(
            settings,
            [s.input_topic],
            cfg.consumer.options(
                s.knobs,
                isolation_level="read_committed" if exactly_once else "read_uncommitted"
            ),
            SourceOptions(
                # a safety net: the engine's queue bounds what waits for the engine; this
                # also bounds what waits for acknowledgements (a pause restarts
                # librdkafka's fetcher, so it should be rare)
                max_in_flight_per_partition=10 * max(
                    cfg.runtime.max_in_flight, cfg.consumer.max_poll_records
                ),
                commit_interval_s=s.knobs.commit_interval_ms / 1000,
                revoke_timeout_s=cfg.runtime.drain_timeout_s,
            ),
            factory,
        )
        if exactly_once:
            self._source.use_transactions(self._sink)
        processor = self._processor or make_processor(
            s, self.runner, cfg.runtime.preprocess_threads
        )
        self._processor = processor
        if s.state.enabled:
            self._state = self._state_manager(processor, settings, factory, self._source)
            self._source.membership.listen(self._state)
            # entries are written once per commit interval, just before the commit
            self._source.committer = StateCommitter(self._source.committer, self._state)
        infer, self._check = engine_wiring(processor, self.runner)
        outlet = Outlet(
            stream=s.name,
            output_topic=s.output_topic,
            sink=self._sink,
            dead_letters=DeadLetterWriter(
                self._sink,
                topic=s.resolved_dlq_topic,
                max_message_bytes=limits.get(s.resolved_dlq_topic),
            ),
            resolver=Resolver(self._source.tracker, self.recorder),
            encoder=DecisionEncoder(s.name, s.decision_kind, self.identity),
            recorder=self.recorder,
            on_fatal=self._fatal,
            on_dead_letter_failure=s.dead_letters.on_failure,
        )
        self.outlet = outlet
        if self.shadow_model is not None:
            self._shadow = self._shadow_scorer(processor, settings, factory)
        self._worker = EngineWorker(
            name=s.name,
            infer=infer,
            processor=processor,
            outlet=outlet,
            inbox=self.inbox,
            max_batch=s.batching.max_batch,
            max_wait_ms=s.knobs.batch_wait_ms,
            drop_stale=s.drops_stale,
            latest_per_key=s.latest_per_key,
            deadline_ms=s.deadline_ms,
            on_batch=self._on_batch,
            on_fallbacks=self.recorder.deadline_fallbacks,
            error_reason=self._error_reason,
            after_batch=self._shadow.offer if self._shadow is not None else None,
        )
        self.health.watch(self.ready_condition, self._can_serve)
        self.health.watch(self.broker_condition, self._broker_reachable)
        started = threading.Event()
        errors: list[BaseException] = []
        consumer = threading.Thread(
            target=self._consume, args=(started, errors), name=f"consume-{s.name}"
        )
        engine = threading.Thread(target=self._run_worker, name=f"engine-{s.name}", daemon=True)
        self._threads = [consumer, engine]
        engine.start()
        consumer.start()
        started.wait()
        if errors:
            raise errors[0]

    def _shadow_scorer(self, processor: Processor, settings: KafkaSettings,
                       factory: ClientFactory) -> ShadowScorer:  # fmt: skip
        from streamfer.pipeline.reload import check_compatible
        from streamfer.pipeline.shadow import ShadowScorer

        s, shadow, served = self.stream, self.stream.shadow, self.shadow_model
        assert shadow is not None and served is not None
        check_compatible(shadow.model, served.label, self.runner, served.runner)
        scorer = ShadowScorer(
            stream=s.name,
            infer=engine_wiring(processor, served.runner)[0],
            processor=processor,
            encoder=DecisionEncoder(s.name, s.decision_kind, served.identity),
            sink=KafkaSink(settings, self.config.producer.options(s.knobs), factory),
            topic=shadow.output_topic,
            sample=shadow.sample,
            max_backlog=shadow.max_backlog,
            recorder=self._metrics.shadow(s.name, shadow.model),
        )
        scorer.start()
        return scorer

    def _state_manager(
        self, processor: Processor, settings: KafkaSettings, factory: ClientFactory,
        source: KafkaSource,
    ) -> StateManager[Any]:  # fmt: skip
        s, cfg = self.stream, self.config
        if not isinstance(processor, StatefulProcessor):
            raise StreamError(
                f"{s.name} | state.enabled, but {type(processor).__name__} keeps no state. "
                "Note: a stateful processor has state_codec() and prepare_with_state()"
            )
        assert self._sink is not None
        group = cfg.consumer.group_id
        timeout_s = source.options.commit_timeout_s
        return StateManager(
            stream=s.name,
            input_topic=s.input_topic,
            codec=processor.state_codec(),
            options=StateOptions(
                dir=s.state.resolved_dir() / f"{group}.{s.name}" / f"w{self.worker_index}",
                ttl_s=s.state.ttl_s,
                cache_keys=s.state.cache_keys,
                restore_timeout_s=s.state.restore_timeout_s,
            ),
            writer=ChangelogWriter(self._sink, s.state_topic(group), source.tracker, self._fatal),
            reader=lambda: factory.reader(settings, ReaderOptions(f"{s.name}-state")),
            committed=lambda tp: source.client.committed(tp, timeout_s),
            listener=self.recorder,
        )

    @property
    def _error_reason(self) -> str:
        """The reason of an exception escaping the processor: ours, or a plug-in's."""
        return "internal_error" if self._builtin else "processor_error"

    def _fatal(self, exc: BaseException) -> None:
        self.on_fatal(self.stream.name, exc)

    def request_stop(self, drain: bool = True) -> None:
        self._drain = drain
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s + 5
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._shadow is not None:  # after the engine thread: nothing offers any more
            self._shadow.close()
        close = getattr(self._processor, "close", None)
        if callable(close):
            close()
        if self._sink is not None:
            self._sink.close()

    @property
    def engine_alive(self) -> bool:
        """The engine thread still runs (after ``join``: it is stuck in inference)."""
        return len(self._threads) > 1 and self._threads[1].is_alive()

    @property
    def ready_condition(self) -> str:
        """The readiness condition this stream sets: its partitions settled (see
        ``_can_serve``)."""
        return f"partitions:{self.stream.name}"

    def _can_serve(self) -> bool:
        """The group gave this member its assignment and no state restore is running.

        An empty assignment is ready (idle): in a group with more members than the
        input has partitions, the spare members stand by, ready to take partitions over.
        """
        source = self._source
        return source is not None and source.joined and not self._restoring.is_set()

    @property
    def broker_condition(self) -> str:
        """The readiness condition of the cluster's reachability for this stream."""
        return f"broker:{self.stream.name}"

    @property
    def assigned(self) -> bool:
        return bool(self._source and self._source.assigned)

    def stats(self) -> StreamStats:
        source = self._source
        in_flight = source.tracker.in_flight() if source is not None else 0
        return self.book.snapshot(in_flight=in_flight)

    # -- model swaps (streamfer.pipeline.reload) ----------------------------------------
    @property
    def name(self) -> str:
        return self.stream.name

    def wire(self, runner: Runner) -> InferFn:
        """How this stream's batches would reach ``runner`` (a new model version)."""
        assert self._processor is not None
        infer, _ = engine_wiring(self._processor, runner)
        return infer

    def warmup_feeds(self) -> dict[str, np.ndarray] | None:
        return self._worker.sample if self._worker is not None else None

    def offer_swap(self, swap: Swap) -> bool:
        return self._worker is not None and self._worker.offer_swap(swap)

    def withdraw_swap(self) -> Swap | None:
        return self._worker.withdraw_swap() if self._worker is not None else None

    def swapped(self, served: Served) -> None:
        """On the engine thread, between two batches: later decisions name ``served``."""
        s, info = self.stream, served.runner.info
        self.runner, self.identity = served.runner, served.identity
        self.outlet.encoder = DecisionEncoder(s.name, s.decision_kind, served.identity)
        self._metrics.engine_info(
            stream=s.name, model=s.model, engine=info.kind, precision=info.precision,
            device=info.device, version=served.identity.version,
        )  # fmt: skip

    # -- readiness: is the cluster reachable? --------------------------------------------
    def _monitors(self) -> list[ConnectionMonitor]:
        out = []
        for client in (
            self._source and self._source.monitor,
            self._sink and getattr(self._sink._client, "monitor", None),
        ):
            if isinstance(client, ConnectionMonitor):
                out.append(client)
        return out

    def unreachable_s(self) -> float:
        """How long the cluster has been out of reach (0 while it answers)."""
        return max((m.unreachable_s() for m in self._monitors()), default=0.0)

    def _broker_reachable(self, gone: float | None = None) -> bool:
        """The readiness condition; the gauge is set wherever it is read (``/readyz`` and
        the consumer loop), so ``/readyz`` and ``/metrics`` never disagree."""
        gone = self.unreachable_s() if gone is None else gone
        reachable = gone < self.config.runtime.broker_timeout_s
        self.recorder.set_broker_reachable(reachable)
        return reachable

    def _watch_broker(self, source: KafkaSource) -> None:
        """One log line when the cluster goes out of reach, one when it is back."""
        gone = self.unreachable_s()
        reachable = self._broker_reachable(gone)
        if not reachable and self._unreachable_since is None:
            self._unreachable_since = time.monotonic() - gone
            errors = "; ".join(m.last_error or "" for m in self._monitors() if m.last_error)
            log.error(
                "%s | broker unreachable since %.0f s ago (%s); not ready",
                self.stream.name,
                gone,
                errors or "no answer",
            )
        elif reachable and self._unreachable_since is not None:  # as readiness says
            down = time.monotonic() - self._unreachable_since
            self._unreachable_since = None
            lags = self._safe_lag(source)  # empty: no partition has a position yet
            log.warning(
                "%s | broker reachable again after %.0f s; lag %s",
                self.stream.name,
                down,
                f"{sum(lags.values()):,}" if lags else "not known yet (partitions rejoining)",
            )

    def _safe_lag(self, source: KafkaSource) -> dict[tuple[str, int], int]:
        try:
            return source.lag()
        except StreamferError as exc:
            log.debug("%s | lag unavailable: %s", self.stream.name, exc)
            return {}

    # -- the input topic: waiting for it, losing it --------------------------------------
    def _input_partitions(self) -> int | None:
        topic = self.stream.input_topic
        settings = self.config.kafka.to_settings()
        client = self.config.kafka.client
        return topic_partitions(
            settings, [topic], timeout_s=_INPUT_CHECK_TIMEOUT_S, client=client
        ).get(topic)

    def _wait_for_input(self, source: KafkaSource) -> None:
        """One step of waiting for the missing input topic; start consuming once it is
        there (after creating this stream's output topics, sized like it)."""
        try:
            appeared = self.input.wait(self._stop)
        except StreamError as exc:  # the cluster out of reach: readiness says so already
            log.debug("%s | input topic check failed: %s", self.stream.name, exc)
            return
        if not appeared:
            return
        name = self.stream.name
        ensure_output_topics(self.config, streams=[name])
        dlq = self.stream.resolved_dlq_topic
        limit = message_limits(self.config).get(dlq)
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
            log.warning("%s | closing the consumer: %s", self.stream.name, exc)
        self.lag.update({}, ())
        self.input.lost()  # not ready from here on: the old consumer is gone already

    # -- consumer thread -----------------------------------------------------------------
    def _consume(self, started: threading.Event, errors: list[BaseException]) -> None:
        source = self._source
        assert source is not None
        try:  # an unreachable cluster fails the start here, as the consumer's start would
            if self.input.present():
                source.start()
        except BaseException as exc:
            errors.append(exc)
            self._abandon()
            started.set()
            return
        started.set()
        hb = self.health.heartbeat(f"consumer-{self.stream.name}", max_age_s=60)
        try:
            self._consume_loop(source, hb.beat)
            self._finish(source)
        except BaseException as exc:
            log.exception("%s | consumer failed", self.stream.name)
            self.on_fatal(self.stream.name, exc)
            self._abandon()
            self._close_source(source, wait_s=0)
        finally:
            hb.close()

    def _consume_loop(self, source: KafkaSource, beat: Callable[[], None]) -> None:
        """Poll while the engine's queue has room; while it has none, do not poll.

        Backpressure by not fetching rather than by pausing partitions: the client
        stops prefetching on its own once its bounded queue is full (librdkafka's
        queued.max.messages.kbytes), lag grows and memory does not, and no
        pause/resume cycle restarts the fetcher (librdkafka stalls up to a second
        after each resume). Commits, lag and the cluster's reachability are kept up
        meanwhile.
        """
        inbox = self.inbox
        max_poll = self.config.consumer.max_poll_records
        least = max(1, min(max_poll, inbox.max_rows) // 4)  # worth a poll
        next_lag = 0.0
        while not self._stop.is_set():
            beat()
            if not source.started:  # the input topic is missing
                self._wait_for_input(source)
                self._watch_broker(source)
                continue
            room = inbox.max_rows - inbox.rows
            if room < least:
                inbox.wait_room(least, _POLL_S)
                source.commit_if_due()
            else:
                before = source.assigned
                batches = source.poll(_POLL_S, min(max_poll, room))
                if self._state is not None:  # partitions assigned in that poll: restore now
                    self._restore_pending(self._state, bool(source.assigned - before))
                for batch in batches:
                    self._hand_over(batch)
            worker = self._worker
            self.recorder.set_queue_depth(inbox.rows + (worker.queued if worker else 0))
            if time.monotonic() >= next_lag:
                next_lag = time.monotonic() + _LAG_EVERY_S
                self.lag.update(
                    self._safe_lag(source), source.assigned, source.lag_seconds(_wall_ms())
                )
                self._watch_broker(source)
                self._note_idle(source)
                if self._input_deleted(source):
                    self._lost_input(source)

    def _restore_pending(self, state: StateManager[Any], assigned_now: bool) -> None:
        """Restore what is pending; not ready meanwhile where partitions were just assigned
        (the flag is not touched on every poll: a probe could catch it)."""
        if not assigned_now:
            state.restore_pending()  # e.g. after a rewind; usually nothing
            return
        self._restoring.set()
        try:
            state.restore_pending()
        finally:
            self._restoring.clear()

    def _note_idle(self, source: KafkaSource) -> None:
        """One log line when this member is left without partitions (ready, idle)."""
        idle = source.joined and not source.assigned
        if idle and not self._idle_logged:
            topic = self.stream.input_topic
            log.info(
                "%s | no partitions assigned: idle (%s)", self.stream.name, self._why_idle(topic)
            )
        self._idle_logged = idle

    def _why_idle(self, topic: str) -> str:
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

    def _input_deleted(self, source: KafkaSource) -> bool:
        monitor = source.monitor
        suspect = isinstance(monitor, ConnectionMonitor) and monitor.unknown_topic_within(
            _SUSPECT_FOR_S
        )
        try:
            return self.input.deleted(bool(source.assigned), suspect)
        except StreamError as exc:
            log.debug("%s | input topic check failed: %s", self.stream.name, exc)
            return False

    def _hand_over(self, batch: RecordBatch) -> None:
        n = len(batch)
        self.recorder.consumed(n)
        processor, state = self._processor, self._state
        assert processor is not None
        start = time.perf_counter_ns()
        prepare = None
        view = None
        if state is not None:  # the view first: a partition not restored yet is restored now
            view = state.view(batch.partition)
            prepare = partial(processor.prepare_with_state, state=view)  # type: ignore[attr-defined]
        parts = prepare_isolated(
            processor, batch, self._error_reason, self._check, prepare=prepare
        )
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
                raise StreamError(f"{self.stream.name} | engine worker stopped")

    def _settle(self, prepared: Prepared) -> None:
        """Rows that ended in ``prepare``: absorbed into state, or dropped (e.g. late)."""
        batch = prepared.batch
        if prepared.absorbed is not None and len(prepared.absorbed) and batch.span is not None:
            self.outlet.absorbed(batch, prepared.absorbed)
        for reason, rows in (prepared.dropped or {}).items():
            if len(rows):
                self.outlet.dropped(batch, rows, reason)

    def _put(self, item: Any, rows: int, deadline: float = float("inf")) -> bool:
        return hand_over(self.inbox, item, rows, lambda: self.engine_alive, deadline)

    def _finish(self, source: KafkaSource) -> None:
        """Stop asked: drain (finish, publish, commit) or just commit what is resolved."""
        if not self._drain:
            self._abandon()
            self._close_source(source, wait_s=0)
            return
        if source.started:
            source.pause()
        deadline = time.monotonic() + self.config.runtime.drain_timeout_s
        if not self._put(STOP, 0, deadline):  # an engine that died behind a full queue
            log.error("%s | engine did not take STOP; abandoning", self.stream.name)
            self._abandon()
            self._close_source(source, wait_s=0)
            return
        self._threads[1].join(max(0.0, deadline - time.monotonic()))
        if self._sink is not None:
            try:
                self._sink.flush(max(0.1, deadline - time.monotonic()))
            except StreamError as exc:
                log.warning("%s | drain: %s", self.stream.name, exc)
        self._close_source(source, wait_s=max(0.1, deadline - time.monotonic()))

    def _abandon(self) -> None:
        if self._worker is not None:
            self._worker.abandon()
        self.inbox.put_nowait(STOP)

    def _close_source(self, source: KafkaSource, wait_s: float) -> None:
        try:
            source.close(timeout_s=wait_s)
        except StreamferError as exc:
            log.warning("%s | closing the consumer: %s", self.stream.name, exc)
        finally:
            if self._state is not None:  # what the revocations at close left open
                self._state.close()

    # -- engine thread -------------------------------------------------------------------
    def _run_worker(self) -> None:
        assert self._worker is not None
        hb = self.health.heartbeat(f"engine-{self.stream.name}", max_age_s=60)
        self._worker.beat = hb.beat
        try:
            self._worker.run()
        except BaseException as exc:
            self.on_fatal(self.stream.name, exc)
        finally:
            hb.close()

    def _on_batch(self, n: int, infer_s: float, post_s: float) -> None:
        rec = self.recorder
        rec.observe_batch(n)
        rec.observe_stage_n("infer", infer_s, n)
        rec.observe_stage_n("postprocess", post_s, n)
