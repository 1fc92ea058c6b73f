"""Model versions under load: a swap, a refused version, and the cost of a shadow.

The fraud stream (``deploy/configs/fraud.yaml``) runs as ``streamfer run`` with
its model turned into a version directory (``1/model.onnx``; the shipped model,
copied). Open-loop Poisson transactions go to a 3-partition input topic and
every decision is read back (the traffic: ``streamfer.bench.models_traffic``); a
record's end-to-end latency runs from its scheduled send time to its decision's
LogAppendTime. This module runs the pipeline under test, the runs below and the
report.

1. Swap under load, per delivery mode: a steady phase, then version 2 is written
   (hidden name, renamed when complete) and the pipeline gets SIGHUP, then
   steady again; then a corrupt version 3 and SIGHUP again (refused). Every
   decision is read back (``read_committed`` under exactly-once) and mapped to
   its source partition and offset: records without a decision, duplicates,
   whether each partition switched version once in offset order, SIGHUP -> the
   first decision of version 2, and p99 in the swap window vs steady. A run
   without any swap gives the at-least-once duplicates to compare with.
2. The refused version: the longest gap between consecutive decisions (append
   times, all partitions) around its SIGHUP vs the batcher's ``max_wait_ms``
   and vs the same-length window of the steady phase.
3. Shadow cost: the stream with ``shadow`` (the same model again, sample 1.0)
   vs without, interleaved runs, at a fixed rate (p99, CPU µs per record) and
   as a replay-mode drain of a preloaded backlog (records/s, CPU µs per
   record). The shadow's own cost is read from the run's own metrics:
   ``streamfer_shadow_latency_seconds`` (inference + postprocess per batch)
   summed, over ``streamfer_shadow_decisions_total``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import shutil
import signal
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTP

from streamfer.bench.kafka_io import TopicSet, produce_all, run_id, topic_set, topic_span
from streamfer.bench.machine import Machine, probe_machine
from streamfer.bench.models_traffic import STAGES, Collector, Decided, Generator, Load, input_stamps
from streamfer.bench.pipeline_proc import (
    CONFIG_DIR,
    PipelineProcess,
    bench_config,
    load_raw,
    start_flowing,
)
from streamfer.bench.records import transaction_pool
from streamfer.bench.report import Report, Table, Target
from streamfer.bench.stats import Spread, fmt_ms
from streamfer.errors import StreamferError
from streamfer.pipeline.config import parse_config

Say = Callable[[str], None]
PARTITIONS = 3
SWAP_TARGET_S = 2.0
_URL_RE = re.compile(r"metrics on (http://\S+?)\)")


@dataclass(frozen=True)
class ModelsOptions:
    rate: float = 1000.0
    steady_s: float = 8.0  # before the swap, after it, and after the refusal each
    shadow_rate_s: float = 10.0  # load per fixed-rate shadow run
    drain_records: int = 30_000
    repeats: int = 3  # interleaved shadow / no-shadow runs of each kind
    config: Path = CONFIG_DIR / "fraud.yaml"
    drain_timeout_s: float = 60.0

    @classmethod
    def quick(cls, config: Path | None = None) -> ModelsOptions:
        return cls(steady_s=3.0, shadow_rate_s=4.0, drain_records=5_000, repeats=1,
                   config=config or CONFIG_DIR / "fraud.yaml")  # fmt: skip


# --- the pipeline under test ---------------------------------------------------------------


def _versions_dir(root: Path, model_file: Path) -> Path:
    versions = root / "fraud"
    (versions / "1").mkdir(parents=True)
    shutil.copyfile(model_file, versions / "1" / "model.onnx")
    return versions


def _ship(versions: Path, name: str, content: bytes | Path) -> None:
    """Write a version under a hidden name and rename it when complete."""
    tmp = versions / f".{name}-tmp"
    tmp.mkdir()
    if isinstance(content, Path):
        shutil.copyfile(content, tmp / "model.onnx")
    else:
        (tmp / "model.onnx").write_bytes(content)
    tmp.rename(versions / name)


def _stream_config(
    base: dict[str, Any], opts: ModelsOptions, bootstrap: str, src: str, out: str, group: str,
    overrides: dict[str, Any], shadow: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The fraud stream on the benchmark's topics; with ``shadow``, the same model again as
    a shadow at sample 1.0 (decisions to ``<out>.shadow``)."""
    raw, _ = bench_config(
        base, source=str(opts.config), kind="transaction", bootstrap=bootstrap,
        input_topic=src, output_topic=out, group=group, overrides=overrides,
    )  # fmt: skip
    if shadow:
        stream = raw["streams"][0]
        raw["models"]["fraud_candidate"] = dict(raw["models"][stream["model"]])
        stream["shadow"] = {"model": "fraud_candidate", "output_topic": f"{out}.shadow",
                            "sample": 1.0, "max_backlog": 64}  # fmt: skip
        parse_config(raw, f"{opts.config} (benchmark copy, shadow)")
    return raw


