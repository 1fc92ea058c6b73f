"""Transaction scoring throughput: streamfer against the client limits and hand-written loops.

The same records (one seeded pool, loaded once into one input topic) go
through every system, each with its own consumer group and output topic,
run one after another and interleaved: every repetition runs all of them, in
a rotated order, so drift in the machine's load hits them alike. Throughput
is read from the broker's append times on each output topic; CPU time per
record from the process that does the work (this one for the loops, the
pipeline's for streamfer).

Systems (``--systems`` picks a subset):

* ``passthrough-kafka-python`` / ``passthrough-confluent``: consume and
  produce the same bytes, no model: the ceiling of each Kafka client;
* ``naive``: one record at a time (context only, fewer records);
* ``plain-loop``: the hand-written confluent-kafka batch loop (consume 500 →
  featurize → one model call → produce → flush → commit);
* ``tuned-loop``: the same loop tuned (orjson, consume 1,000, no flush per
  batch, a batch's offsets committed once its decisions are acknowledged);
* ``streamfer``: ``streamfer run`` with the config as shipped, and with
  ``--metrics-off`` also ``streamfer-metrics-off``;
* ``stateful-loop`` (only when named): a per-message stream-processing app with
  its own per-card state store (``streamfer.bench.stateful_loop``): consume
  one → featurize through a dict persisted to a changelog topic → one model
  call → produce; a checkpoint (flush, commit) every 200 ms;
* ``streamfer-state`` / ``streamfer-no-state`` (only when named): the config
  with its stream's ``state.enabled`` forced on (a fresh state directory and
  changelog per run) or off: the cost of the state store.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamfer.bench.baselines import (
    PASSTHROUGH_BATCH,
    PLAIN_BATCH,
    TUNED_BATCH,
    FraudModel,
    RdkafkaTuning,
    baseline_runner,
    run_confluent_passthrough,
    run_plain_loop,
    run_tuned_loop,
)
from streamfer.bench.kafka_io import OffsetProbe, produce_all, run_id, topic_set, topic_span
from streamfer.bench.machine import Machine, probe_machine
from streamfer.bench.naive import fraud_handler, fraud_runner
from streamfer.bench.passthrough import ClientTuning, Job, run_naive, run_passthrough
from streamfer.bench.pipeline_proc import (
    CONFIG_DIR,
    bench_config,
    load_raw,
    start_flowing,
    wait_decisions,
)
from streamfer.bench.records import transaction_pool
from streamfer.bench.report import Report, Table, Target
from streamfer.bench.stateful_loop import run_stateful_loop
from streamfer.bench.stats import Spread
from streamfer.engines.base import Runner
from streamfer.errors import ConfigError, StreamferError
from streamfer.pipeline.config import PipelineConfig

KP_PASS = "passthrough-kafka-python"
RK_PASS = "passthrough-confluent"
NAIVE = "naive"
PLAIN = "plain-loop"
TUNED = "tuned-loop"
STREAMFER = "streamfer"
METRICS_OFF = "streamfer-metrics-off"
STATE_ON = "streamfer-state"
STATE_OFF = "streamfer-no-state"
STATEFUL = "stateful-loop"
SYSTEMS = (KP_PASS, RK_PASS, NAIVE, PLAIN, TUNED, STREAMFER)  # the default run, in this order
ALL_SYSTEMS = (*SYSTEMS, STATEFUL, METRICS_OFF, STATE_ON, STATE_OFF)

# the targets for streamfer, measured side by side in one run
TARGET_RATE = 40_000.0  # records/s at least
TARGET_CPU_US = 40.0  # CPU µs per record at most
TARGET_VS_TUNED = 0.9  # of the tuned hand-written loop, at least
TARGET_VS_PLAIN = 1.8  # times the plain hand-written loop, at least
TARGET_VS_STATEFUL = 3.5  # times the per-message stateful loop, at least

Say = Callable[[str], None]


def parse_systems(text: str) -> tuple[str, ...]:
    """``"plain-loop,streamfer"`` -> the named systems in run order; ConfigError on a typo."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in ALL_SYSTEMS]
    if unknown or not names:
        raise ConfigError(
            f"systems | got {text!r}. Note: expected a comma-separated subset of "
            f"{', '.join(ALL_SYSTEMS)}"
        )
    return tuple(s for s in ALL_SYSTEMS if s in names)


