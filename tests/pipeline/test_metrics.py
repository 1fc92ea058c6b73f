"""streamfer.pipeline.metrics: names, labels, buckets, exactness under threads, the off switch."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client.exposition import generate_latest

from streamfer.errors import ConfigError
from streamfer.pipeline.metrics import (
    LATENCY_BUCKETS_S,
    MAX_REASONS,
    STAGES,
    Metrics,
    StreamMetrics,
    StreamRecorder,
)

BASE = {"stream": "fraud", "model": "fraud", "engine": "onnxruntime"}


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def series(m: Metrics, name: str) -> list[dict[str, str]]:
    return [s.labels for fam in m.registry.collect() for s in fam.samples if s.name == name]


def samples(m: Metrics) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in m.registry.collect() for s in fam.samples]


@pytest.fixture
def m() -> Metrics:
    return Metrics(process_collectors=False, nvml_loader=lambda: None)


def test_counters_and_gauges_carry_the_stream_labels(m: Metrics) -> None:
    s = m.stream("fraud", model="fraud", engine="onnxruntime")
    s.consumed(10)
    s.consumed()
    s.published(9)
    s.dropped("stale", 2)
    s.dead_lettered("bad_json")
    s.set_queue_depth(7)
    s.set_lag(3, 120)
    assert value(m, "streamfer_records_consumed_total", **BASE) == 11
    assert value(m, "streamfer_decisions_published_total", **BASE) == 9
    assert value(m, "streamfer_records_dropped_total", **BASE, reason="stale") == 2
    assert value(m, "streamfer_records_dead_lettered_total", **BASE, reason="bad_json") == 1
    assert value(m, "streamfer_queue_depth", **BASE) == 7
    assert value(m, "streamfer_consumer_lag_records", **BASE, partition="3") == 120


def test_histogram_buckets_follow_prometheus_le_semantics(m: Metrics) -> None:
    s = m.stream("fraud", model="fraud", engine="onnxruntime")
    for v in (0.05, 0.0500001, 0.2, 99.0):  # exactly on a bound counts in that bucket
        s.observe_e2e(v)
    name = "streamfer_e2e_latency_seconds_bucket"
    assert value(m, name, **BASE, le="0.045") == 0
    assert value(m, name, **BASE, le="0.05") == 1
    assert value(m, name, **BASE, le="0.055") == 2
    assert value(m, name, **BASE, le="10.0") == 3
    assert value(m, name, **BASE, le="+Inf") == 4
    assert value(m, "streamfer_e2e_latency_seconds_count", **BASE) == 4
    assert value(m, "streamfer_e2e_latency_seconds_sum", **BASE) == pytest.approx(99.3000001)


def test_observe_many_equals_one_by_one() -> None:
    rng = np.random.default_rng(7)
    values = rng.exponential(0.03, size=500)
    one, many = (Metrics(process_collectors=False, nvml_loader=lambda: None) for _ in range(2))
    for v in values:
        one.stream("camera", model="camera", engine="tensorrt").observe_stage("infer", float(v))
    rec = many.stream("camera", model="camera", engine="tensorrt")
    rec.observe_stage_many("infer", values[:200])  # numpy array, bucketed by numpy
    rec.observe_stage_many("infer", values[200:203])  # a short one, bucketed by bisect
    rec.observe_stage_many("infer", values[203:203])  # an empty one
    rec.observe_stage_many("infer", values[203:].tolist())  # list
    buckets = ("streamfer_stage_latency_seconds_bucket", "streamfer_stage_latency_seconds_count")
    exact = [s for s in samples(one) if s[0] in buckets]
    assert len(exact) == (len(LATENCY_BUCKETS_S) + 2) * len(STAGES)
    assert exact == [s for s in samples(many) if s[0] in buckets]
    labels = {"stream": "camera", "model": "camera", "engine": "tensorrt", "stage": "infer"}
    sums = [value(x, "streamfer_stage_latency_seconds_sum", **labels) for x in (one, many)]
    assert sums[0] == pytest.approx(sums[1], rel=1e-12)
    assert value(many, "streamfer_stage_latency_seconds_count", **labels) == 500


def test_latency_buckets_read_p99_within_one_bucket_at_the_bounds() -> None:
    assert list(LATENCY_BUCKETS_S) == sorted(set(LATENCY_BUCKETS_S))
    for bound in (0.05, 0.1):
        i = LATENCY_BUCKETS_S.index(bound)
        below, above = LATENCY_BUCKETS_S[i - 1], LATENCY_BUCKETS_S[i + 1]
        # a neighbour within 10 % of the bound on each side
        assert bound - below <= 0.1 * bound + 1e-12
        assert above - bound <= 0.1 * bound + 1e-12
    assert LATENCY_BUCKETS_S[0] <= 0.0001 and LATENCY_BUCKETS_S[-1] >= 10


def test_every_stage_has_a_series_and_unknown_stages_are_refused(m: Metrics) -> None:
    s = m.stream("sensor", model="sensor", engine="onnxruntime")
    s.observe_stage("infer", 0.003)
    stages = {lab["stage"] for lab in series(m, "streamfer_stage_latency_seconds_count")}
    assert stages == set(STAGES)
    with pytest.raises(ConfigError, match="unknown stage 'inference'"):
        s.observe_stage("inference", 0.1)


def test_reason_labels_stay_bounded(m: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    s = m.stream("fraud", model="fraud", engine="onnxruntime")
    s.dead_lettered("Traceback: KeyError 'amount' at offset 1042")
    for i in range(MAX_REASONS + 10):
        s.dropped(f"code_{i}")
    reasons = {lab["reason"] for lab in series(m, "streamfer_records_dropped_total")}
    assert len(reasons) == MAX_REASONS + 1
    assert "other" in reasons
    assert value(m, "streamfer_records_dropped_total", **BASE, reason="other") == 10
    assert value(m, "streamfer_records_dead_lettered_total", **BASE, reason="other") == 1
    assert "counted as 'other'" in caplog.text


def test_each_stream_run_has_its_own_book_and_shares_the_series(m: Metrics) -> None:
    a = m.stream("fraud", model="fraud", engine="onnxruntime", kind="transaction")
    b = m.stream("fraud", model="fraud", engine="onnxruntime", kind="transaction")
    assert isinstance(a, StreamMetrics) and a.book is not b.book
    a.consumed(2)
    b.consumed(3)
    assert value(m, "streamfer_records_consumed_total", **BASE) == 5
    assert (a.book.snapshot().consumed, b.book.snapshot().consumed) == (2, 3)
    with pytest.raises(ConfigError, match="empty label"):
        m.stream("", model="fraud", engine="onnxruntime")


def test_forget_partition_removes_its_lag_series(m: Metrics) -> None:
    s = m.stream("fraud", model="fraud", engine="onnxruntime")
    s.set_lag(0, 5)
    s.set_lag(1, 6)
    s.forget_partition(0)
    s.forget_partition(9)  # never assigned: nothing happens
    assert [lab["partition"] for lab in series(m, "streamfer_consumer_lag_records")] == ["1"]


def test_engine_info_keeps_one_series_per_stream(m: Metrics) -> None:
    common: dict[str, Any] = {"stream": "camera", "model": "camera", "version": "3"}
    m.engine_info(**common, engine="tensorrt", precision="fp16", device="NVIDIA H100")
    m.engine_info(**common, engine="onnxruntime", precision="fp32", device="cpu")
    got = series(m, "streamfer_engine_info")
    assert got == [{**common, "engine": "onnxruntime", "precision": "fp32", "device": "cpu"}]


def test_counts_are_exact_across_threads(m: Metrics) -> None:
    s = m.stream("fraud", model="fraud", engine="onnxruntime")

    def work() -> None:
        for _ in range(5000):
            s.consumed()
            s.observe_e2e(0.01)
        s.observe_e2e_many([0.02] * 100)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert value(m, "streamfer_records_consumed_total", **BASE) == 20000
    assert value(m, "streamfer_e2e_latency_seconds_count", **BASE) == 20400
    assert value(m, "streamfer_e2e_latency_seconds_bucket", **BASE, le="0.01") == 20000


def test_registries_are_isolated_and_export_no_created_series() -> None:
    a = Metrics(process_collectors=False, nvml_loader=lambda: None)
    b = Metrics(process_collectors=False, nvml_loader=lambda: None)
    a.stream("fraud", model="fraud", engine="onnxruntime").consumed(3)
    assert value(a, "streamfer_records_consumed_total", **BASE) == 3
    assert value(b, "streamfer_records_consumed_total", **BASE) is None
    text = generate_latest(a.registry).decode()
    assert "_created" not in text


def test_ready_gauge_follows_its_source(m: Metrics) -> None:
    assert value(m, "streamfer_ready") == 0  # no source yet: not ready
    state = {"ready": True}
    m.set_ready_source(lambda: state["ready"])
    assert value(m, "streamfer_ready") == 1
    state["ready"] = False
    assert value(m, "streamfer_ready") == 0


def test_one_call_per_event_counts_in_the_book_and_in_prometheus(m: Metrics) -> None:
    s = m.stream("fraud", model="fraud", engine="onnxruntime", kind="transaction")
    s.consumed(6)
    s.decided(np.array([10.0, 30.0]), publish_s=0.004)
    s.dropped("stale", 2)
    s.dead_lettered("bad_json")
    s.absorbed(1)
    snap = s.book.snapshot()
    assert (snap.name, snap.kind, snap.consumed, snap.decided) == ("fraud", "transaction", 6, 2)
    assert snap.dropped == {"stale": 2} and snap.dead_lettered == {"bad_json": 1}
    assert snap.absorbed == 1 and snap.resolved == 6 and sorted(snap.e2e_ms) == [10.0, 30.0]
    assert value(m, "streamfer_records_consumed_total", **BASE) == 6
    assert value(m, "streamfer_decisions_published_total", **BASE) == 2
    assert value(m, "streamfer_e2e_latency_seconds_count", **BASE) == 2
    assert value(m, "streamfer_e2e_latency_seconds_sum", **BASE) == pytest.approx(0.04)
    publish = {**BASE, "stage": "publish"}
    assert value(m, "streamfer_stage_latency_seconds_count", **publish) == 2
    assert value(m, "streamfer_records_dropped_total", **BASE, reason="stale") == 2
    assert value(m, "streamfer_records_dead_lettered_total", **BASE, reason="bad_json") == 1


def test_disabled_metrics_count_in_the_book_and_export_nothing() -> None:
    off = Metrics(enabled=False)
    s = off.stream("fraud", model="fraud", engine="onnxruntime")
    assert type(s) is StreamRecorder
    s.decided(np.array([5.0]), publish_s=0.001)
    s.consumed(3)
    s.published()
    s.dropped("stale")
    s.dead_lettered("bad_json")
    s.observe_stage("no-such-stage", 1.0)  # off means off: not even checked
    s.observe_stage_many("infer", [1.0])
    s.observe_e2e(0.1)
    s.observe_e2e_many(np.ones(3))
    s.observe_batch(4)
    s.set_queue_depth(1)
    s.set_lag(0, 1)
    s.forget_partition(0)
    off.engine_info(stream="fraud", model="fraud", engine="onnxruntime", precision="fp32",
                    device="cpu")  # fmt: skip
    assert generate_latest(off.registry) == b""
    snap = s.book.snapshot()
    assert (snap.consumed, snap.decided, snap.dropped, snap.dead_lettered) == (
        3, 1, {"stale": 1}, {"bad_json": 1}
    )


def test_process_collectors_are_on_by_default() -> None:
    names = {fam.name for fam in Metrics(nvml_loader=lambda: None).registry.collect()}
    assert {"process_cpu_seconds", "python_info"} <= names


class FakeNvml:
    """Stands in for pynvml: two GPUs."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init, self.inits = fail_init, 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=[37, 80][h], memory=5)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(used=[1 << 30, 2 << 30][h], total=80 << 30, free=0)


