"""Server scenario (after MLPerf LoadGen's Server): open-loop Poisson at rising rates.

1. Capacity probe: the pipeline (mode ``replay``, nothing dropped) drains a
   preloaded backlog; its rate from output append times is the maximum
   throughput the ladder is scaled to (or give ``--max-rate``).
2. Ladder: the pipeline runs the shipped config as it is (camera: realtime,
   stale frames dropped). By default 25, 50, 50, 50, 75 and 100 % of the
   maximum, so the target at 50 % is judged on three runs with their spread.
   Before the next point starts, the pipeline must have committed everything
   sent so far (nothing in flight), so an overloaded point cannot spill into
   the next one. Each point sends Poisson arrivals at one rate for
   ``max(min duration, min records / rate)``, within the command's time budget,
   and measures scheduled send -> decision read back. A record without a
   decision (dropped, lost, or later than the drain timeout) counts as
   infinitely late, so a p99 with more than 1 % missing is never met.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streamfer.bench.kafka_io import (
    GroupLag,
    OffsetProbe,
    bulk_producer,
    produce_all,
    run_id,
    topic_set,
    topic_span,
)
from streamfer.bench.loadgen import LoadSpec, Readback, run_point
from streamfer.bench.machine import probe_machine
from streamfer.bench.pipeline_proc import (
    CONFIG_DIR,
    bench_config,
    load_raw,
    start_flowing,
    wait_decisions,
)
from streamfer.bench.records import camera_headers, camera_pool, stamped, transaction_pool
from streamfer.bench.report import Report, Table, Target
from streamfer.bench.stats import Spread, fmt_ms, fmt_rate, percentiles_ms
from streamfer.errors import StreamferError

Say = Callable[[str], None]
LOST = np.iinfo(np.int64).max


@dataclass(frozen=True)
class KindSetup:
    kind: str
    config: Path
    bound_ms: float
    pool: str  # "module:function" for the load generator
    header_hook: str | None
    pool_size: int
    probe_records: int
    fractions: tuple[float, ...]
    budget_s: float  # for the ladder points, so the default run stays under 10 minutes


# Rising rates, the 50 % point three times: the latency target is judged on three runs.
LADDER = (0.25, 0.5, 0.5, 0.5, 0.75, 1.0)
SETUPS = {
    "transaction": KindSetup(
        "transaction", CONFIG_DIR / "fraud.yaml", 25.0,
        "streamfer.bench.records:transaction_pool", None,
        20_000, 30_000, LADDER, 400.0,
    ),
    "camera": KindSetup(
        "camera", CONFIG_DIR / "camera.yaml", 100.0, "streamfer.bench.records:camera_pool",
        "streamfer.bench.records:camera_headers", 64, 1200, LADDER, 400.0,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ServerOptions:
    kind: str = "transaction"
    config: Path | None = None
    max_rate: float | None = None  # skip the probe
    fractions: tuple[float, ...] | None = None
    rates: tuple[float, ...] | None = None  # explicit ladder, overrides fractions
    min_duration_s: float = 60.0
    min_records: int = 25_000
    budget_s: float | None = None
    probe_records: int | None = None
    drain_timeout_s: float = 20.0
    settle_timeout_s: float = 90.0
    keep_topics: bool = False
    repeats: int = 1


@dataclass
class PointResult:
    offered_rate: float
    records: int
    duration_s: float
    decided: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    p99_decided_ms: float
    gen_late_p99_ms: float
    within_bound: bool
    fraction: float | None = None
    settled: bool = True
    stages_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # mean, p99


@dataclass
class ServerResult:
    kind: str
    bound_ms: float
    max_rate: float
    max_rate_source: str
    points: list[PointResult] = field(default_factory=list)


def _pool(setup: KindSetup, n: int) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    if setup.kind == "camera":
        return stamped(camera_pool(min(n, setup.pool_size)), n)
    return transaction_pool(n)


def probe_capacity(
    bootstrap: str, base: dict, setup: KindSetup, cfg_path: Path, n: int, rid: str, topics: object,
    say: Say,
) -> float:  # fmt: skip
    """Records/s of the pipeline (replay mode) draining a backlog of ``n`` records."""
    from streamfer.bench.kafka_io import TopicSet

    assert isinstance(topics, TopicSet)
    in_topic = topics.input(f"bench-{rid}-{setup.kind}-probe")
    topics.track(f"{in_topic}.dlq")
    out = topics.output(f"bench-{rid}-{setup.kind}-probe-out")
    say(f"capacity probe: loading {n:,} {setup.kind} records")
    produce_all(bootstrap, in_topic, _pool(setup, n))
    raw, _ = bench_config(
        base, source=str(cfg_path), kind=setup.kind, bootstrap=bootstrap, input_topic=in_topic,
        output_topic=out, group=f"bench-{rid}-probe", overrides={"mode": "replay",
        "drop_stale": False, "latest_per_key": False},
    )  # fmt: skip
    with OffsetProbe(bootstrap, out) as probe:
        proc, _ = start_flowing(raw, probe.count, say)
        try:
            got = wait_decisions(proc, probe.count, n, timeout_s=240)
        finally:
            proc.stop()
    if got < n:
        raise StreamferError(f"capacity probe | {got} of {n} decisions. Note: expected all")
    rate = topic_span(bootstrap, out).rate
    if not rate > 0:
        raise StreamferError(
            f"capacity probe | {n} records were decided too quickly to time "
            f"(rate {rate}). Note: give more --probe-records or a --max-rate"
        )
    say(f"capacity probe: {rate:,.0f} records/s")
    return rate


def _point_duration(opts: ServerOptions, rate: float, budget_left: float, left: int) -> float:
    want = max(opts.min_duration_s, opts.min_records / rate)
    share = budget_left / max(left, 1) - 5.0  # a few seconds per point for set-up and drain
    return max(1.0, min(want, share))


def _evaluate(
    rate: float, lat: np.ndarray, late: np.ndarray, bound_ms: float, duration_s: float
) -> PointResult:
    strict = np.where(lat < 0, LOST, lat)
    p50, p99, p999 = percentiles_ms(strict, (50, 99, 99.9))
    p50, p99, p999 = (math.inf if v >= LOST / 1e6 else v for v in (p50, p99, p999))
    decided = lat[lat >= 0]
    p99_dec = percentiles_ms(decided, (99,))[0] if decided.size else math.nan
    gen_p99 = percentiles_ms(late, (99,))[0]
    return PointResult(
        rate, int(lat.size), duration_s, int(decided.size), p50, p99, p999, p99_dec, gen_p99,
        p99 <= bound_ms,
    )  # fmt: skip


def run_server(bootstrap: str, opts: ServerOptions, command: str, say: Say) -> Report:
    setup = SETUPS[opts.kind]
    cfg_path = opts.config or setup.config
    base = load_raw(cfg_path)
    machine = probe_machine()
    rid = run_id()
    started = time.monotonic()
    with topic_set(bootstrap, keep=opts.keep_topics) as topics:
        if opts.max_rate is not None:
            max_rate, source = opts.max_rate, "given (--max-rate)"
        else:
            n = opts.probe_records or setup.probe_records
            max_rate = probe_capacity(bootstrap, base, setup, cfg_path, n, rid, topics, say)
            source = f"measured: replay-mode drain of {n:,} preloaded records"
        result = ServerResult(setup.kind, setup.bound_ms, max_rate, source)
        ladder: list[tuple[float, float | None]]
        if opts.rates:
            ladder = [(r, None) for r in opts.rates]
        else:
            ladder = [(f * max_rate, f) for f in (opts.fractions or setup.fractions)]
        ladder = ladder * opts.repeats  # repeated ladders interleave their points
        in_topic = topics.input(f"bench-{rid}-{setup.kind}-in")
        topics.track(f"{in_topic}.dlq")
        out = topics.output(f"bench-{rid}-{setup.kind}-out")
        raw, _ = bench_config(
            base, source=str(cfg_path), kind=setup.kind, bootstrap=bootstrap,
            input_topic=in_topic, output_topic=out, group=f"bench-{rid}-server",
        )  # fmt: skip
        readback = Readback(bootstrap, out)
        readback.start()
        lag = GroupLag(bootstrap, in_topic, f"bench-{rid}-server")
        say("waiting for the pipeline to decide its first record")
        with _Nudger(bootstrap, in_topic, setup) as nudge:
            proc, _ = start_flowing(raw, readback.count, say, nudge=nudge)
        with contextlib.closing(proc):
            _warm_up(bootstrap, in_topic, setup, ladder[0][0], readback, lag.lag)
            budget = opts.budget_s or setup.budget_s
            t_ladder = time.monotonic()
            for i, (rate, frac) in enumerate(ladder):
                left = budget - (time.monotonic() - t_ladder)
                duration = _point_duration(opts, rate, left, len(ladder) - i)
                n = max(10, int(rate * duration))
                say(f"point {i + 1}/{len(ladder)}: {rate:,.0f}/s for {duration:.0f} s ({n:,})")
                spec = LoadSpec(
                    bootstrap, in_topic, rate, n, setup.pool, setup.pool_size, seed=i,
                    header_hook=setup.header_hook,
                )  # fmt: skip
                last = i == len(ladder) - 1  # nothing follows it: no need to settle
                load, lat = run_point(
                    spec,
                    readback,
                    opts.drain_timeout_s,
                    lag.lag,
                    settle_timeout_s=0 if last else opts.settle_timeout_s,
                )
                proc.check_alive()
                pt = _evaluate(rate, lat, load.sent_late_ns, setup.bound_ms, duration)
                pt.fraction = frac
                pt.settled = load.settled
                if not load.settled:
                    say("  the pipeline still had a backlog when the next point started")
                pt.stages_ms = {
                    k: (float(v.mean()), float(np.percentile(v, 99)))
                    for k, v in load.stage_ms.items()
                    if v.size
                }
                result.points.append(pt)
                say(f"  p50 {fmt_ms(pt.p50_ms)} p99 {fmt_ms(pt.p99_ms)} ms, "
                    f"decided {pt.decided:,}/{pt.records:,}")  # fmt: skip
        readback.close()
        lag.close()
    say(f"server scenario done in {time.monotonic() - started:.0f} s")
    return server_report(result, opts, command, machine)


class _Nudger:
    """Sends one record, captured the moment it is sent (a camera frame is never stale)."""

    def __init__(self, bootstrap: str, topic: str, setup: KindSetup) -> None:
        self.topic = topic
        self.item = _pool(setup, 1)[0]
        self.camera = setup.kind == "camera"
        self.producer = bulk_producer(bootstrap, linger_ms=0)
        self.seq = 0

    def __call__(self) -> None:
        key, value, headers = self.item
        if self.camera:
            headers = camera_headers(self.item, time.time_ns(), self.seq)
        self.producer.send(self.topic, key=key, value=value, headers=headers or None)
        self.producer.flush(timeout=10)
        self.seq += 1

    def __enter__(self) -> _Nudger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.producer.close(timeout=10)


def _warm_up(
    bootstrap: str, topic: str, setup: KindSetup, rate: float, readback: Readback,
    lag: Callable[[], int],
) -> None:  # fmt: skip
    """A short burst at the ladder's first rate, not measured: warms caches and clients."""
    n = max(20, int(rate * 3))
    spec = LoadSpec(bootstrap, topic, rate, n, setup.pool, setup.pool_size, seed=99,
                    header_hook=setup.header_hook)  # fmt: skip
    run_point(spec, readback, drain_timeout_s=10, lag=lag)


