"""One configured stream at run time: its parts assembled, started and stopped.

:class:`StreamRuntime` builds the parts of one stream and owns nothing that runs
per record; each part has one owner and data flows down:

* the *consumer thread* (``pipeline.consumer``): ``Source.poll`` -> RecordBatch ->
  processor ``prepare`` (``pipeline.isolation``) -> state view -> the engine queue
  (``pipeline.handoff``); commits, lag, readiness (``pipeline.readiness``) and the
  input topic (``pipeline.inputs``) are kept up on it;
* the *engine thread* (``pipeline.worker``): batcher -> runner -> processor results
  -> :class:`~pipeline.outlet.Outlet`.

The Kafka client's own threads fetch and send; delivery reports resolve records (the sink's
delivery thread for librdkafka). A record's offset is resolved only when its decision (or
dead letter) is acknowledged, or when it is dropped on purpose, so commits never pass a
record whose outcome is not final.

``delivery: exactly_once`` makes the sink transactional (id ``<client_id>-<stream>-<worker
index>``, stable across restarts so a restarted worker fences its predecessor), and the source
commits offsets inside the sink's transaction; decisions and dead letters share it.

A new model version reaches the engine thread between two batches
(:meth:`StreamRuntime.offer_swap`, ``streamfer.pipeline.reload``); a ``shadow`` model
scores the decided batches on a thread of its own (``streamfer.pipeline.shadow``).

``state.enabled`` (a :class:`~pipeline.processors.base.StatefulProcessor`) adds a
:class:`~streams.state.StateManager`: it restores an assigned partition on the consumer thread
before its first batch is prepared and hands the processor the partition's view; before each
commit the updated keys go to the changelog through the same sink (so the same transaction),
and no commit passes a record whose state is not durable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from streamfer.engines.base import Runner
from streamfer.errors import StreamError
from streamfer.pipeline.config import PipelineConfig, StreamConfig
from streamfer.pipeline.consumer import ConsumerLoop, Preparing, Watching
from streamfer.pipeline.decisions import DecisionEncoder, ModelIdentity
from streamfer.pipeline.handoff import InferFn, RowQueue, Swap
from streamfer.pipeline.health import HealthState
from streamfer.pipeline.inputs import InputTopic, partition_count
from streamfer.pipeline.metrics import Metrics, StreamRecorder
from streamfer.pipeline.outlet import Outlet
from streamfer.pipeline.processors import Processor, engine_wiring, make_processor
from streamfer.pipeline.processors.base import StatefulProcessor
from streamfer.pipeline.readiness import BrokerWatch, LagReporter, PartitionsSettled
from streamfer.pipeline.stats import StreamStats
from streamfer.pipeline.topics import within_limits
from streamfer.pipeline.worker import EngineWorker
from streamfer.streams.acks import Resolver
from streamfer.streams.admin import topic_exists
from streamfer.streams.client import ClientFactory, ReaderOptions
from streamfer.streams.dlq import DeadLetterWriter
from streamfer.streams.factory import client_factory
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource, SourceOptions
from streamfer.streams.state import ChangelogWriter, StateCommitter, StateManager, StateOptions

if TYPE_CHECKING:
    from streamfer.pipeline.reload import Served
    from streamfer.pipeline.shadow import ShadowScorer


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
            stream=stream.name, model=stream.model, engine=info.kind, precision=info.precision,
            device=info.device, version=self.identity.version,
        )  # fmt: skip
        self.book = self.recorder.book
        self.inbox = RowQueue(config.runtime.max_in_flight)
        self._processor = processor
        self._builtin = processor is None and stream.plugin is None
        self._stop = threading.Event()
        self._stop_now = threading.Event()  # stop without draining
        self._threads: list[threading.Thread] = []
        self._source: KafkaSource | None = None
        self._sink: KafkaSink | None = None
        self._worker: EngineWorker | None = None
        self._state: StateManager[Any] | None = None
        self.lag = LagReporter(self.recorder)
        self.settled = PartitionsSettled(stream.name, lambda: self._source)
        self.broker = BrokerWatch(
            stream.name, config.runtime.broker_timeout_s, self.recorder,
            lambda: [self._source and self._source.monitor, self._sink and self._sink.monitor],
        )  # fmt: skip
        self.input = InputTopic(
            stream.name, stream.input_topic,
            partition_count(config.kafka, stream.input_topic), health, self.recorder,
        )  # fmt: skip

    # -- assembly ------------------------------------------------------------------------
    def start(self) -> None:
        s, cfg = self.stream, self.config
        factory = client_factory(cfg.kafka.client)
        settings = cfg.kafka.to_settings()
        sink, source = self._open_clients(settings, factory)
        processor = self._processor or make_processor(
            s, self.runner, cfg.runtime.preprocess_threads
        )
        self._processor = processor
        if s.state.enabled:
            self._state = state_manager(self, processor, settings, factory, sink, source)
            source.membership.listen(self._state)
            # entries are written once per flush interval, just before a commit
            flush_s = s.state_flush_interval_s
            source.committer = StateCommitter(source.committer, self._state, flush_s)
        infer, check = engine_wiring(processor, self.runner)
        self.outlet = self._outlet(sink, source)
        if self.shadow_model is not None:
            self._shadow = shadow_scorer(self, processor, settings, factory)
        self._worker = worker = self._engine_worker(infer, processor)
        self.health.watch(self.settled.name, self.settled)
        self.health.watch(self.broker.name, self.broker)
        engine = threading.Thread(target=self._run_worker, name=f"engine-{s.name}", daemon=True)
        consumer = ConsumerLoop(
            cfg, s, source=source, sink=sink,
            preparing=Preparing(processor, check, self._error_reason, self._state),
            inbox=self.inbox, worker=worker, engine=engine, outlet=self.outlet,
            recorder=self.recorder,
            watching=Watching(self.health, self.lag, self.broker, self.settled, self.input),
            stop=self._stop, stop_now=self._stop_now, on_fatal=self._fatal,
        )  # fmt: skip
        self._start_threads(consumer, engine)

    def _open_clients(
        self, settings: KafkaSettings, factory: ClientFactory
    ) -> tuple[KafkaSink, KafkaSource]:
        s, cfg, limits = self.stream, self.config, self.topic_limits
        # stable across restarts: a restarted worker fences its predecessor's open transaction
        txn_id = f"{cfg.kafka.client_id}-{s.name}-{self.worker_index}"
        exactly_once = s.delivery == "exactly_once"
        self._sink = sink = KafkaSink(
            settings,
            within_limits(
                cfg.producer.options(s.knobs, transactional_id=txn_id if exactly_once else None),
                (limits.get(s.output_topic), limits.get(s.resolved_dlq_topic)),
            ),
            factory, thread_name=f"acks-{s.name}",
        ).start()
        self._source = source = KafkaSource(
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
            source.use_transactions(sink)
        return sink, source

    def _outlet(self, sink: KafkaSink, source: KafkaSource) -> Outlet:
        s = self.stream
        return Outlet(
            stream=s.name,
            output_topic=s.output_topic,
            sink=sink,
            dead_letters=DeadLetterWriter(
                sink,
                topic=s.resolved_dlq_topic,
                max_message_bytes=self.topic_limits.get(s.resolved_dlq_topic),
            ),
            resolver=Resolver(source.tracker, self.recorder),
            encoder=DecisionEncoder(s.name, s.decision_kind, self.identity),
            recorder=self.recorder,
            on_fatal=self._fatal,
            on_dead_letter_failure=s.dead_letters.on_failure,
        )

    def _engine_worker(self, infer: InferFn, processor: Processor) -> EngineWorker:
        s = self.stream
        return EngineWorker(
            name=s.name,
            infer=infer,
            processor=processor,
            outlet=self.outlet,
            inbox=self.inbox,
            max_batch=s.batching.max_batch,
            max_wait_ms=s.knobs.batch_wait_ms,
            drop_stale=s.drops_stale,
            latest_per_key=s.latest_per_key,
            deadline_ms=s.deadline_ms,
            on_batch=batch_observer(self.recorder),
            on_fallbacks=self.recorder.deadline_fallbacks,
            error_reason=self._error_reason,
            after_batch=self._shadow.offer if self._shadow is not None else None,
        )

    def _start_threads(self, consumer: ConsumerLoop, engine: threading.Thread) -> None:
        started = threading.Event()
        errors: list[BaseException] = []
        name = f"consume-{self.stream.name}"
        thread = threading.Thread(target=consumer.run, args=(started, errors), name=name)
        self._threads = [thread, engine]
        engine.start()
        thread.start()
        started.wait()
        if errors:
            raise errors[0]

    @property
    def _error_reason(self) -> str:
        """The reason of an exception escaping the processor: ours, or a plug-in's."""
        return "internal_error" if self._builtin else "processor_error"

    def _fatal(self, exc: BaseException) -> None:
        self.on_fatal(self.stream.name, exc)

    def request_stop(self, drain: bool = True) -> None:
        if not drain:
            self._stop_now.set()
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