@dataclass(frozen=True)
class ScoringOptions:
    records: int = 100_000
    naive_records: int = 2_000
    repeats: int = 3
    config: Path = CONFIG_DIR / "fraud.yaml"
    timeout_s: float = 180.0
    keep_topics: bool = False
    metrics_off: bool = False  # also run the pipeline with metrics disabled
    only: tuple[str, ...] = ()  # a subset of ALL_SYSTEMS; empty: SYSTEMS

    @property
    def systems(self) -> tuple[str, ...]:
        chosen = set(self.only or SYSTEMS)
        if self.metrics_off:
            chosen.add(METRICS_OFF)
        return tuple(s for s in ALL_SYSTEMS if s in chosen)

    def records_for(self, system: str) -> int:
        return min(self.naive_records, self.records) if system == NAIVE else self.records


@dataclass(frozen=True)
class Run:
    system: str
    rep: int
    records: int
    rate: float  # records/s from output append times
    span_s: float
    cpu_us_per_record: float  # process CPU time (all threads) per record


@dataclass
class _Systems:
    """What the systems under test need, set up once per benchmark run."""

    bootstrap: str
    in_topic: str
    base: dict[str, Any]
    cfg: PipelineConfig
    opts: ScoringOptions
    say: Say
    kp_tuning: ClientTuning
    rk_tuning: RdkafkaTuning
    naive_runner: Runner | None = None  # active, when naive runs
    model: FraudModel | None = None  # when a hand-written model loop runs
    changelog: Callable[[str], str] | None = None  # group -> a fresh changelog topic
    restarts: int = 0
    runs: list[Run] = field(default_factory=list)

    def run(self, system: str, out: str, group: str, n: int) -> float:
        """Run ``system`` on the first ``n`` records into ``out``; its CPU seconds."""
        job = Job(self.bootstrap, self.in_topic, out, n, group, self.opts.timeout_s)
        if system == KP_PASS:
            return run_passthrough(job, self.kp_tuning).cpu_s
        if system == NAIVE:  # a fresh handler: featurizer state starts empty, as everywhere
            assert self.naive_runner is not None  # set up by run_scoring whenever naive runs
            handle = fraud_handler(self.cfg, self.naive_runner)
            return run_naive(job, self.kp_tuning, handle).cpu_s
        if system == RK_PASS:
            return run_confluent_passthrough(job, self.rk_tuning).cpu_s
        if system in (PLAIN, TUNED):
            assert self.model is not None  # set up by run_scoring whenever a model loop runs
            loop = run_plain_loop if system == PLAIN else run_tuned_loop
            return loop(job, self.rk_tuning, self.model).cpu_s
        if system == STATEFUL:
            assert self.model is not None and self.changelog is not None
            return run_stateful_loop(job, self.rk_tuning, self.model, self.changelog(group)).cpu_s
        state = {STATE_ON: True, STATE_OFF: False}.get(system)
        restarts, cpu = _run_pipeline(self, out, group, n, system != METRICS_OFF, state)
        self.restarts += restarts
        return cpu


def _check_complete(system: str, got: int, want: int) -> None:
    if got < want:
        raise StreamferError(
            f"{system} | {got} of {want} outputs appeared. Note: every record must get one"
        )