def server_report(result: ServerResult, opts: ServerOptions, command: str, machine: object
                  ) -> Report:  # fmt: skip
    from streamfer.bench.machine import Machine

    assert isinstance(machine, Machine)
    after = probe_machine()
    rows = []
    for p in result.points:
        frac = f"{p.fraction:.0%}" if p.fraction is not None else "—"
        rows.append((
            fmt_rate(p.offered_rate), frac, f"{p.duration_s:.0f}", f"{p.records:,}",
            f"{p.decided / p.records:.1%}", fmt_ms(p.p50_ms), fmt_ms(p.p99_ms),
            fmt_ms(p.p999_ms), fmt_ms(p.p99_decided_ms), fmt_ms(p.gen_late_p99_ms),
            "yes" if p.within_bound else "no", "" if p.settled else "backlog left",
        ))  # fmt: skip
    table = Table(
        f"{result.kind}: latency scheduled send -> decision read back (ms); bound "
        f"{result.bound_ms:g} ms; max throughput {result.max_rate:,.0f}/s "
        f"({result.max_rate_source})",
        ("offered/s", "of max", "s", "records", "decided", "p50", "p99", "p99.9",
         "p99 decided only", "generator late p99", f"p99 <= {result.bound_ms:g}", "after"),
        tuple(rows),
    )  # fmt: skip
    stage_names = ("broker", "queue", "preprocess", "infer", "postprocess", "publish", "e2e")
    stage_table = Table(
        "Where the time goes: the decisions' own latency_ms per stage (mean / p99), and the "
        "rest (generator -> broker before, acknowledgement and read-back after: measured "
        "latency minus decision e2e, p99 of measured vs e2e)",
        ("offered/s", *stage_names, "measured p99 - e2e p99"),
        tuple(
            (fmt_rate(p.offered_rate),
             *[f"{p.stages_ms[k][0]:.1f} / {p.stages_ms[k][1]:.1f}" if k in p.stages_ms else "—"
               for k in stage_names],
             fmt_ms(p.p99_decided_ms - p.stages_ms["e2e"][1]) if "e2e" in p.stages_ms else "—")
            for p in result.points
        ),
    )  # fmt: skip
    ok = [p.offered_rate for p in result.points if p.within_bound]
    best = max(ok) if ok else math.nan
    half = [p for p in result.points if p.fraction == 0.5]
    targets = []
    if half:
        p99s = [p.p99_ms for p in half]
        med = Spread.of(p99s)
        measured = (
            f"{fmt_ms(med.median)} ms"
            if len(half) == 1
            else f"{fmt_ms(med.median)} ms (runs: {', '.join(fmt_ms(v) for v in p99s)})"
        )
        targets.append(Target(
            f"p99 at 50% of max throughput ({fmt_rate(half[0].offered_rate)}/s)",
            measured, f"<= {result.bound_ms:g} ms", med.median <= result.bound_ms,
        ))  # fmt: skip
    notes = [
        f"highest offered rate with p99 within {result.bound_ms:g} ms: "
        + (f"{best:,.0f}/s ({best / result.max_rate:.0%} of max)" if ok else "none of the points"),
        "open loop: each record is sent at its scheduled Poisson time (late if the generator "
        "falls behind, see 'generator late p99'), and latency counts from that scheduled time;"
        " records with no decision count as infinitely late",
        f"per point: max({opts.min_duration_s:g} s, {opts.min_records:,} records / rate), "
        "shortened where the command's time budget requires",
        "generator, pipeline and read-back share the machine's cores",
        f"load average after the run: {'/'.join(f'{x:.2f}' for x in after.load_avg)}",
    ]
    return Report(
        f"Server scenario ({result.kind})", command, machine, [table, stage_table], targets, notes,
        raw={"server": asdict(result)},
    )  # fmt: skip
