"""Transaction scoring throughput: pass-through limit vs naive loop vs streamfer.

The same records (one seeded pool, loaded once into one input topic) go
through three systems, each with its own consumer group and output topic,
run one after another and interleaved: every repetition runs all three, in a
rotated order, so drift in the machine's load hits them alike. Throughput is
read from the broker's append times on each output topic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.kafka_io import OffsetProbe, produce_all, run_id, topic_set, topic_span
from bench.machine import probe_machine
from bench.naive import fraud_handler, fraud_runner
from bench.passthrough import ClientTuning, run_naive, run_passthrough
from bench.pipeline_proc import (
    CONFIG_DIR,
    bench_config,
    load_raw,
    start_flowing,
    wait_decisions,
)
from bench.records import transaction_pool
from bench.report import Report, Table, Target
from bench.stats import Spread
from streamfer.errors import StreamferError

SYSTEMS = ("pass-through", "naive", "streamfer")
METRICS_OFF = "streamfer, metrics off"
Say = Callable[[str], None]


@dataclass(frozen=True)
class ScoringOptions:
    records: int = 50_000
    naive_records: int = 2_000
    repeats: int = 3
    config: Path = CONFIG_DIR / "fraud.yaml"
    timeout_s: float = 180.0
    keep_topics: bool = False
    metrics_off: bool = False  # also run the pipeline with metrics disabled

    @property
    def systems(self) -> tuple[str, ...]:
        return (*SYSTEMS, METRICS_OFF) if self.metrics_off else SYSTEMS


@dataclass(frozen=True)
class Run:
    system: str
    rep: int
    records: int
    rate: float  # records/s from output append times
    span_s: float
    cpu_us_per_record: float  # process CPU time (all threads) per record


def _check_complete(system: str, got: int, want: int) -> None:
    if got < want:
        raise StreamferError(
            f"{system} | {got} of {want} outputs appeared. Note: every record must get one"
        )


def run_scoring(bootstrap: str, opts: ScoringOptions, command: str, say: Say) -> Report:
    base = load_raw(opts.config)
    rid = run_id()
    runs: list[Run] = []
    restarts = 0
    machine_before = probe_machine()
    with topic_set(bootstrap, keep=opts.keep_topics) as topics:
        in_topic = topics.input(f"bench-{rid}-tx")
        topics.track(f"{in_topic}.dlq")
        say(f"loading {opts.records:,} transactions into {in_topic}")
        produce_all(bootstrap, in_topic, transaction_pool(opts.records, seed=0))
        _, cfg = bench_config(
            base, source=str(opts.config), kind="transaction", bootstrap=bootstrap,
            input_topic=in_topic, output_topic="unused", group="unused",
        )  # fmt: skip
        tuning = ClientTuning.from_config(cfg)
        runner = fraud_runner(cfg)
        runner.activate()
        try:
            handle = fraud_handler(cfg, runner)
            for rep in range(opts.repeats):
                systems = opts.systems
                k = rep % len(systems)
                order = systems[k:] + systems[:k]
                for system in order:
                    slug = system.replace(",", "").replace(" ", "-")
                    out = topics.output(f"bench-{rid}-{slug}-{rep}")
                    group = f"bench-{rid}-{slug}-{rep}"
                    n = opts.naive_records if system == "naive" else opts.records
                    n = min(n, opts.records)
                    if system == "pass-through":
                        cpu = run_passthrough(
                            bootstrap, in_topic, out, n, group, tuning, opts.timeout_s
                        ).cpu_s
                    elif system == "naive":
                        cpu = run_naive(
                            bootstrap, in_topic, out, n, group, tuning, handle, opts.timeout_s
                        ).cpu_s
                    else:
                        k, cpu = _run_pipeline(bootstrap, base, opts, in_topic, out, group, n,
                                               say, metrics=system != METRICS_OFF)  # fmt: skip
                        restarts += k
                    span = topic_span(bootstrap, out)
                    _check_complete(system, span.count, n)
                    runs.append(Run(system, rep, span.count, span.rate, span.seconds,
                                    cpu * 1e6 / n))  # fmt: skip
                    say(f"rep {rep + 1}/{opts.repeats} {system:>12}: {span.rate:,.0f} records/s")
        finally:
            runner.deactivate()
    report = _report(runs, opts, command, machine_before)
    if restarts:
        report.notes.append(
            f"the pipeline had to be restarted {restarts} time(s): it got no "
            "partitions within 30 s of starting (outside the measured span)"
        )
    return report


def _run_pipeline(
    bootstrap: str, base: dict, opts: ScoringOptions, in_topic: str, out: str, group: str, n: int,
    say: Say, metrics: bool = True,
) -> tuple[int, float]:  # fmt: skip
    raw, _ = bench_config(
        base, source=str(opts.config), kind="transaction", bootstrap=bootstrap,
        input_topic=in_topic, output_topic=out, group=group, metrics_enabled=metrics,
    )  # fmt: skip
    with OffsetProbe(bootstrap, out) as probe:
        proc, restarts = start_flowing(raw, probe.count, say)
        try:
            cpu0 = proc.cpu_seconds()
            got = wait_decisions(proc, probe.count, n, opts.timeout_s)
            cpu = proc.cpu_seconds() - cpu0
        finally:
            proc.stop()
        _check_complete("streamfer", got, n)
    return restarts, cpu


def _report(runs: list[Run], opts: ScoringOptions, command: str, machine: object) -> Report:
    from bench.machine import Machine, probe_machine

    assert isinstance(machine, Machine)
    after = probe_machine()
    by: dict[str, list[float]] = {s: [r.rate for r in runs if r.system == s] for s in opts.systems}
    spreads = {s: Spread.of(v) for s, v in by.items()}
    reps = sorted({r.rep for r in runs})
    rate = {(r.system, r.rep): r.rate for r in runs}
    vs_pass = [rate[("streamfer", k)] / rate[("pass-through", k)] for k in reps]
    vs_naive = [rate[("streamfer", k)] / rate[("naive", k)] for k in reps]
    table = Table(
        "Transaction scoring throughput (records/s from output append times)",
        ("system", "records per run", *[f"run {k + 1}" for k in reps], "median (min–max)"),
        tuple(
            (
                s,
                f"{opts.naive_records if s == 'naive' else opts.records:,}",
                *[f"{rate[(s, k)]:,.0f}" for k in reps],
                spreads[s].fmt(),
            )
            for s in opts.systems
        ),
    )
    cpu = {s: Spread.of([r.cpu_us_per_record for r in runs if r.system == s]) for s in opts.systems}
    cpu_table = Table(
        "CPU time per record (µs, user + system, all threads of the process; less sensitive to "
        "other load than the rates)",
        ("system", "median (min–max)"),
        tuple((s, cpu[s].fmt()) for s in opts.systems),
    )
    ratios = Table(
        "Ratios, per repetition (measured side by side)",
        ("ratio", *[f"run {k + 1}" for k in reps], "median (min–max)"),
        (
            ("streamfer / pass-through", *[f"{v:.2f}" for v in vs_pass], Spread.of(vs_pass).fmt(2)),
            ("streamfer / naive", *[f"{v:.1f}" for v in vs_naive], Spread.of(vs_naive).fmt(1)),
        ),
    )
    if opts.metrics_off:
        off = [rate[(METRICS_OFF, k)] / rate[("streamfer", k)] for k in reps]
        ratios = Table(ratios.title, ratios.columns, (
            *ratios.rows,
            ("metrics off / metrics on", *[f"{v:.2f}" for v in off], Spread.of(off).fmt(2)),
        ))  # fmt: skip
    med_pass, med_naive = Spread.of(vs_pass).median, Spread.of(vs_naive).median
    targets = [
        Target("throughput vs pass-through", f"{med_pass:.0%}", ">= 80%",
               None if math.isnan(med_pass) else med_pass >= 0.8),
        Target("throughput vs naive", f"{med_naive:.1f}x", ">= 10x",
               None if math.isnan(med_naive) else med_naive >= 10),
    ]  # fmt: skip
    notes = [
        f"load average after the run: {'/'.join(f'{x:.2f}' for x in after.load_avg)}",
        "pass-through: same kafka-python client and consumer/producer settings as the "
        "pipeline config, no model; sends pipelined, offsets committed every commit interval "
        "up to what is acked.",
        "naive: poll 1 record, decode, featurize, engine at batch 1, produce and wait for "
        "the ack, commit synchronously; runs on the first "
        f"{opts.naive_records:,} of the same records.",
        f"streamfer: `streamfer run` with {opts.config.name} as shipped (only topics, group "
        "and metrics port rewritten); start-up is outside the measured span.",
    ]
    return Report(
        "Transaction scoring throughput",
        command,
        machine,
        [table, ratios, cpu_table],
        targets,
        notes,
        raw={
            "runs": [r.__dict__ for r in runs],
            "options": {k: str(v) for k, v in opts.__dict__.items()},
        },
    )