def run_scoring(bootstrap: str, opts: ScoringOptions, command: str, say: Say) -> Report:
    base = load_raw(opts.config)
    rid = run_id()
    machine_before = probe_machine()
    with topic_set(bootstrap, keep=opts.keep_topics) as topics, ExitStack() as engines:
        in_topic = topics.input(f"bench-{rid}-tx")
        topics.track(f"{in_topic}.dlq")
        say(f"loading {opts.records:,} transactions into {in_topic}")
        produce_all(bootstrap, in_topic, transaction_pool(opts.records, seed=0))
        _, cfg = bench_config(
            base, source=str(opts.config), kind="transaction", bootstrap=bootstrap,
            input_topic=in_topic, output_topic=f"{in_topic}.unused", group="unused",
        )  # fmt: skip
        ctx = _Systems(bootstrap, in_topic, base, cfg, opts, say,
                       ClientTuning.from_config(cfg), RdkafkaTuning.from_config(cfg))  # fmt: skip
        if NAIVE in opts.systems:
            ctx.naive_runner = engines.enter_context(fraud_runner(cfg))
        if {PLAIN, TUNED, STATEFUL} & set(opts.systems):
            ctx.model = FraudModel.of(cfg, engines.enter_context(baseline_runner(cfg)))
        ctx.changelog = lambda group: topics.input(f"{group}.cards.state")
        for rep in range(opts.repeats):
            k = rep % len(opts.systems)
            for system in opts.systems[k:] + opts.systems[:k]:
                out = topics.output(f"bench-{rid}-{system}-{rep}")
                group = f"bench-{rid}-{system}-{rep}"
                topics.track(cfg.streams[0].state_topic(group))  # made by a stateful pipeline
                n = opts.records_for(system)
                cpu = ctx.run(system, out, group, n)
                span = topic_span(bootstrap, out)
                _check_complete(system, span.count, n)
                run = Run(system, rep, span.count, span.rate, span.seconds, cpu * 1e6 / n)
                ctx.runs.append(run)
                say(f"rep {rep + 1}/{opts.repeats} {system:>24}: {span.rate:>9,.0f} records/s, "
                    f"{run.cpu_us_per_record:6.1f} µs CPU/record")  # fmt: skip
    report = _report(ctx.runs, opts, command, machine_before, ctx.rk_tuning)
    if ctx.restarts:
        report.notes.append(
            f"the pipeline had to be restarted {ctx.restarts} time(s): it got no "
            "partitions within 30 s of starting (outside the measured span)"
        )
    return report


def _run_pipeline(
    ctx: _Systems, out: str, group: str, n: int, metrics: bool = True, state: bool | None = None
) -> tuple[int, float]:
    """``state``: force the stream's state store on or off (None: as the config says)."""
    with ExitStack() as stack:
        overrides = None
        if state is not None:
            where = stack.enter_context(tempfile.TemporaryDirectory(prefix="streamfer-state-"))
            overrides = {"state": {"enabled": state, "dir": where}}
        raw, _ = bench_config(
            ctx.base, source=str(ctx.opts.config), kind="transaction", bootstrap=ctx.bootstrap,
            input_topic=ctx.in_topic, output_topic=out, group=group, metrics_enabled=metrics,
            overrides=overrides,
        )  # fmt: skip
        return _run_flowing(ctx, raw, out, n)


def _run_flowing(ctx: _Systems, raw: dict[str, Any], out: str, n: int) -> tuple[int, float]:
    with OffsetProbe(ctx.bootstrap, out) as probe:
        proc, restarts = start_flowing(raw, probe.count, ctx.say)
        try:
            cpu0 = proc.cpu_seconds()
            got = wait_decisions(proc, probe.count, n, ctx.opts.timeout_s)
            cpu = proc.cpu_seconds() - cpu0
        finally:
            proc.stop()
        _check_complete(STREAMFER, got, n)
    return restarts, cpu


# (numerator, denominator, digits): the ratios reported when both systems ran
_RATIOS = (
    (STREAMFER, TUNED, 2),
    (STREAMFER, PLAIN, 2),
    (STREAMFER, RK_PASS, 2),
    (STREAMFER, KP_PASS, 2),
    (STREAMFER, NAIVE, 1),
    (TUNED, PLAIN, 2),
    (RK_PASS, KP_PASS, 1),
    (METRICS_OFF, STREAMFER, 2),
    (STATE_ON, STATE_OFF, 2),
    (STATE_OFF, TUNED, 2),
    (STATE_OFF, PLAIN, 2),
    (STATE_ON, TUNED, 2),
    (STREAMFER, STATEFUL, 2),
    (STATE_ON, STATEFUL, 2),
)


