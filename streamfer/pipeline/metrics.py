"""Prometheus metrics of a streamfer process (names as in DESIGN.md, base units).

One :class:`Metrics` per process owns its own ``CollectorRegistry`` (tests make
isolated ones). The hot path never touches label dictionaries: it asks once
for a per-stream handle and calls small methods on it::

    metrics = Metrics()                       # or Metrics(enabled=False)
    fraud = metrics.stream("fraud", model="fraud", engine="onnxruntime")
    fraud.consumed(len(batch))
    fraud.observe_stage("infer", seconds)
    fraud.observe_e2e_many(e2e_seconds)       # one lock for a whole batch

The counters, gauges and histograms are the small collectors of
``streamfer.pipeline.collectors`` (one ``bisect`` and one lock per observation, one lock
per batch of observations). ``Metrics(enabled=False)`` hands out :class:`StreamRecorder`,
whose methods do nothing, for the metrics on/off benchmark.

Several worker processes: each runs its own :class:`Metrics` and its own
``streamfer.pipeline.health.HealthServer`` on its own port (base port + worker index),
and Prometheus scrapes every port. That keeps every collector exact without
prometheus-client's multiprocess mode, which cannot run custom collectors.

Labels come only from bounded sets: ``stream``, ``model``, ``engine``, ``topic``
(from config), ``stage`` (:data:`STAGES`), ``reason`` (short codes such as
``stale`` or a ``CodecError.reason``), ``partition`` and ``gpu`` (indexes).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from streamfer.errors import ConfigError
from streamfer.pipeline.collectors import (
    CounterChild,
    Family,
    GaugeChild,
    GpuCollector,
    HistogramChild,
    ReadyCollector,
    import_pynvml,
)

log = logging.getLogger(__name__)

# p99 against the 50 ms (fraud) and 100 ms (camera, sensor) bounds reads within one
# bucket: 45/50/55 ms and 90/100/110 ms, with a spread from 100 us to 10 s around them.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
    0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05, 0.055, 0.06, 0.07, 0.08, 0.09,
    0.1, 0.11, 0.125, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS: tuple[float, ...] = (
    1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512,
)  # fmt: skip
# a partition's state restore: nothing to read (ms) to a million keys from the changelog
RESTORE_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
DELTA_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
STAGES: tuple[str, ...] = ("broker", "queue", "preprocess", "infer", "postprocess", "publish")
DEFAULT_PORT = 9464  # as pipeline.config MetricsConfig.port; worker i serves on port + i
MAX_REASONS = 32  # distinct reason codes per counter; later ones are counted as "other"

_REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")
_BASE_LABELS = ("stream", "model", "engine")


class StreamRecorder:
    """What the hot path calls for one stream. This base records nothing (metrics off);
    :class:`StreamMetrics` records. Counts are records, durations are seconds."""

    __slots__ = ()

    def consumed(self, n: int = 1) -> None:
        """``n`` records were polled from Kafka."""

    def published(self, n: int = 1) -> None:
        """``n`` decisions were acknowledged by Kafka."""

    def dropped(self, reason: str, n: int = 1) -> None:
        """``n`` records were dropped on purpose (e.g. ``reason="stale"``)."""

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        """``n`` records went to the DLQ (``reason`` a short code, e.g. ``bad_json``)."""

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One duration of ``stage`` (one of :data:`STAGES`)."""

    def observe_stage_many(self, stage: str, seconds: Sequence[float] | Any) -> None:
        """Many durations of ``stage`` (a sequence or numpy array) at once."""

    def observe_stage_n(self, stage: str, seconds: float, n: int) -> None:
        """``n`` records spent ``seconds`` in ``stage`` (a batch's shared stage time)."""

    def observe_e2e(self, seconds: float) -> None:
        """Record timestamp -> decision acked, for one record."""

    def observe_e2e_many(self, seconds: Sequence[float] | Any) -> None:
        """End-to-end latencies of many records (a sequence or numpy array) at once."""

    def observe_batch(self, size: int) -> None:
        """One batch of ``size`` items went to the engine."""

    def deadline_fallbacks(self, n: int) -> None:
        """``n`` records had no event-time header: their deadline runs from the timestamp."""

    def set_broker_reachable(self, reachable: bool) -> None:
        """Whether the stream's Kafka clients reach the cluster (see runtime.broker_timeout_s)."""

    def set_input_topic_missing(self, topic: str, missing: bool) -> None:
        """Whether the stream's input topic is missing (the stream waits for it)."""

    def set_queue_depth(self, n: int) -> None:
        """Items waiting for the engine now."""

    def set_lag(self, partition: int, n: int) -> None:
        """Consumer lag (records not yet consumed) of one assigned partition."""

    def set_lag_seconds(self, partition: int, seconds: float) -> None:
        """Age of the partition's oldest record consumed but not yet resolved (0: none)."""

    def set_partitions_assigned(self, n: int) -> None:
        """Partitions of the input topic assigned to this member now (0: idle)."""

    def forget_partition(self, partition: int) -> None:
        """The partition was revoked: stop exporting its lag."""

    def state_restored(self, partition: int, seconds: float, keys: int, source: str) -> None:
        """A partition's state was restored (``source``: local, local+changelog, changelog)."""

    def state_expired(self, n: int) -> None:
        """``n`` keys outlived the state TTL and were deleted."""