def _nudge(bootstrap: str, topic: str) -> Callable[[], None]:
    item = transaction_pool(1)[0]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})

    def send() -> None:
        producer.produce(topic, item[1], item[0])
        producer.flush(10)

    return send


def _wait_all(proc: PipelineProcess, col: Collector, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while col.distinct() < expected and time.monotonic() < deadline:
        proc.check_alive()
        time.sleep(0.1)  # poll interval
    time.sleep(0.5)  # a late duplicate still on its way back counts too
    return col.distinct()


def _pid(proc: PipelineProcess) -> int:
    popen = proc._proc
    if popen is None:
        raise StreamferError("pipeline | not running. Note: expected a started pipeline")
    return popen.pid


def _scrape(proc: PipelineProcess) -> dict[str, float]:
    """The pipeline's metrics (name{labels} summed over labels -> value) from its endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    log_text = proc.log_path.read_text(errors="replace") if proc.log_path else ""
    m = _URL_RE.search(log_text)
    if m is None:
        return {}
    url = m.group(1).replace("0.0.0.0", "127.0.0.1").rstrip("/") + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            sums[s.name] = sums.get(s.name, 0.0) + float(s.value)
    return sums


# --- 1 and 2: swap and refusal under load ---------------------------------------------------


@dataclass
class SwapRun:
    delivery: str
    swap: bool
    records: int
    decided: int
    decisions: int
    duplicates: int
    switched_once: dict[int, bool]
    sighup_to_v2_s: float
    p99_steady_ms: float
    p99_swap_ms: float
    swap_window_s: tuple[float, float]  # relative to the swap SIGHUP
    refused_logged: bool
    max_gap_refusal_ms: float
    max_gap_steady_ms: float
    versions_after_refusal: list[str]
    generator_late_ms: float
    timeline: list[tuple[float, int, int, float]] = field(default_factory=list)  # t, v1, v2, p99


def _p99(lat_ms: np.ndarray) -> float:
    return float(np.percentile(lat_ms, 99, method="higher")) if lat_ms.size else math.nan


def _max_gap(stamps: np.ndarray, lo: float, hi: float) -> float:
    inside = np.sort(stamps[(stamps >= lo) & (stamps <= hi)])
    return float(np.diff(inside).max()) if inside.size > 1 else math.nan


def _open_loop_topics(topics: TopicSet, name: str) -> tuple[str, str, str]:
    """A fresh run id, and its input (with the dead-letter topic tracked) and output topics."""
    rid = run_id()
    src = topics.input(f"bench-{rid}-{name}-in", PARTITIONS)
    topics.track(f"{src}.dlq")
    return rid, src, topics.output(f"bench-{rid}-{name}-out", PARTITIONS)


def swap_run(
    bootstrap: str, base: dict[str, Any], opts: ModelsOptions, topics: TopicSet, delivery: str,
    swap: bool, say: Say,
) -> SwapRun:  # fmt: skip
    rid, src, out = _open_loop_topics(topics, "models")
    model_file = Path(base["models"]["fraud"]["path"])
    with tempfile.TemporaryDirectory(prefix="streamfer-bench-models-") as tmp:
        versions = _versions_dir(Path(tmp), model_file)
        cfg = {**base, "models": {"fraud": {**base["models"]["fraud"], "path": str(versions),
                                            "version": "latest"}}}  # fmt: skip
        raw = _stream_config(cfg, opts, bootstrap, src, out, f"bench-{rid}-models",
                             {"delivery": delivery})  # fmt: skip
        col = Collector(bootstrap, out, committed=delivery == "exactly_once")
        col.start()
        phases = 3 if swap else 2
        n = int(opts.rate * opts.steady_s * phases)
        gen = Generator(Load(bootstrap, src, opts.rate, n, seed=11))
        proc, _ = start_flowing(raw, col.count, say, nudge=_nudge(bootstrap, src))
        with contextlib.closing(proc):
            t0 = gen.start()
            hups: list[int] = []
            if swap:
                shipped: list[tuple[str, bytes | Path]] = [
                    ("2", model_file),
                    ("3", b"not an ONNX model: a half-written file"),
                ]
                for k, (name, content) in enumerate(shipped):
                    _sleep_until_wall(t0 + int((k + 1) * opts.steady_s * 1e9))
                    _ship(versions, name, content)
                    hups.append(time.time_ns())
                    os.kill(_pid(proc), signal.SIGHUP)
                    say(f"  SIGHUP with version {name} ready")
            late_ms = gen.finish()
            expected = sum(_end_offsets(bootstrap, src).values())
            got = _wait_all(proc, col, expected, opts.drain_timeout_s)
            log_text = proc.log_path.read_text(errors="replace") if proc.log_path else ""
        col.close()
    stamps = input_stamps(bootstrap, src)
    return _evaluate_swap(delivery, swap, col.got, stamps, expected, got, hups, t0, opts,
                          "version 3 refused" in log_text, late_ms)  # fmt: skip


def _sleep_until_wall(t_ns: int) -> None:
    left = t_ns - time.time_ns()
    if left > 0:
        time.sleep(left / 1e9)


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"streamfer-bench-models-{uuid.uuid4().hex[:8]}"})  # fmt: skip
    try:
        return {p: consumer.get_watermark_offsets(CTP(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)}  # fmt: skip
    finally:
        consumer.close()


def _evaluate_swap(
    delivery: str, swap: bool, got: list[Decided], stamps: dict[tuple[int, int], int],
    expected: int, decided: int, hups: list[int], t0_ns: int, opts: ModelsOptions,
    refused_logged: bool, late_ms: float,
) -> SwapRun:  # fmt: skip
    first: dict[tuple[int, int], Decided] = {}
    for d in got:
        first.setdefault((d.partition, d.offset), d)
    uniq = sorted(first.values(), key=lambda d: d.append_ms)
    append = np.array([d.append_ms for d in uniq], dtype=np.float64)
    lat = np.array([d.append_ms - stamps.get((d.partition, d.offset), d.append_ms)
                    for d in uniq], dtype=np.float64)  # fmt: skip
    switched: dict[int, bool] = {}
    for p in range(PARTITIONS):
        names = [d.version for d in sorted(first.values(), key=lambda d: d.offset)
                 if d.partition == p]  # fmt: skip
        changes = sum(1 for a, b in itertools.pairwise(names) if a != b)
        switched[p] = changes == 1 and names[-1:] == ["2"] if swap else changes == 0
    warm_ms = t0_ns / 1e6 + 2000  # the first 2 s of load warm caches: not steady
    run = SwapRun(
        delivery, swap, expected, decided, len(got), len(got) - len(first), switched,
        math.nan, math.nan, math.nan, (math.nan, math.nan), refused_logged, math.nan, math.nan,
        sorted({d.version for d in uniq if hups[1:] and d.append_ms > hups[1] / 1e6}),
        late_ms,
    )  # fmt: skip
    if not swap:
        steady = append >= warm_ms
        run.p99_steady_ms = _p99(lat[steady])
        return run
    hup_ms, refuse_ms = hups[0] / 1e6, hups[1] / 1e6
    v2 = append[[d.version == "2" for d in uniq]]
    first_v2 = float(v2.min()) if v2.size else math.nan
    run.sighup_to_v2_s = (first_v2 - hup_ms) / 1e3
    lo, hi = hup_ms - 500, (first_v2 if v2.size else hup_ms) + 1000
    run.swap_window_s = ((lo - hup_ms) / 1e3, (hi - hup_ms) / 1e3)
    run.p99_swap_ms = _p99(lat[(append >= lo) & (append <= hi)])
    run.p99_steady_ms = _p99(lat[(append >= warm_ms) & (append < lo)])
    run.max_gap_refusal_ms = _max_gap(append, refuse_ms - 1000, refuse_ms + 2000)
    run.max_gap_steady_ms = _max_gap(append, warm_ms, lo)  # the whole steady phase
    is_v2 = np.array([d.version == "2" for d in uniq])
    for b in np.arange(lo, hi, 100.0):
        inside = (append >= b) & (append < b + 100)
        run.timeline.append((float((b - hup_ms) / 1e3), int((inside & ~is_v2).sum()),
                             int((inside & is_v2).sum()), _p99(lat[inside])))  # fmt: skip
    return run


# --- 3: shadow cost ---------------------------------------------------------------------------


@dataclass
class ShadowRun:
    kind: str  # "rate" or "drain"
    shadow: bool
    records: int
    decided: int
    p99_ms: float
    rate: float  # decisions/s (drain: from append times)
    cpu_us: float  # pipeline process CPU per record
    shadow_decisions: float
    shadow_infer_us: float  # shadow latency (inference + postprocess) per shadow decision
    stages_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # mean, p99


def _stages(got: list[Decided]) -> dict[str, tuple[float, float]]:
    """Mean and p99 of each stage of the decisions' own latency_ms."""
    table = np.array([d.stages_ms for d in got if d.stages_ms], dtype=np.float64)
    out: dict[str, tuple[float, float]] = {}
    for k, name in enumerate(STAGES):
        col = table[:, k][~np.isnan(table[:, k])] if table.size else np.empty(0)
        if col.size:
            out[name] = (float(col.mean()), float(np.percentile(col, 99)))
    return out


def _shadow_numbers(proc: PipelineProcess) -> tuple[float, float]:
    metrics = _scrape(proc)
    n = metrics.get("streamfer_shadow_decisions_total", 0.0)
    spent = metrics.get("streamfer_shadow_latency_seconds_sum", math.nan)
    return n, (spent / n * 1e6 if n else math.nan)


def shadow_rate_run(
    bootstrap: str, base: dict[str, Any], opts: ModelsOptions, topics: TopicSet, shadow: bool,
    seed: int, say: Say,
) -> ShadowRun:  # fmt: skip
    rid, src, out = _open_loop_topics(topics, "shadow")
    if shadow:
        topics.output(f"{out}.shadow", PARTITIONS)
    raw = _stream_config(base, opts, bootstrap, src, out, f"bench-{rid}-shadow", {}, shadow)
    col = Collector(bootstrap, out, committed=False)
    col.start()
    n = int(opts.rate * opts.shadow_rate_s)
    gen = Generator(Load(bootstrap, src, opts.rate, n, seed=seed))
    proc, _ = start_flowing(raw, col.count, say, nudge=_nudge(bootstrap, src))
    with contextlib.closing(proc):
        t0 = gen.start()
        cpu0, done0 = proc.cpu_seconds(), col.distinct()
        gen.finish()
        expected = sum(_end_offsets(bootstrap, src).values())
        got = _wait_all(proc, col, expected, opts.drain_timeout_s)
        cpu = proc.cpu_seconds() - cpu0
        sn, s_us = _shadow_numbers(proc) if shadow else (0.0, math.nan)
    col.close()
    stamps = input_stamps(bootstrap, src)
    warm_ms = t0 / 1e6 + 1000
    lat = np.array([d.append_ms - stamps[(d.partition, d.offset)] for d in col.got
                    if (d.partition, d.offset) in stamps and stamps[(d.partition, d.offset)]
                    >= warm_ms], dtype=np.float64)  # fmt: skip
    measured = max(got - done0, 1)
    return ShadowRun("rate", shadow, expected, got, _p99(lat), measured / opts.shadow_rate_s,
                     cpu / measured * 1e6, sn, s_us, _stages(col.got))  # fmt: skip


def shadow_drain_run(
    bootstrap: str, base: dict[str, Any], opts: ModelsOptions, topics: TopicSet, src: str,
    shadow: bool, say: Say,
) -> ShadowRun:  # fmt: skip
    rid = run_id()
    out = topics.output(f"bench-{rid}-drain-out", PARTITIONS)
    if shadow:
        topics.output(f"{out}.shadow", PARTITIONS)
    overrides = {"mode": "replay", "drop_stale": False, "latest_per_key": False}
    raw = _stream_config(base, opts, bootstrap, src, out, f"bench-{rid}-drain", overrides, shadow)
    col = Collector(bootstrap, out, committed=False)
    col.start()
    n = opts.drain_records
    proc, _ = start_flowing(raw, col.count, say)
    with contextlib.closing(proc):
        cpu0, done0 = proc.cpu_seconds(), col.distinct()
        got = _wait_all(proc, col, n, opts.drain_timeout_s * 3)
        cpu = proc.cpu_seconds() - cpu0
        sn, s_us = _shadow_numbers(proc) if shadow else (0.0, math.nan)
    col.close()
    span = topic_span(bootstrap, out, PARTITIONS)
    measured = max(got - done0, 1)
    return ShadowRun("drain", shadow, n, got, math.nan, span.rate, cpu / measured * 1e6, sn, s_us,
                     _stages(col.got))  # fmt: skip


# --- the whole benchmark ----------------------------------------------------------------------


@dataclass
class ModelsResult:
    swaps: list[SwapRun] = field(default_factory=list)
    shadows: list[ShadowRun] = field(default_factory=list)
    max_wait_ms: float = math.nan
    load_avg: list[tuple[float, float, float]] = field(default_factory=list)


def run_models(bootstrap: str, opts: ModelsOptions, command: str, say: Say) -> Report:
    base = load_raw(opts.config)
    machine = probe_machine()
    started = time.monotonic()
    stream = next(s for s in base["streams"] if s.get("kind") == "transaction")
    result = ModelsResult(
        max_wait_ms=float((stream.get("batching") or {}).get("max_wait_ms", math.nan))
    )
    with topic_set(bootstrap) as topics:
        for delivery, swap in (("at_least_once", True), ("exactly_once", True),
                               ("at_least_once", False)):  # fmt: skip
            say(f"swap run: {delivery}, {'swap + refusal' if swap else 'no swap'}")
            result.swaps.append(swap_run(bootstrap, base, opts, topics, delivery, swap, say))
            result.load_avg.append(os.getloadavg())
        for i in range(opts.repeats):
            for shadow in (False, True) if i % 2 == 0 else (True, False):
                say(f"shadow cost at {opts.rate:,.0f}/s: {'with' if shadow else 'without'}")
                result.shadows.append(
                    shadow_rate_run(bootstrap, base, opts, topics, shadow, 20 + i, say)
                )
        rid = run_id()
        src = topics.input(f"bench-{rid}-drain-in", PARTITIONS)
        topics.track(f"{src}.dlq")
        say(f"loading {opts.drain_records:,} transactions for the drains")
        produce_all(bootstrap, src, transaction_pool(opts.drain_records))
        for i in range(opts.repeats):
            for shadow in (False, True) if i % 2 == 0 else (True, False):
                say(f"shadow cost, drain: {'with' if shadow else 'without'}")
                result.shadows.append(shadow_drain_run(bootstrap, base, opts, topics, src,
                                                       shadow, say))  # fmt: skip
        result.load_avg.append(os.getloadavg())
    say(f"models benchmark done in {time.monotonic() - started:.0f} s")
    return models_report(result, opts, command, machine)


def _f(v: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(v) else f"{v:,.{digits}f}"


def models_report(result: ModelsResult, opts: ModelsOptions, command: str, machine: Machine
                  ) -> Report:  # fmt: skip
    after = probe_machine()
    swaps = [r for r in result.swaps if r.swap]
    plain = next((r for r in result.swaps if not r.swap), None)
    swap_rows = tuple(
        (r.delivery, "swap + refusal" if r.swap else "no swap", f"{r.records:,}",
         f"{r.records - r.decided:,}", f"{r.duplicates:,}",
         ("yes" if r.swap else "none (no swap)") if all(r.switched_once.values()) else
         f"no ({', '.join(str(p) for p, ok in r.switched_once.items() if not ok)})",
         _f(r.sighup_to_v2_s, 2), fmt_ms(r.p99_steady_ms), fmt_ms(r.p99_swap_ms),
         ",".join(r.versions_after_refusal) or "—", _f(r.max_gap_steady_ms, 0),
         _f(r.max_gap_refusal_ms, 0), _f(r.generator_late_ms, 1))
        for r in result.swaps
    )  # fmt: skip
    tables = [Table(
        f"Swap under load: {opts.rate:,.0f} tx/s Poisson, {PARTITIONS} partitions, "
        f"{opts.steady_s:g} s per phase; latency = record timestamp (scheduled send) -> "
        "decision LogAppendTime (ms)",
        ("delivery", "run", "records", "undecided", "duplicates",
         "each partition switched once, in offset order", "SIGHUP -> first v2 decision (s)",
         "p99 steady", "p99 swap window", "versions after v3 refused",
         "max gap steady (ms)", "max gap around refusal (ms)", "generator late max (ms)"),
        swap_rows,
    )]  # fmt: skip
    for r in swaps:
        tables.append(Table(
            f"Timeline of the swap ({r.delivery}): decisions per 100 ms by append time, "
            "t relative to SIGHUP",
            ("t (s)", "v1", "v2", "p99 (ms)"),
            tuple((f"{t:+.1f}", str(a), str(b), fmt_ms(p)) for t, a, b, p in r.timeline),
        ))  # fmt: skip
    rate = [s for s in result.shadows if s.kind == "rate"]
    drain = [s for s in result.shadows if s.kind == "drain"]

    def spread(runs: list[ShadowRun], shadow: bool, key: str) -> Spread:
        return Spread.of([getattr(s, key) for s in runs if s.shadow == shadow])

    shadow_rows = []
    for kind, runs, metric in (("1,000 tx/s" if opts.rate == 1000 else f"{opts.rate:,.0f} tx/s",
                                 rate, "p99_ms"), ("drain", drain, "rate")):  # fmt: skip
        for on in (False, True):
            shadow_rows.append((
                kind, "shadow 1.0" if on else "no shadow",
                spread(runs, on, metric).fmt(1 if metric == "p99_ms" else 0,
                                             " ms" if metric == "p99_ms" else "/s"),
                spread(runs, on, "cpu_us").fmt(1), spread(runs, on, "shadow_infer_us").fmt(1),
                ", ".join(f"{s.decided:,}/{s.records:,}" for s in runs if s.shadow == on),
            ))  # fmt: skip
    tables.append(Table(
        f"Shadow cost: {opts.repeats} interleaved runs each, median (min–max); CPU of the "
        "pipeline process per primary decision; the shadow's own cost = "
        "streamfer_shadow_latency_seconds (inference + postprocess) per shadow decision",
        ("load", "run", "p99 / throughput", "CPU µs/record", "shadow's own µs/record",
         "decided/records"),
        tuple(shadow_rows),
    ))  # fmt: skip
    stage_rows = []
    for kind, runs in (("fixed rate", rate), ("drain", drain)):
        for on in (False, True):
            picked = [s.stages_ms for s in runs if s.shadow == on]
            cells = []
            for name in STAGES:
                means = [st[name][0] for st in picked if name in st]
                p99s = [st[name][1] for st in picked if name in st]
                cells.append(f"{np.median(means):.2f} / {np.median(p99s):.1f}" if means else "—")
            stage_rows.append((kind, "shadow 1.0" if on else "no shadow", *cells))
    tables.append(Table(
        "Where the primary's time goes: its decisions' own latency_ms per stage, and their "
        "batch size, mean / p99 (median over the runs); a drain's records wait in the topic "
        "(broker) by design",
        ("load", "run", *STAGES), tuple(stage_rows),
    ))  # fmt: skip
    targets = []
    for r in swaps:
        targets += [
            Target(f"{r.delivery}: records without a decision", f"{r.records - r.decided}",
                   "0", r.records == r.decided),
            Target(f"{r.delivery}: duplicates", f"{r.duplicates}" + (
                   f" (no-swap run: {plain.duplicates})" if plain else ""),
                   "0" if r.delivery == "exactly_once" else "no more than without a swap",
                   r.duplicates == 0 if r.delivery == "exactly_once" or plain is None
                   else r.duplicates <= plain.duplicates),
            Target(f"{r.delivery}: each partition switched version once, in offset order",
                   "yes" if all(r.switched_once.values()) else "no", "yes",
                   all(r.switched_once.values())),
            Target(f"{r.delivery}: SIGHUP -> first decision of version 2",
                   f"{_f(r.sighup_to_v2_s, 2)} s", f"<= {SWAP_TARGET_S:g} s",
                   None if math.isnan(r.sighup_to_v2_s) else r.sighup_to_v2_s <= SWAP_TARGET_S),
            Target(f"{r.delivery}: p99 in the swap window vs steady",
                   f"{fmt_ms(r.p99_swap_ms)} vs {fmt_ms(r.p99_steady_ms)} ms", "<= 2x",
                   None if math.isnan(r.p99_swap_ms) else r.p99_swap_ms <= 2 * r.p99_steady_ms),
            Target(f"{r.delivery}: version 3 (corrupt) refused, version 2 keeps deciding",
                   f"logged: {'yes' if r.refused_logged else 'no'}; versions after: "
                   f"{','.join(r.versions_after_refusal) or '—'}", "refused; only 2",
                   r.refused_logged and r.versions_after_refusal == ["2"]),
            Target(f"{r.delivery}: longest gap between decisions around the refusal",
                   f"{_f(r.max_gap_refusal_ms, 0)} ms (steady: {_f(r.max_gap_steady_ms, 0)} ms)",
                   f"<= max_wait {result.max_wait_ms:g} ms + steady jitter "
                   f"(the steady phase's longest gap)",
                   None if math.isnan(r.max_gap_refusal_ms)
                   else r.max_gap_refusal_ms <= max(result.max_wait_ms, r.max_gap_steady_ms)),
        ]  # fmt: skip
    for kind, runs, metric, better in (
        ("p99 at the fixed rate", rate, "p99_ms", "low"),
        ("drain throughput", drain, "rate", "high"),
    ):
        base_s, on_s = spread(runs, False, metric), spread(runs, True, metric)
        ok = None
        if base_s.n and on_s.n:
            ok = on_s.median <= base_s.high if better == "low" else on_s.median >= base_s.low
        targets.append(Target(
            f"shadow: primary {kind}", f"{_f(on_s.median)} vs {base_s.fmt(1)}",
            "within the no-shadow runs' spread", ok,
        ))  # fmt: skip
    for kind, runs in (("fixed rate", rate), ("drain", drain)):
        extra = spread(runs, True, "cpu_us").median - spread(runs, False, "cpu_us").median
        own = spread(runs, True, "shadow_infer_us").median
        targets.append(Target(
            f"shadow: extra CPU per record ({kind})", f"{_f(extra)} µs (own cost {_f(own)} µs)",
            "<= shadow's own cost + 20 %",
            None if math.isnan(extra) or math.isnan(own) else extra <= own * 1.2,
        ))  # fmt: skip
    notes = [
        "swap window: from 0.5 s before the SIGHUP to 1 s after the first decision of version "
        "2 (by append time); steady: from 2 s after the load started to the window; the "
        "longest gap around the refusal is taken from 1 s before its SIGHUP to 2 s after, "
        "the steady one over the whole steady phase (gaps between consecutive decisions of "
        "all partitions, by append time, ms resolution)",
        "version 2 is the shipped model copied again (the same cost); version 3 is a file that "
        "is not ONNX; SIGHUP sent to `streamfer run` at the end of each phase",
        "the shadow is the same model again (sample 1.0); its decisions go to a side topic",
        "load generator, read-back and pipeline share the machine's cores; load average after "
        "each swap run and after the shadow runs: "
        + "; ".join("/".join(f"{x:.2f}" for x in la) for la in result.load_avg),
        f"load average at the end: {'/'.join(f'{x:.2f}' for x in after.load_avg)}",
    ]
    return Report("Model swap, refusal and shadow cost (fraud)", command, machine, tables,
                  targets, notes, raw={"models": asdict(result), "options": {
                      k: str(v) for k, v in asdict(opts).items()}})  # fmt: skip
