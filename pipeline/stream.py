"""One configured stream at run time: KafkaSource -> preprocess pool -> EngineWorker -> KafkaSink.

The consumer thread owns the :class:`~streams.source.KafkaSource` (Kafka
consumers are single-threaded): it polls (no more than the inbox has room
for), hands the records to the thread pool in chunks and, in consume order,
to the engine worker's bounded inbox, pauses
every partition while the inbox is more than 3/4 full (lag grows, memory
does not), and commits. A record's offset is *resolved* only when its
decision (or dead letter) is acknowledged by Kafka, or when it is dropped on
purpose, so commits never pass a record whose outcome is not final.

``delivery: exactly_once`` makes the sink transactional (id
``<client_id>-<stream>-<worker index>``, stable across restarts so a restarted
worker fences its predecessor) and the source commits offsets inside the
sink's transaction; decisions and dead letters share that transaction.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engines.base import Runner
from pipeline.config import PipelineConfig, StreamConfig
from pipeline.health import HealthState
from pipeline.metrics import Metrics
from pipeline.postprocess import (
    DetectionPostprocessor,
    FraudPostprocessor,
    ModelIdentity,
    Postprocessor,
    SensorPostprocessor,
    labels_from_metadata,
)
from pipeline.preprocess import make_preprocessor
from pipeline.stats import StatsBook, StreamStats
from pipeline.worker import STOP, ChunkSlot, EngineWorker, Work, prepare_chunk
from streamfer.errors import CodecError, StreamError, StreamferError
from streams.client import ConsumerOptions, Delivered, ProducerOptions
from streams.codecs import encode_decision
from streams.dlq import DeadLetterWriter
from streams.records import Record
from streams.sink import KafkaSink
from streams.source import KafkaSource, SourceOptions

log = logging.getLogger(__name__)

_POLL_S = 0.05
_PUT_WAIT_S = 0.2  # a full inbox: how often the consumer checks the engine is alive
_LAG_EVERY_S = 0.5
_CHUNK = 32  # records per preprocessing task: one submit each, a short head-of-line wait


def make_postprocessor(stream: StreamConfig, runner: Runner) -> Postprocessor:
    output = runner.output_specs[0].name
    if stream.kind == "transaction":
        return FraudPostprocessor(stream.fraud, output)
    labels = labels_from_metadata(runner.metadata, runner.name)
    if stream.kind == "sensor":
        return SensorPostprocessor(stream.sensor, labels, output)
    return DetectionPostprocessor(stream.detection, labels, output)


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
    ) -> None:
        self.config = config
        self.stream = stream
        self.runner = runner
        self.health = health
        self.worker_index = worker_index
        self.on_fatal = on_fatal
        info = runner.info
        self.identity = ModelIdentity(
            stream.model, runner.metadata.get("streamfer.version", "0"), info.kind, info.precision
        )
        self.recorder = metrics.stream(stream.name, model=stream.model, engine=info.kind)
        metrics.engine_info(
            stream=stream.name, model=stream.model, engine=info.kind,
            precision=info.precision, device=info.device, version=self.identity.version,
        )  # fmt: skip
        self.book = StatsBook(stream.name, stream.kind)
        self.inbox: queue.Queue[Any] = queue.Queue(maxsize=config.runtime.max_in_flight)
        self._stop = threading.Event()
        self._drain = True
        self._threads: list[threading.Thread] = []
        self._source: KafkaSource | None = None
        self._sink: KafkaSink | None = None
        self._dlq: DeadLetterWriter | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._worker: EngineWorker | None = None
        self._lag_partitions: set[int] = set()  # partitions with an exported lag

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        s = self.stream
        self._sink = self._make_sink().start()
        self._dlq = DeadLetterWriter(self._sink, topic=s.resolved_dlq_topic)
        self._source = self._make_source()
        if s.delivery == "exactly_once":
            self._source.use_transactions(self._sink)
        spec = self.runner.input_specs[0]
        pre = make_preprocessor(s, self.runner.metadata, spec.name)
        self._pool = ThreadPoolExecutor(self.config.runtime.preprocess_threads, f"pre-{s.name}")
        self._worker = EngineWorker(
            stream=s,
            infer=self.runner.infer,
            pre=pre,
            post=make_postprocessor(s, self.runner),
            identity=self.identity,
            inbox=self.inbox,
            outlet=self,
            on_batch=self._on_batch,
        )
        self.health.watch(self.ready_condition, lambda: self.assigned)
        started = threading.Event()
        errors: list[BaseException] = []
        consumer = threading.Thread(
            target=self._consume, args=(pre, started, errors), name=f"consume-{s.name}"
        )
        engine = threading.Thread(target=self._run_worker, name=f"engine-{s.name}", daemon=True)
        self._threads = [consumer, engine]
        engine.start()
        consumer.start()
        started.wait()
        if errors:
            raise errors[0]

    def _make_sink(self) -> KafkaSink:
        cfg, s = self.config, self.stream
        # stable across restarts: a restarted worker fences its predecessor's open transaction
        txn_id = f"{cfg.kafka.client_id}-{s.name}-{self.worker_index}"
        p = cfg.producer
        return KafkaSink(
            cfg.kafka.to_settings(),
            ProducerOptions(
                linger_ms=p.linger_ms,
                compression=p.compression_type,
                max_request_size=p.max_request_size,
                transactional_id=txn_id if s.delivery == "exactly_once" else None,
                transaction_timeout_ms=p.transaction_timeout_ms,
            ),
        )

    def _make_source(self) -> KafkaSource:
        cfg, c = self.config, self.config.consumer
        return KafkaSource(
            cfg.kafka.to_settings(),
            [self.stream.input_topic],
            ConsumerOptions(
                group_id=c.group_id,
                max_poll_records=c.max_poll_records,
                fetch_max_wait_ms=c.fetch_max_wait_ms,
                max_partition_fetch_bytes=c.max_partition_fetch_bytes,
                auto_offset_reset=c.auto_offset_reset,
                session_timeout_ms=c.session_timeout_ms,
            ),
            SourceOptions(
                max_in_flight_per_partition=cfg.runtime.max_in_flight,
                commit_interval_s=cfg.runtime.commit_interval_ms / 1000,
                revoke_timeout_s=cfg.runtime.drain_timeout_s,
            ),
        )

    def request_stop(self, drain: bool = True) -> None:
        self._drain = drain
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s + 5
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._sink is not None:
            self._sink.close()

    @property
    def engine_alive(self) -> bool:
        """The engine thread still runs (after ``join``: it is stuck in inference)."""
        return len(self._threads) > 1 and self._threads[1].is_alive()

    @property
    def ready_condition(self) -> str:
        """The readiness condition this stream sets: partitions assigned to it."""
        return f"partitions:{self.stream.name}"

    @property
    def assigned(self) -> bool:
        return bool(self._source and self._source.assigned)

    def stats(self) -> StreamStats:
        source = self._source
        in_flight = source.in_flight() if source is not None else 0
        return self.book.snapshot(in_flight=in_flight)

    # -- consumer thread -----------------------------------------------------------------
    def _consume(self, pre: Any, started: threading.Event, errors: list[BaseException]) -> None:
        source, pool = self._source, self._pool
        assert source is not None and pool is not None
        try:
            source.start()
        except BaseException as exc:
            errors.append(exc)
            self._abandon()
            started.set()
            return
        started.set()
        hb = self.health.heartbeat(f"consumer-{self.stream.name}", max_age_s=60)
        try:
            self._consume_loop(source, pool, pre, hb.beat)
            self._finish(source)
        except BaseException as exc:
            log.exception("%s | consumer failed", self.stream.name)
            self.on_fatal(self.stream.name, exc)
            self._abandon()
            self._close_source(source, wait_s=0)
        finally:
            hb.close()

    def _consume_loop(
        self, source: KafkaSource, pool: ThreadPoolExecutor, pre: Any, beat: Callable[[], None]
    ) -> None:
        high, low = self.inbox.maxsize * 3 // 4, self.inbox.maxsize // 4
        paused, next_lag = False, 0.0
        recorder, book = self.recorder, self.book
        while not self._stop.is_set():
            beat()
            # never more than the inbox can take: handing records over does not block
            records = source.poll(_POLL_S, max(1, self.inbox.maxsize - self.inbox.qsize()))
            if records:
                recorder.consumed(len(records))
                book.consumed(len(records))
                recorder.observe_stage_many(
                    "broker", [max(0, r.consumed_wall_ms - r.timestamp_ms) / 1e3 for r in records]
                )
                self._hand_over(records, pool, pre)
            depth = self.inbox.qsize()
            recorder.set_queue_depth(depth + (self._worker.queued if self._worker else 0))
            if not paused and depth >= high:
                source.pause()
                paused = True
            elif paused and depth <= low:
                source.resume()
                paused = False
            if time.monotonic() >= next_lag:
                next_lag = time.monotonic() + _LAG_EVERY_S
                self._update_lag(source)

    def _hand_over(self, records: list[Record], pool: ThreadPoolExecutor, pre: Any) -> None:
        """Preprocess in chunks (a pool submit per record costs more than decoding one)."""
        size = min(_CHUNK, -(-len(records) // self.config.runtime.preprocess_threads))
        for i in range(0, len(records), size):
            chunk = records[i : i + size]
            future = pool.submit(prepare_chunk, pre, chunk)
            for j, r in enumerate(chunk):
                if not self._put((r, ChunkSlot(future, j))):
                    raise StreamError(f"{self.stream.name} | engine worker stopped")

    def _put(self, item: Any, deadline: float = float("inf")) -> bool:
        """Hand over to the engine; False if it died behind a full inbox (or past deadline)."""
        while self.engine_alive and time.monotonic() < deadline:
            try:
                self.inbox.put(item, timeout=_PUT_WAIT_S)
                return True
            except queue.Full:
                pass
        return False

    def _update_lag(self, source: KafkaSource) -> None:
        try:
            lags = source.lag()
        except StreamferError as exc:
            log.debug("%s | lag unavailable: %s", self.stream.name, exc)
            return
        for (_, partition), n in lags.items():
            self.recorder.set_lag(partition, n)
        self.book.set_lag(sum(lags.values()))
        # revoked partitions: stop exporting their last lag
        self._lag_partitions.update(p for _, p in lags)
        gone = self._lag_partitions - {p for _, p in source.assigned}
        for partition in gone:
            self.recorder.forget_partition(partition)
        self._lag_partitions -= gone

    def _finish(self, source: KafkaSource) -> None:
        """Stop asked: drain (finish, publish, commit) or just commit what is resolved."""
        if not self._drain:
            self._abandon()
            self._close_source(source, wait_s=0)
            return
        source.pause()
        deadline = time.monotonic() + self.config.runtime.drain_timeout_s
        if not self._put(STOP, deadline):  # an engine that died behind a full inbox
            log.error("%s | engine did not take STOP; abandoning", self.stream.name)
            self._abandon()
            self._close_source(source, wait_s=0)
            return
        self._threads[1].join(max(0.0, deadline - time.monotonic()))
        if self._sink is not None:
            self._sink.flush(max(0.1, deadline - time.monotonic()))
        self._close_source(source, wait_s=max(0.1, deadline - time.monotonic()))

    def _abandon(self) -> None:
        if self._worker is not None:
            self._worker.abandon()
        with contextlib.suppress(queue.Full):  # a full inbox: the daemon dies with the process
            self.inbox.put_nowait(STOP)

    def _close_source(self, source: KafkaSource, wait_s: float) -> None:
        try:
            source.close(timeout_s=wait_s)
        except StreamferError as exc:
            log.warning("%s | closing the consumer: %s", self.stream.name, exc)

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
        self.recorder.observe_batch(n)
        self.recorder.observe_stage("infer", infer_s)
        self.recorder.observe_stage("postprocess", post_s)

    # -- outlet (engine thread; callbacks on the producer's I/O thread) ------------------
    def publish(self, work: Work, decision: dict[str, Any]) -> None:
        assert self._sink is not None
        record: Record = work.record
        handoff = time.monotonic_ns()
        latency: dict[str, float | None] = {
            k: round(v, 3) for k, v in work.latency_ms(handoff).items()
        }
        latency["publish"] = None
        decision["latency_ms"] = latency
        try:  # built by our postprocessors: no schema check per record, JSON rules still apply
            value = encode_decision(decision, validate=False)
        except (ValueError, TypeError) as exc:  # e.g. a NaN score: dead-lettered instead
            err = CodecError(f"{record.coords} | decision not encodable: {exc}", "bad_decision")
            self.dead_letter(record, err, err.reason)
            return
        self.recorder.observe_stage("queue", work.stage_ns.get("queue", 0) / 1e9)
        self.recorder.observe_stage("preprocess", work.preprocess_ns / 1e9)

        def on_delivery(md: Delivered | None, error: Exception | None) -> None:
            if error is not None:
                self._delivery_failed(record, error)
                return
            now = time.monotonic_ns()
            assert self._source is not None
            if self._source.resolve(record):
                e2e_ms = (
                    max(0.0, record.consumed_wall_ms - record.timestamp_ms)
                    + (now - record.consumed_ns) / 1e6
                )
                self.recorder.published(1)
                self.recorder.observe_stage("publish", (now - handoff) / 1e9)
                self.recorder.observe_e2e(e2e_ms / 1e3)
                self.book.decided(e2e_ms)

        out = self.stream.output_topic
        self._sink.send(out, value, record.key, (), on_delivery, only_if=self._pending(record))

    def _pending(self, record: Record) -> Callable[[], bool]:
        """Checked under the transaction lock: output of a record that an abort or a
        revocation abandoned never lands in the next transaction (see KafkaSink.send)."""
        assert self._source is not None
        return functools.partial(self._source.is_pending, record)

    def dropped(self, work: Work, reason: str) -> None:
        assert self._source is not None
        if self._source.resolve(work.record):
            self.recorder.dropped(reason)
            self.book.dropped(reason)

    def dead_letter(self, record: Any, error: BaseException, reason: str) -> None:
        assert self._dlq is not None
        log.info("%s | dead letter (%s): %s", self.stream.name, reason, error)

        def on_delivery(md: Delivered | None, err: Exception | None) -> None:
            if err is not None:
                self._delivery_failed(record, err)
                return
            assert self._source is not None
            if self._source.resolve(record):
                self.recorder.dead_lettered(reason)
                self.book.dead_lettered(reason)

        self._dlq.write(record, error, on_delivery, reason=reason, only_if=self._pending(record))

    def _delivery_failed(self, record: Record, error: Exception) -> None:
        """Never commit past it: stop (records after the last commit are consumed again)."""
        log.error("%s | output for %s not delivered: %r", self.stream.name, record.coords, error)
        self.on_fatal(self.stream.name, error)