def _per_rep(rate: dict[tuple[str, int], float], a: str, b: str, reps: list[int]) -> list[float]:
    return [rate[(a, k)] / rate[(b, k)] for k in reps]


def _report(
    runs: list[Run], opts: ScoringOptions, command: str, machine: Machine, rk: RdkafkaTuning
) -> Report:
    after = probe_machine()
    systems = opts.systems
    reps = sorted({r.rep for r in runs})
    rate = {(r.system, r.rep): r.rate for r in runs}
    rates = {s: Spread.of([rate[(s, k)] for k in reps]) for s in systems}
    cpus = {s: Spread.of([r.cpu_us_per_record for r in runs if r.system == s]) for s in systems}
    rows = tuple(
        (s, f"{opts.records_for(s):,}", *[f"{rate[(s, k)]:,.0f}" for k in reps], rates[s].fmt())
        for s in systems
    )
    table = Table(
        "Transaction scoring throughput (records/s from output append times)",
        ("system", "records per run", *[f"run {k + 1}" for k in reps], "median (min–max)"),
        rows,
    )
    cpu_table = Table(
        "CPU time per record (µs, user + system, all threads of the process; less sensitive to "
        "other load than the rates)",
        ("system", "median (min–max)"),
        tuple((s, cpus[s].fmt(1)) for s in systems),
    )
    ratio_rows = []
    vs: dict[tuple[str, str], Spread] = {}
    for a, b, digits in _RATIOS:
        if a in systems and b in systems:
            values = _per_rep(rate, a, b, reps)
            vs[(a, b)] = Spread.of(values)
            label = {(METRICS_OFF, STREAMFER): "metrics off / metrics on",
                     (STATE_ON, STATE_OFF): "state store on / off"}.get((a, b))  # fmt: skip
            label = label or f"{a} / {b}"
            ratio_rows.append((label, *[f"{v:.{digits}f}" for v in values],
                               vs[(a, b)].fmt(digits)))  # fmt: skip
    ratios = Table(
        "Ratios of records/s, per repetition (measured side by side)",
        ("ratio", *[f"run {k + 1}" for k in reps], "median (min–max)"),
        tuple(ratio_rows),
    )
    tables = [table, *([ratios] if ratio_rows else []), cpu_table]
    return Report(
        "Transaction scoring throughput",
        command,
        machine,
        tables,
        _targets(systems, rates, cpus, vs),
        _notes(opts, after, rk),
        raw={
            "runs": [r.__dict__ for r in runs],
            "options": {k: str(v) for k, v in opts.__dict__.items()},
        },
    )


def _target(name: str, spread: Spread | None, fmt: str, required: str,
            ok: Callable[[float], bool]) -> Target:  # fmt: skip
    if spread is None or math.isnan(spread.median):
        return Target(name, "n/a", required, None)
    return Target(name, fmt.format(spread.median), required, ok(spread.median))


