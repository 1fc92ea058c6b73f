"""The Prometheus side of one stream's recorder: pre-bound collector children per stream.

:class:`StreamMetrics` is what ``Metrics.stream`` hands out when metrics are
on: the :class:`~pipeline.recorder.StreamRecorder` interface, each method one
step on a child bound once to the stream's (stream, model, engine) labels, so
the hot path never builds a label tuple. Its flow part (:class:`FlowMetrics`)
also counts the records' fate in the stream's book (through the base class);
its standing part (:class:`StandingMetrics`) sets gauges only.
:class:`ShadowMetrics` does the same for a stream's shadow scorer.

Reason labels come only from a bounded set: short snake_case codes, at most
:data:`MAX_REASONS` per counter and stream; later ones are counted as ``other``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from streamfer.errors import ConfigError
from streamfer.pipeline.collectors import CounterChild, Family, GaugeChild, HistogramChild
from streamfer.pipeline.recorder import (
    STAGES,
    FlowRecorder,
    ShadowRecorder,
    StandingRecorder,
    StreamRecorder,
)
from streamfer.pipeline.stats import StatsBook

log = logging.getLogger(__name__)

MAX_REASONS = 32  # distinct reason codes per counter; later ones are counted as "other"

_REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")

Base = tuple[str, str, str]


class _Reasons:
    """One counter family's children by reason code, bounded (see the module docstring)."""

    __slots__ = ("base", "children", "family", "warned")

    def __init__(self, family: Family, base: Base) -> None:
        self.family, self.base = family, base
        self.children: dict[str, CounterChild] = {}
        self.warned = False

    def inc(self, reason: str, n: int) -> None:
        child = self.children.get(reason) or self._child(reason)
        child.inc(n)

    def _child(self, reason: str) -> CounterChild:
        if _REASON_RE.fullmatch(reason) and len(self.children) < MAX_REASONS:
            child: CounterChild = self.family.child(*self.base, reason)
            self.children[reason] = child
            return child
        # Not cached: a stream of free-text reasons must not grow memory either.
        if not self.warned:
            self.warned = True
            log.warning(
                "metrics | %s reason %r counted as 'other'. Note: expected a short snake_case "
                "code, at most %d distinct per stream",
                self.family.name,
                reason,
                MAX_REASONS,
            )
        return self.family.child(*self.base, "other")  # type: ignore[no-any-return]


class FlowMetrics(FlowRecorder):
    """The flow part: records, stage and e2e latencies, batch sizes."""

    __slots__ = ("_batch", "_consumed", "_dead", "_drops", "_e2e", "_fallbacks", "_published",
                 "_stages")  # fmt: skip

    def __init__(self, families: dict[str, Family], base: Base, book: StatsBook) -> None:
        FlowRecorder.__init__(self, book)  # not super(): StreamMetrics has two bases
        self._consumed: CounterChild = families["consumed"].child(*base)
        self._published: CounterChild = families["published"].child(*base)
        self._e2e: HistogramChild = families["e2e"].child(*base)
        self._batch: HistogramChild = families["batch"].child(*base)
        self._fallbacks: CounterChild = families["fallbacks"].child(*base)
        self._drops = _Reasons(families["dropped"], base)
        self._dead = _Reasons(families["dead"], base)
        self._stages: dict[str, HistogramChild] = {
            s: families["stage"].child(*base, s) for s in STAGES
        }

    def consumed(self, n: int = 1) -> None:
        self.book.consumed(n)
        self._consumed.inc(n)

    def published(self, n: int = 1) -> None:
        self._published.inc(n)

    def dropped(self, reason: str, n: int = 1) -> None:
        self.book.dropped(reason, n)
        self._drops.inc(reason, n)

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        self.book.dead_lettered(reason, n)
        self._dead.inc(reason, n)

    def observe_stage(self, stage: str, seconds: float) -> None:
        (self._stages.get(stage) or _unknown_stage(stage)).observe(seconds)

    def observe_stage_many(self, stage: str, seconds: Sequence[float] | Any) -> None:
        (self._stages.get(stage) or _unknown_stage(stage)).observe_many(seconds)

    def observe_stage_n(self, stage: str, seconds: float, n: int) -> None:
        (self._stages.get(stage) or _unknown_stage(stage)).observe_n(seconds, n)

    def observe_e2e(self, seconds: float) -> None:
        self._e2e.observe(seconds)

    def observe_e2e_many(self, seconds: Sequence[float] | Any) -> None:
        self._e2e.observe_many(seconds)

    def observe_batch(self, size: int) -> None:
        self._batch.observe(size)

    def deadline_fallbacks(self, n: int) -> None:
        self._fallbacks.inc(n)


def _unknown_stage(stage: str) -> HistogramChild:
    raise ConfigError(
        f"metrics | unknown stage {stage!r}. Note: expected one of {', '.join(STAGES)}"
    )


class StandingMetrics(StandingRecorder):
    """The standing part: gauges of reachability, lag, queue depth and state restores.
    (No ``__slots__``: one base of :class:`StreamMetrics` lays out its slots.)"""

    def __init__(self, families: dict[str, Family], base: Base) -> None:
        self._base = base
        self._queue: GaugeChild = families["queue"].child(*base)
        self._broker: GaugeChild = families["broker"].child(*base)
        self._broker.set(1.0)
        self._assigned: GaugeChild = families["assigned"].child(*base)
        self._lag_f, self._lag_s_f = families["lag"], families["lag_seconds"]
        self._lag: dict[int, GaugeChild] = {}
        self._lag_s: dict[int, GaugeChild] = {}
        self._topic_f = families["topic_missing"]
        self._restore_f = families["restore"]
        self._restored: CounterChild = families["restored"].child(*base)
        self._expired: CounterChild = families["expired"].child(*base)

    def set_broker_reachable(self, reachable: bool) -> None:
        self._broker.set(1.0 if reachable else 0.0)

    def set_input_topic_missing(self, topic: str, missing: bool) -> None:
        self._topic_f.child(*self._base, topic).set(1.0 if missing else 0.0)

    def set_queue_depth(self, n: int) -> None:
        self._queue.set(n)

    def set_lag(self, partition: int, n: int) -> None:
        self._partition_gauge(self._lag, self._lag_f, partition).set(n)

    def set_lag_seconds(self, partition: int, seconds: float) -> None:
        self._partition_gauge(self._lag_s, self._lag_s_f, partition).set(seconds)

    def _partition_gauge(self, cache: dict[int, GaugeChild], family: Family,
                         partition: int) -> GaugeChild:  # fmt: skip
        gauge = cache.get(partition)
        if gauge is None:
            gauge = cache[partition] = family.child(*self._base, str(partition))
        return gauge

    def set_partitions_assigned(self, n: int) -> None:
        self._assigned.set(n)

    def forget_partition(self, partition: int) -> None:
        for cache, family in ((self._lag, self._lag_f), (self._lag_s, self._lag_s_f)):
            if cache.pop(partition, None) is not None:
                family.remove(*self._base, str(partition))

    def state_restored(self, partition: int, seconds: float, keys: int, source: str) -> None:
        self._restore_f.child(*self._base, source).observe(seconds)
        self._restored.inc(keys)

    def state_expired(self, n: int) -> None:
        self._expired.inc(n)


class StreamMetrics(FlowMetrics, StandingMetrics, StreamRecorder):
    """Pre-bound children of one (stream, model, engine); get it from ``Metrics.stream``."""

    def __init__(self, families: dict[str, Family], base: Base, book: StatsBook) -> None:
        FlowMetrics.__init__(self, families, base, book)
        StandingMetrics.__init__(self, families, base)


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