class StreamMetrics(StreamRecorder):
    """Pre-bound children of one (stream, model, engine); get it from :meth:`Metrics.stream`."""

    __slots__ = (
        "_assigned",
        "_base",
        "_batch",
        "_broker",
        "_consumed",
        "_dead",
        "_dead_f",
        "_drop_f",
        "_drops",
        "_e2e",
        "_expired",
        "_fallbacks",
        "_lag",
        "_lag_f",
        "_lag_s",
        "_lag_s_f",
        "_published",
        "_queue",
        "_restore_f",
        "_restored",
        "_stage_f",
        "_stages",
        "_topic_f",
        "_warned",
    )  # fmt: skip

    def __init__(self, families: dict[str, Family], base: tuple[str, str, str]) -> None:
        self._base = base
        self._consumed: CounterChild = families["consumed"].child(*base)
        self._published: CounterChild = families["published"].child(*base)
        self._e2e: HistogramChild = families["e2e"].child(*base)
        self._batch: HistogramChild = families["batch"].child(*base)
        self._queue: GaugeChild = families["queue"].child(*base)
        self._fallbacks: CounterChild = families["fallbacks"].child(*base)
        self._broker: GaugeChild = families["broker"].child(*base)
        self._broker.set(1.0)
        self._drop_f, self._dead_f = families["dropped"], families["dead"]
        self._stage_f, self._lag_f = families["stage"], families["lag"]
        self._lag_s_f = families["lag_seconds"]
        self._lag_s: dict[int, GaugeChild] = {}
        self._assigned: GaugeChild = families["assigned"].child(*base)
        self._drops: dict[str, CounterChild] = {}
        self._dead: dict[str, CounterChild] = {}
        self._stages = {s: self._stage_f.child(*base, s) for s in STAGES}
        self._lag: dict[int, GaugeChild] = {}
        self._warned = False
        self._restore_f = families["restore"]
        self._topic_f = families["topic_missing"]
        self._restored: CounterChild = families["restored"].child(*base)
        self._expired: CounterChild = families["expired"].child(*base)

    def consumed(self, n: int = 1) -> None:
        self._consumed.inc(n)

    def published(self, n: int = 1) -> None:
        self._published.inc(n)

    def dropped(self, reason: str, n: int = 1) -> None:
        child = self._drops.get(reason) or self._reason_child(self._drops, self._drop_f, reason)
        child.inc(n)

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        child = self._dead.get(reason) or self._reason_child(self._dead, self._dead_f, reason)
        child.inc(n)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self._stage(stage).observe(seconds)

    def observe_stage_many(self, stage: str, seconds: Sequence[float] | Any) -> None:
        self._stage(stage).observe_many(seconds)

    def observe_stage_n(self, stage: str, seconds: float, n: int) -> None:
        self._stage(stage).observe_n(seconds, n)

    def observe_e2e(self, seconds: float) -> None:
        self._e2e.observe(seconds)

    def observe_e2e_many(self, seconds: Sequence[float] | Any) -> None:
        self._e2e.observe_many(seconds)

    def observe_batch(self, size: int) -> None:
        self._batch.observe(size)

    def deadline_fallbacks(self, n: int) -> None:
        self._fallbacks.inc(n)

    def set_broker_reachable(self, reachable: bool) -> None:
        self._broker.set(1.0 if reachable else 0.0)

    def set_input_topic_missing(self, topic: str, missing: bool) -> None:
        self._topic_f.child(*self._base, topic).set(1.0 if missing else 0.0)

    def set_queue_depth(self, n: int) -> None:
        self._queue.set(n)

    def set_lag(self, partition: int, n: int) -> None:
        gauge = self._lag.get(partition)
        if gauge is None:
            gauge = self._lag[partition] = self._lag_f.child(*self._base, str(partition))
        gauge.set(n)

    def set_lag_seconds(self, partition: int, seconds: float) -> None:
        gauge = self._lag_s.get(partition)
        if gauge is None:
            gauge = self._lag_s[partition] = self._lag_s_f.child(*self._base, str(partition))
        gauge.set(seconds)

    def set_partitions_assigned(self, n: int) -> None:
        self._assigned.set(n)

    def forget_partition(self, partition: int) -> None:
        if self._lag.pop(partition, None) is not None:
            self._lag_f.remove(*self._base, str(partition))
        if self._lag_s.pop(partition, None) is not None:
            self._lag_s_f.remove(*self._base, str(partition))

    def state_restored(self, partition: int, seconds: float, keys: int, source: str) -> None:
        self._restore_f.child(*self._base, source).observe(seconds)
        self._restored.inc(keys)

    def state_expired(self, n: int) -> None:
        self._expired.inc(n)

    def _stage(self, stage: str) -> HistogramChild:
        try:
            return self._stages[stage]
        except KeyError:
            raise ConfigError(
                f"metrics | unknown stage {stage!r}. Note: expected one of {', '.join(STAGES)}"
            ) from None

    def _reason_child(
        self, cache: dict[str, CounterChild], family: Family, reason: str
    ) -> CounterChild:
        if _REASON_RE.fullmatch(reason) and len(cache) < MAX_REASONS:
            child: CounterChild = family.child(*self._base, reason)
            cache[reason] = child
            return child
        # Not cached: a stream of free-text reasons must not grow memory either.
        if not self._warned:
            self._warned = True
            log.warning(
                "metrics | %s reason %r counted as 'other'. Note: expected a short snake_case "
                "code, at most %d distinct per stream",
                family.name,
                reason,
                MAX_REASONS,
            )
        return family.child(*self._base, "other")  # type: ignore[no-any-return]


