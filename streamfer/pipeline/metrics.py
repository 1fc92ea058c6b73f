"""Prometheus metrics of a streamfer process (names as in DESIGN.md, base units).

One :class:`Metrics` per process owns its own ``CollectorRegistry`` (tests make
isolated ones) and the metric families. The hot path never touches label
dictionaries: it asks once for a stream's recorder (the interface of
``streamfer.pipeline.recorder``; the Prometheus side in
``streamfer.pipeline.stream_metrics``) and calls small methods on it::

    metrics = Metrics()                       # or Metrics(enabled=False)
    fraud = metrics.stream("fraud", model="fraud", engine="onnxruntime", kind="transaction")
    fraud.consumed(len(batch))
    fraud.observe_stage("infer", seconds)
    fraud.decided(e2e_ms, publish_s)          # one lock for a whole group of decisions
    fraud.book.snapshot()                     # the same counts, for people and the demo

The counters, gauges and histograms are the small collectors of
``streamfer.pipeline.collectors`` (one ``bisect`` and one lock per observation, one lock
per batch of observations). ``Metrics(enabled=False)`` hands out the base
:class:`StreamRecorder`, which counts in the stream's book only, for the metrics on/off
benchmark.

Several worker processes: each runs its own :class:`Metrics` and its own
``streamfer.pipeline.health.HealthServer`` on its own port (base port + worker index),
and Prometheus scrapes every port. That keeps every collector exact without
prometheus-client's multiprocess mode, which cannot run custom collectors.

Labels come only from bounded sets: ``stream``, ``model``, ``engine``, ``topic``
(from config), ``stage`` (:data:`STAGES`), ``reason`` (short codes such as
``stale`` or a ``CodecError.reason``), ``partition`` and ``gpu`` (indexes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from streamfer.errors import ConfigError
from streamfer.pipeline.collectors import Family, GpuCollector, ReadyCollector, import_pynvml
from streamfer.pipeline.recorder import STAGES, ShadowRecorder, StreamRecorder
from streamfer.pipeline.stats import StatsBook
from streamfer.pipeline.stream_metrics import MAX_REASONS, ShadowMetrics, StreamMetrics

__all__ = [
    "MAX_REASONS",
    "STAGES",
    "Metrics",
    "ShadowMetrics",
    "ShadowRecorder",
    "StreamMetrics",
    "StreamRecorder",
]

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
DEFAULT_PORT = 9464  # as pipeline.config MetricsConfig.port; worker i serves on port + i

_BASE_LABELS = ("stream", "model", "engine")


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
        self._info_labels: dict[str, dict[str, tuple[str, ...]]] = {}
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

    def stream(self, name: str, *, model: str, engine: str, kind: str = "") -> StreamRecorder:
        """The recorder of one stream run (``kind``: the stream's kind, for its stats), with
        a book of its own; recorders of the same labels share their Prometheus series."""
        if not (name and model and engine):
            raise ConfigError(
                f"metrics | empty label in stream={name!r} model={model!r} "
                f"engine={engine!r}. Note: expected non-empty names from the config"
            )
        book = StatsBook(name, kind)
        if not self.enabled:
            return StreamRecorder(book)
        return StreamMetrics(self._f, (name, model, engine), book)

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
        self._info("engine", stream, (stream, model, engine, precision, device, version))

    def model_info(self, *, model: str, version: str, engine: str) -> None:
        """Export ``streamfer_model_info`` = 1 for what serves ``model`` now (the series of
        the version it replaces is removed)."""
        self._info("model", model, (model, version, engine))

    def _info(self, family_key: str, owner: str, labels: tuple[str, ...]) -> None:
        """One info series (value 1) per ``owner``: a new one replaces the old."""
        if not self.enabled:
            return
        family = self._f[family_key]
        with self._lock:
            shown = self._info_labels.setdefault(family_key, {})
            old = shown.get(owner)
            if old is not None and old != labels:
                family.remove(*old)
            shown[owner] = labels
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