def test_gpu_metrics_come_from_nvml_when_present() -> None:
    nvml = FakeNvml()
    m = Metrics(process_collectors=False, nvml_loader=lambda: nvml)  # type: ignore[arg-type,return-value]
    assert nvml.inits == 0  # nothing touched before the first scrape
    assert value(m, "streamfer_gpu_utilization_ratio", gpu="0") == pytest.approx(0.37)
    assert value(m, "streamfer_gpu_memory_used_bytes", gpu="1") == 2 << 30
    assert value(m, "streamfer_gpu_memory_total_bytes", gpu="1") == 80 << 30
    generate_latest(m.registry)
    assert nvml.inits == 1


@pytest.mark.parametrize("nvml", [None, FakeNvml(fail_init=True)], ids=["absent", "no-driver"])
def test_no_gpu_metrics_without_nvml_or_driver(nvml: FakeNvml | None) -> None:
    m = Metrics(process_collectors=False, nvml_loader=lambda: nvml)  # type: ignore[arg-type,return-value]
    assert "streamfer_gpu" not in generate_latest(m.registry).decode()
    assert "streamfer_gpu" not in generate_latest(m.registry).decode()
    if nvml is not None:
        assert nvml.inits == 1  # a failed init is not retried on every scrape


@pytest.mark.gpu
def test_gpu_metrics_from_the_real_nvml() -> None:
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py (extra gpu) not installed")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # no driver or no GPU here
        pytest.skip(f"NVML unavailable: {exc}")
    m = Metrics(process_collectors=False)
    total = value(m, "streamfer_gpu_memory_total_bytes", gpu="0")
    used = value(m, "streamfer_gpu_memory_used_bytes", gpu="0")
    util = value(m, "streamfer_gpu_utilization_ratio", gpu="0")
    assert total is not None and total > 0
    assert used is not None and 0 <= used <= total
    assert util is not None and 0 <= util <= 1