class ShadowRecorder:
    """What a stream's shadow scorer records; this base records nothing (metrics off)."""

    def decided(self, n: int) -> None: ...

    def disagreed(self, field: str, n: int) -> None: ...

    def delta(self, field: str, values: Sequence[float]) -> None: ...

    def latency(self, seconds: float) -> None: ...

    def shed(self, reason: str, n: int) -> None: ...


class ShadowMetrics(ShadowRecorder):
    def __init__(self, families: dict[str, Family], stream: str, model: str) -> None:
        self._f, self._stream = families, stream
        self._decided: CounterChild = families["shadow"].child(stream, model)
        self._latency: HistogramChild = families["shadow_s"].child(stream, model)

    def decided(self, n: int) -> None:
        self._decided.inc(n)

    def disagreed(self, field: str, n: int) -> None:
        self._f["disagree"].child(self._stream, field).inc(n)

    def delta(self, field: str, values: Sequence[float]) -> None:
        self._f["delta"].child(self._stream, field).observe_many(values)

    def latency(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def shed(self, reason: str, n: int) -> None:
        self._f["shed"].child(self._stream, reason).inc(n)


class Metrics:
    """All metrics of one process in one registry. ``enabled=False``: same interface,
    nothing recorded, nothing exported (for the metrics on/off benchmark)."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        process_collectors: bool = True,
        nvml_loader: Callable[[], ModuleType | None] = import_pynvml,
    ) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry()
        self._streams: dict[tuple[str, str, str], StreamRecorder] = {}
        self._engine_labels: dict[str, tuple[str, ...]] = {}
        self._model_labels: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._ready = ReadyCollector()
        base = _BASE_LABELS
        self._f = {
            "consumed": Family("streamfer_records_consumed_total",
                               "Records polled from Kafka.", "counter", base),
            "published": Family("streamfer_decisions_published_total",
                                "Decisions acknowledged by Kafka.", "counter", base),
            "dropped": Family("streamfer_records_dropped_total",
                              "Records dropped on purpose, by reason.", "counter",
                              (*base, "reason")),
            "dead": Family("streamfer_records_dead_lettered_total",
                           "Records sent to the dead-letter topic, by reason.", "counter",
                           (*base, "reason")),
            "stage": Family("streamfer_stage_latency_seconds",
                            "Time spent per pipeline stage.", "histogram", (*base, "stage"),
                            LATENCY_BUCKETS_S),
            "e2e": Family("streamfer_e2e_latency_seconds",
                          "Record timestamp to decision acked.", "histogram", base,
                          LATENCY_BUCKETS_S),
            "batch": Family("streamfer_batch_size", "Items per engine batch.", "histogram",
                            base, BATCH_SIZE_BUCKETS),
            "queue": Family("streamfer_queue_depth", "Items waiting for the engine.", "gauge",
                            base),
            "lag": Family("streamfer_consumer_lag_records",
                          "Records not yet consumed, per assigned partition: high watermark "
                          "minus the consumer's position (past transaction markers, so a "
                          "caught-up exactly-once partition reads 0).",
                          "gauge", (*base, "partition")),
            "lag_seconds": Family("streamfer_consumer_lag_seconds",
                                  "Age (from its record timestamp) of the partition's oldest "
                                  "record consumed but not yet resolved (decision acked, "
                                  "dropped or dead-lettered); 0 when none is in flight. "
                                  "Records not consumed yet do not count: see "
                                  "streamfer_consumer_lag_records.",
                                  "gauge", (*base, "partition")),
            "assigned": Family("streamfer_partitions_assigned",
                               "Input partitions assigned to this member (0: idle, e.g. more "
                               "members in the group than partitions).", "gauge", base),
            "fallbacks": Family("streamfer_deadline_fallbacks_total",
                                "Records whose deadline runs from the Kafka timestamp for lack "
                                "of an event-time header (camera: capture-ts-ns).", "counter",
                                base),
            "broker": Family("streamfer_broker_reachable",
                             "1 while the stream's Kafka clients reach the cluster, 0 once it "
                             "has been unreachable for runtime.broker_timeout_s.", "gauge", base),
            "topic_missing": Family("streamfer_input_topic_missing",
                                    "1 while the stream's input topic does not exist (the "
                                    "stream waits for it, not ready), 0 once it does.",
                                    "gauge", (*base, "topic")),
            "restore": Family("streamfer_state_restore_seconds",
                              "Time to restore a partition's state on assignment, by where it "
                              "came from (local, local+changelog, changelog).", "histogram",
                              (*base, "source"), RESTORE_BUCKETS_S),
            "restored": Family("streamfer_state_restored_keys_total",
                               "Keys held by partition states when they were restored.",
                               "counter", base),
            "expired": Family("streamfer_state_expired_keys_total",
                              "Keys deleted from the state stores after their TTL.", "counter",
                              base),
            "engine": Family("streamfer_engine_info", "Engine serving a stream (value 1).",
                             "gauge", (*base, "precision", "device", "version")),
            "model": Family("streamfer_model_info",
                            "Model version this worker serves (value 1; the previous "
                            "version's series goes away after a swap).", "gauge",
                            ("model", "version", "engine")),
            "shadow": Family("streamfer_shadow_decisions_total",
                             "Decisions of a stream's shadow model (published to its side "
                             "topic).", "counter", ("stream", "model")),
            "disagree": Family("streamfer_shadow_disagreements_total",
                               "Shadow decisions whose result field differs from the "
                               "primary's (for fraud: action).", "counter", ("stream", "field")),
            "delta": Family("streamfer_shadow_score_delta",
                            "Absolute difference between the shadow's and the primary's "
                            "numeric result fields (for fraud: fraud_score).", "histogram",
                            ("stream", "field"), DELTA_BUCKETS),
            "shadow_s": Family("streamfer_shadow_latency_seconds",
                               "The shadow model's inference and results per batch.",
                               "histogram", ("stream", "model"), LATENCY_BUCKETS_S),
            "shed": Family("streamfer_shadow_shed_total",
                           "Rows the shadow did not score or publish, by reason (backlog: "
                           "queue full; failed: it raised; publish_failed).", "counter",
                           ("stream", "reason")),
            "reloads": Family("streamfer_model_reloads_total",
                              "Model reloads (SIGHUP, a new version polled), by result: ok "
                              "(swapped in) or failed (refused; the old version serves).",
                              "counter", ("model", "result")),
        }  # fmt: skip
        if not enabled:
            return
        for family in self._f.values():
            self.registry.register(family)
        self.registry.register(self._ready)
        self.registry.register(GpuCollector(nvml_loader))
        if process_collectors:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def stream(self, name: str, *, model: str, engine: str) -> StreamRecorder:
        """The recorder for one stream; the same object for the same arguments."""
        key = (name, model, engine)
        recorder = self._streams.get(key)
        if recorder is None:
            if not all(key):
                raise ConfigError(
                    f"metrics | empty label in stream={name!r} model={model!r} "
                    f"engine={engine!r}. Note: expected non-empty names from the config"
                )
            with self._lock:
                recorder = self._streams.get(key)
                if recorder is None:
                    recorder = StreamMetrics(self._f, key) if self.enabled else StreamRecorder()
                    self._streams[key] = recorder
        return recorder

    def engine_info(
        self,
        *,
        stream: str,
        model: str,
        engine: str,
        precision: str,
        device: str,
        version: str = "",
    ) -> None:
        """Export ``streamfer_engine_info`` = 1 for the engine now serving ``stream``."""
        if not self.enabled:
            return
        labels = (stream, model, engine, precision, device, version)
        family = self._f["engine"]
        with self._lock:
            old = self._engine_labels.get(stream)
            if old is not None and old != labels:
                family.remove(*old)
            self._engine_labels[stream] = labels
        family.child(*labels).set(1)

    def model_info(self, *, model: str, version: str, engine: str) -> None:
        """Export ``streamfer_model_info`` = 1 for what serves ``model`` now (the series of
        the version it replaces is removed)."""
        if not self.enabled:
            return
        labels = (model, version, engine)
        family = self._f["model"]
        with self._lock:
            old = self._model_labels.get(model)
            if old is not None and old != labels:
                family.remove(*old)
            self._model_labels[model] = labels
        family.child(*labels).set(1)

    def shadow(self, stream: str, model: str) -> ShadowRecorder:
        """What the shadow of ``stream`` records (nothing when metrics are off)."""
        return ShadowMetrics(self._f, stream, model) if self.enabled else ShadowRecorder()

    def model_reload(self, model: str, result: str) -> None:
        """Count one reload of ``model`` with ``result`` (``ok`` or ``failed``)."""
        if self.enabled:
            self._f["reloads"].child(model, result).inc()

    def set_ready_source(self, source: Callable[[], bool]) -> None:
        """``streamfer_ready`` reads ``source()`` at every scrape."""
        self._ready.source = source
