"""What one stream records: one interface for the hot path, the health server and the run summary.

The runtime calls one method per event on the stream's :class:`StreamRecorder`
(one call per batch or per group of rows, never per record). The recorder
counts the records' fate in the stream's :class:`~pipeline.stats.StatsBook`
(what ``StreamRuntime.stats()``, the demo and the run summary read) and, when
metrics are on, in Prometheus (:class:`~pipeline.stream_metrics.StreamMetrics`):
an event is recorded once, by whoever calls it, in both places.

The interface has two parts: :class:`FlowRecorder`, the records as they flow
(consumed, decided, dropped, dead-lettered, absorbed; stage and e2e latencies;
batch sizes), and :class:`StandingRecorder`, the stream's standing (broker
reachable, input topic missing, queue depth, lag per partition, state
restores). This base records in the book only; its Prometheus methods do
nothing (``Metrics(enabled=False)``, the metrics on/off benchmark).
Counts are records, durations are seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamfer.pipeline.stats import StatsBook

STAGES: tuple[str, ...] = ("broker", "queue", "preprocess", "infer", "postprocess", "publish")


class FlowRecorder:
    """The records of one stream as they flow (see the module docstring)."""

    __slots__ = ("book",)

    def __init__(self, book: StatsBook) -> None:
        self.book = book

    # -- the records' fate: counted in the book (and in Prometheus) -------------------------
    def consumed(self, n: int = 1) -> None:
        """``n`` records were polled from Kafka."""
        self.book.consumed(n)

    def decided(self, e2e_ms: np.ndarray, publish_s: float) -> None:
        """Decisions acknowledged by Kafka, with their e2e latencies (ms; defined in
        :mod:`streamfer.streams.acks`) and the seconds from hand-off to the last ack."""
        n = len(e2e_ms)
        self.book.decided(e2e_ms)
        self.published(n)
        self.observe_stage_n("publish", publish_s, n)
        self.observe_e2e_many(e2e_ms / 1e3)

    def dropped(self, reason: str, n: int = 1) -> None:
        """``n`` records were dropped on purpose (e.g. ``reason="stale"``)."""
        self.book.dropped(reason, n)

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        """``n`` records went to the DLQ (``reason`` a short code, e.g. ``bad_json``)."""
        self.book.dead_lettered(reason, n)

    def absorbed(self, n: int) -> None:
        """``n`` records were resolved without a decision of their own (held in state)."""
        self.book.absorbed(n)

    # -- Prometheus only ---------------------------------------------------------------------
    def published(self, n: int = 1) -> None:
        """``n`` decisions were acknowledged (the counter part of :meth:`decided`)."""

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One duration of ``stage`` (one of :data:`STAGES`)."""

    def observe_stage_many(self, stage: str, seconds: Sequence[float] | Any) -> None:
        """Many durations of ``stage`` (a sequence or numpy array) at once."""

    def observe_stage_n(self, stage: str, seconds: float, n: int) -> None:
        """``n`` records spent ``seconds`` in ``stage`` (a batch's shared stage time)."""

    def observe_e2e(self, seconds: float) -> None:
        """Record timestamp -> decision acked, for one record."""

    def observe_e2e_many(self, seconds: Sequence[float] | Any) -> None:
        """End-to-end latencies of many records (the histogram part of :meth:`decided`)."""

    def observe_batch(self, size: int) -> None:
        """One batch of ``size`` items went to the engine."""

    def deadline_fallbacks(self, n: int) -> None:
        """``n`` records had no event-time header: their deadline runs from the timestamp."""


class StandingRecorder:
    """The standing of one stream: reachability, lag, queue, state (gauges)."""

    __slots__ = ()

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


class StreamRecorder(FlowRecorder, StandingRecorder):
    """What the runtime calls for one stream; get it from ``Metrics.stream``."""

    __slots__ = ()

    def set_lags(self, lags: Mapping[int, int]) -> None:
        """Consumer lag of each assigned partition, by partition: one gauge each, and their
        total in the run summary."""
        for partition, n in lags.items():
            self.set_lag(partition, n)
        self.book.set_lag(sum(lags.values()))


class ShadowRecorder:
    """What a stream's shadow scorer records; this base records nothing (metrics off)."""

    def decided(self, n: int) -> None: ...

    def disagreed(self, field: str, n: int) -> None: ...

    def delta(self, field: str, values: Sequence[float]) -> None: ...

    def latency(self, seconds: float) -> None: ...

    def shed(self, reason: str, n: int) -> None: ...