def batch_observer(recorder: StreamRecorder) -> Callable[[int, float, float], None]:
    """The engine worker's ``on_batch``: batch size and per-record stage times."""

    def on_batch(n: int, infer_s: float, post_s: float) -> None:
        recorder.observe_batch(n)
        recorder.observe_stage_n("infer", infer_s, n)
        recorder.observe_stage_n("postprocess", post_s, n)

    return on_batch


def state_manager(
    rt: StreamRuntime, processor: Processor, settings: KafkaSettings, factory: ClientFactory,
    sink: KafkaSink, source: KafkaSource,
) -> StateManager[Any]:  # fmt: skip
    """The partition state of ``rt``'s stream: restored from and written to its changelog
    through ``sink`` (so inside its transaction), committed offsets read from ``source``."""
    s, cfg = rt.stream, rt.config
    if not isinstance(processor, StatefulProcessor):
        raise StreamError(
            f"{s.name} | state.enabled, but {type(processor).__name__} keeps no state. "
            "Note: a stateful processor has state_codec() and prepare_with_state()"
        )
    group = cfg.consumer.group_id
    timeout_s = source.options.commit_timeout_s
    return StateManager(
        stream=s.name,
        input_topic=s.input_topic,
        codec=processor.state_codec(),
        options=StateOptions(
            dir=s.state.resolved_dir() / f"{group}.{s.name}" / f"w{rt.worker_index}",
            ttl_s=s.state.ttl_s,
            cache_keys=s.state.cache_keys,
            restore_timeout_s=s.state.restore_timeout_s,
        ),
        writer=ChangelogWriter(sink, s.state_topic(group), source.tracker, rt._fatal),
        reader=lambda: factory.reader(settings, ReaderOptions(f"{s.name}-state")),
        committed=lambda tp: source.client.committed(tp, timeout_s),
        listener=rt.recorder,
        topic_exists=lambda topic: topic_exists(settings, topic, client=cfg.kafka.client),
    )


def shadow_scorer(rt: StreamRuntime, processor: Processor, settings: KafkaSettings,
                  factory: ClientFactory) -> ShadowScorer:  # fmt: skip
    """The started scorer of ``rt``'s shadow model (``streamfer.pipeline.shadow``)."""
    from streamfer.pipeline.reload import check_compatible
    from streamfer.pipeline.shadow import ShadowScorer

    s, shadow, served = rt.stream, rt.stream.shadow, rt.shadow_model
    assert shadow is not None and served is not None
    check_compatible(shadow.model, served.label, rt.runner, served.runner)
    scorer = ShadowScorer(
        stream=s.name,
        infer=engine_wiring(processor, served.runner)[0],
        processor=processor,
        encoder=DecisionEncoder(s.name, s.decision_kind, served.identity),
        sink=KafkaSink(settings, rt.config.producer.options(s.knobs), factory),
        topic=shadow.output_topic,
        sample=shadow.sample,
        max_backlog=shadow.max_backlog,
        recorder=rt._metrics.shadow(s.name, shadow.model),
    )
    scorer.start()
    return scorer