def _targets(
    systems: tuple[str, ...], rates: dict[str, Spread], cpus: dict[str, Spread],
    vs: dict[tuple[str, str], Spread],
) -> list[Target]:  # fmt: skip
    """The issue's targets for ``streamfer`` (the config as shipped) and, when it ran, for
    ``streamfer-no-state``: the same work as the loops, whose card history is in memory."""
    out: list[Target] = []
    for system in (STREAMFER, STATE_OFF):
        ran = system in systems
        if system == STATE_OFF and not ran:
            continue
        out += [
            _target(f"{system} throughput", rates[system] if ran else None, "{:,.0f}/s",
                    f">= {TARGET_RATE:,.0f}/s", lambda v: v >= TARGET_RATE),
            _target(f"{system} CPU per record", cpus[system] if ran else None, "{:.1f} µs",
                    f"<= {TARGET_CPU_US:g} µs", lambda v: v <= TARGET_CPU_US),
            _target(f"{system} vs tuned loop", vs.get((system, TUNED)), "{:.0%}",
                    f">= {TARGET_VS_TUNED:.0%}", lambda v: v >= TARGET_VS_TUNED),
            _target(f"{system} vs plain loop", vs.get((system, PLAIN)), "{:.2f}x",
                    f">= {TARGET_VS_PLAIN:g}x", lambda v: v >= TARGET_VS_PLAIN),
        ]  # fmt: skip
        if STATEFUL in systems and system == STREAMFER and ran:
            out.append(_target(f"{system} vs per-message stateful loop",
                               vs.get((system, STATEFUL)), "{:.2f}x",
                               f">= {TARGET_VS_STATEFUL:g}x",
                               lambda v: v >= TARGET_VS_STATEFUL))  # fmt: skip
    return out


def _notes(opts: ScoringOptions, after: Machine, rk: RdkafkaTuning) -> list[str]:
    systems = opts.systems
    notes = [f"load average after the run: {'/'.join(f'{x:.2f}' for x in after.load_avg)}"]
    described = {
        KP_PASS: "passthrough-kafka-python: kafka-python with the pipeline config's consumer and "
        "producer settings, no model; sends pipelined, offsets committed every commit interval "
        "up to what is acked.",
        RK_PASS: f"passthrough-confluent: confluent-kafka, consume {PASSTHROUGH_BATCH:,} → "
        "produce the same key, value and headers with a per-batch delivery callback, no model; "
        "a batch's offsets committed (async) once it and every batch before it are acked.",
        NAIVE: "naive: kafka-python, poll 1 record, decode, featurize, engine at batch 1, "
        "produce and wait for the ack, commit synchronously; runs on the first "
        f"{opts.records_for(NAIVE):,} of the same records (context only).",
        PLAIN: f"plain-loop: confluent-kafka, consume {PLAIN_BATCH} → json.loads each → "
        "FraudFeaturizer.transform each → one model call → DecisionEncoder per partition run → "
        "produce → flush() → synchronous commit of the batch's offsets.",
        TUNED: f"tuned-loop: confluent-kafka, consume {TUNED_BATCH:,} → orjson.loads each → "
        "featurize each → one model call → DecisionEncoder per partition run → produce with a "
        "per-batch delivery callback counting acks; no flush per batch; a batch's offsets "
        "committed (async) once its decisions and every earlier batch's are acked.",
        STATEFUL: "stateful-loop: confluent-kafka, consume 1 → orjson.loads → "
        "FraudFeaturizer.transform against its own card store (a dict; the card's state "
        "encoded and produced to a changelog topic, keyed by card, after each record) → one "
        "model call at batch 1 → decision + orjson.dumps → produce; every 200 ms flush() "
        "then a synchronous commit of the consumed offsets.",
        STREAMFER: f"streamfer: `streamfer run` with {opts.config.name} as shipped (its default "
        "client; only topics, group and metrics port rewritten); start-up is outside the "
        "measured span.",
    }
    notes += [text for s, text in described.items() if s in systems]
    if RK_PASS in systems or PLAIN in systems or TUNED in systems:
        notes.append(f"confluent-kafka loops' client settings: {rk.describe()}.")
    if PLAIN in systems or TUNED in systems:
        notes.append(
            "plain-loop and tuned-loop: the config's featurizer, model file, engine target and "
            "thresholds (decisions with the same results as streamfer's, latencies null), "
            "ONNX Runtime with 1 intra-op thread unless the config names one (its default pool "
            "spins idle workers after each call); no field validation or dead-letter queue: "
            "bad input would stop them, uncommitted. At-least-once, as streamfer."
        )
    notes.append("CPU per record: time.process_time() of the benchmark process for the loops "
                 "(first record to last ack), /proc of the pipeline process for streamfer "
                 "(from its first output on).")  # fmt: skip
    return notes
