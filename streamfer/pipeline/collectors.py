"""Small Prometheus collectors behind ``streamfer.pipeline.metrics``.

Counters, gauges and histograms here replace prometheus-client's classes on the
hot path: an observation costs one ``bisect`` and one lock, a batch of
observations takes the lock once, and no ``*_created`` series are exported.
Children are plain objects the caller keeps, so no label lookup happens per call.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any, Literal

import numpy as np
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge", "histogram"]
_FEW = 16  # observe_many buckets an array longer than this with numpy


class CounterChild:
    """A monotonically increasing count; ``inc`` takes a lock (``+=`` is not atomic)."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0

    def inc(self, n: float = 1) -> None:
        with self._lock:
            self.value += n


class GaugeChild:
    """A value set from outside (queue depth, lag)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, v: float) -> None:
        self.value = v  # one store: atomic under the GIL, no lock needed


class HistogramChild:
    """Classic buckets: per-bucket counts and a sum, made cumulative only at collect time."""

    __slots__ = ("_bounds", "_counts", "_lock", "_np_bounds", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._np_bounds = np.asarray(bounds, dtype=np.float64)
        self._counts = [0] * (len(bounds) + 1)  # last slot is +Inf; not cumulative
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect_left(self._bounds, value)  # first bound >= value: Prometheus "le"
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def observe_n(self, value: float, n: int) -> None:
        """``n`` observations of the same value (a batch's shared stage time)."""
        i = bisect_left(self._bounds, value)
        with self._lock:
            self._counts[i] += n
            self._sum += value * n

    def observe_many(self, values: Sequence[float] | Any) -> None:
        if isinstance(values, np.ndarray):
            if len(values) <= _FEW:  # numpy's fixed cost per call exceeds bisect's work
                values = values.tolist()
            else:  # a batch: bucket it in C
                where = np.searchsorted(self._np_bounds, values, side="left")
                binned: list[int] = np.bincount(where, minlength=len(self._counts)).tolist()
                total = float(values.sum())
                with self._lock:
                    self._counts = [a + b for a, b in zip(self._counts, binned, strict=True)]
                    self._sum += total
                return
        bounds = self._bounds
        slots = [bisect_left(bounds, v) for v in values]
        total = float(sum(values))
        with self._lock:
            counts = self._counts
            for i in slots:
                counts[i] += 1
            self._sum += total

    def snapshot(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self._counts), self._sum


Child = CounterChild | GaugeChild | HistogramChild


class Family(Collector):
    """One metric name with labelled children, exported on collect()."""

    def __init__(
        self,
        name: str,
        doc: str,
        kind: Kind,
        labels: tuple[str, ...],
        buckets: tuple[float, ...] = (),
    ) -> None:
        self.name, self.doc, self.kind, self.labels = name, doc, kind, labels
        self._buckets = buckets
        self._le = [floatToGoString(b) for b in buckets] + ["+Inf"]
        self._children: dict[tuple[str, ...], Child] = {}
        self._lock = threading.Lock()

    def child(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            with self._lock:
                child = self._children.get(values)
                if child is None:
                    child = self._new_child()
                    self._children[values] = child
        return child

    def remove(self, *values: str) -> None:
        with self._lock:
            self._children.pop(values, None)

    def _new_child(self) -> Child:
        if self.kind == "counter":
            return CounterChild()
        if self.kind == "gauge":
            return GaugeChild()
        return HistogramChild(self._buckets)

    def _family(self) -> Metric:
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.doc, labels=self.labels)
        if self.kind == "gauge":
            return GaugeMetricFamily(self.name, self.doc, labels=self.labels)
        return HistogramMetricFamily(self.name, self.doc, labels=self.labels)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family: Any = self._family()
        with self._lock:
            children = list(self._children.items())
        for values, child in children:
            if isinstance(child, HistogramChild):
                counts, total = child.snapshot()
                running, buckets = 0, []
                for le, c in zip(self._le, counts, strict=True):
                    running += c
                    buckets.append((le, running))
                family.add_metric(list(values), buckets, total)
            else:
                family.add_metric(list(values), child.value)
        return [family]


class GpuCollector(Collector):
    """GPU utilisation and memory through NVML; exports nothing without pynvml or a GPU."""

    def __init__(self, load: Callable[[], ModuleType | None]) -> None:
        self._load = load
        self._nvml: ModuleType | None = None
        self._tried = False
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def _families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("streamfer_gpu_utilization_ratio",
                              "GPU busy fraction over the last sample period (NVML).",
                              labels=["gpu"]),
            GaugeMetricFamily("streamfer_gpu_memory_used_bytes", "GPU memory in use (NVML).",
                              labels=["gpu"]),
            GaugeMetricFamily("streamfer_gpu_memory_total_bytes", "GPU memory installed (NVML).",
                              labels=["gpu"]),
        ]  # fmt: skip

    def _init(self) -> ModuleType | None:
        with self._lock:
            if not self._tried:
                self._tried = True
                nvml = self._load()
                if nvml is not None:
                    try:
                        nvml.nvmlInit()
                        self._nvml = nvml
                    except Exception as exc:  # no driver, no GPU: nothing to export
                        log.info("metrics | NVML unavailable (%s). Note: no GPU metrics", exc)
            return self._nvml

    def collect(self) -> Iterable[Metric]:
        nvml = self._init()
        if nvml is None:
            return []
        util, used, total = families = self._families()
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                util.add_metric([str(i)], rates.gpu / 100.0)
                used.add_metric([str(i)], float(memory.used))
                total.add_metric([str(i)], float(memory.total))
        except Exception as exc:  # a GPU fell off the bus: skip this scrape, keep serving
            log.warning("metrics | NVML query failed (%s). Note: GPU metrics skipped", exc)
            return []
        return families


def import_pynvml() -> ModuleType | None:
    """``pynvml`` when nvidia-ml-py is installed, else None (imported only when called)."""
    try:
        import pynvml  # nvidia-ml-py, extra "gpu"
    except ImportError:
        return None
    return pynvml


class ReadyCollector(Collector):
    """``streamfer_ready``, read from ``source()`` at every scrape (0 without a source)."""

    def __init__(self) -> None:
        self.source: Callable[[], bool] | None = None

    def collect(self) -> Iterable[Metric]:
        ready = GaugeMetricFamily(
            "streamfer_ready", "1 while the process can serve (as /readyz), else 0."
        )
        ready.add_metric([], 1.0 if self.source is not None and self.source() else 0.0)
        return [ready]
