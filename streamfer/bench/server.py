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

Broker warm-up is measured on its own first: the first rate runs in 5 s windows
until two consecutive windows' p99 are within 20 % of each other; that time and
its p99s are reported, and the ladder starts after it.

``--profiles low,balanced,throughput`` runs one pipeline per latency profile
(each its own topics and group), the points interleaved (each rate runs on
every profile before the next rate), with each profile's drain maximum
measured too. Placement: with more than 2 cores the load generator and the
read-back run on a core of their own (the pipeline on the others); on 2 cores
each point runs twice, shared (everything on both cores) and pinned (the
pipeline on one core, generator and read-back on the other). The broker is
never pinned. CPU µs per record: the pipeline process's user + system time over
the point divided by the point's records.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streamfer.bench.cpu import CpuMeter, CpuReading
from streamfer.bench.kafka_io import (
    BUSY_BROKER_PARTITIONS,
    GroupLag,
    broker_partitions,
    bulk_producer,
    produce_all,
    run_id,
    topic_set,
)
from streamfer.bench.loadgen import LoadSpec, Readback, run_point
from streamfer.bench.machine import probe_machine
from streamfer.bench.pipeline_proc import (
    CONFIG_DIR,
    PipelineProcess,
    bench_config,
    drain_rate,
    load_raw,
    start_flowing,
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
    rates: tuple[float, ...] | None = None  # explicit rates, before any fractions
    min_duration_s: float = 60.0
    min_records: int = 25_000
    budget_s: float | None = None
    probe_records: int | None = None
    drain_timeout_s: float = 20.0
    settle_timeout_s: float = 90.0
    keep_topics: bool = False
    repeats: int = 1
    profiles: tuple[str, ...] | None = None  # latency profiles side by side; None: the file's
    placements: tuple[str, ...] | None = None  # "shared", "pinned"; None: by core count
    warmup_window_s: float = 5.0
    warmup_max_s: float = 120.0


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
    profile: str = "file"
    placement: str = "shared"
    cpu_us_per_record: float = math.nan
    stages_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # mean, p99
    thread_cpu_us: dict[str, float] = field(default_factory=dict)  # per record, by thread
    machine_cpu_us: dict[str, float] = field(default_factory=dict)  # per record, by party


@dataclass
class ServerResult:
    kind: str
    bound_ms: float
    max_rate: float
    max_rate_source: str
    points: list[PointResult] = field(default_factory=list)
    drain_rates: dict[str, float] = field(default_factory=dict)  # per profile, records/s
    warmup_s: float = math.nan
    warmup_p99s_ms: list[float] = field(default_factory=list)
    warmup_stable: bool = False
    cores: dict[str, str] = field(default_factory=dict)  # placement -> who ran where
    broker_partitions: int = 0  # on the broker before the run (its own topics not yet made)
    broker_pid: int | None = None  # the local broker process whose CPU is counted


def _pool(setup: KindSetup, n: int) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    if setup.kind == "camera":
        return stamped(camera_pool(min(n, setup.pool_size)), n)
    return transaction_pool(n)


def probe_capacity(
    bootstrap: str, base: dict, setup: KindSetup, cfg_path: Path, n: int, rid: str, topics: object,
    say: Say, profile: str | None = None,
) -> float:  # fmt: skip
    """Records/s of the pipeline (replay mode) draining a backlog of ``n`` records."""
    from streamfer.bench.kafka_io import TopicSet

    assert isinstance(topics, TopicSet)
    tag = f"-{profile}" if profile else ""
    in_topic = topics.input(f"bench-{rid}-{setup.kind}-probe{tag}")
    topics.track(f"{in_topic}.dlq")
    out = topics.output(f"bench-{rid}-{setup.kind}-probe{tag}-out")
    say(f"capacity probe: loading {n:,} {setup.kind} records")
    produce_all(bootstrap, in_topic, _pool(setup, n))
    group = f"bench-{rid}-probe{tag}"
    raw, cfg = bench_config(
        base, source=str(cfg_path), kind=setup.kind, bootstrap=bootstrap, input_topic=in_topic,
        output_topic=out, group=group, overrides={"mode": "replay",
        "drop_stale": False, "latest_per_key": False, **_profile_override(profile)},
    )  # fmt: skip
    topics.track(cfg.streams[0].state_topic(group))  # made by a stateful pipeline
    rate = drain_rate(raw, bootstrap, out, n, "capacity probe", 240, say)
    if not rate > 0:
        raise StreamferError(
            f"capacity probe | {n} records were decided too quickly to time "
            f"(rate {rate}). Note: give more --probe-records or a --max-rate"
        )
    say(f"capacity probe{f' ({profile})' if profile else ''}: {rate:,.0f} records/s")
    return rate


def _profile_override(profile: str | None) -> dict[str, object]:
    return {} if profile is None else {"latency": {"profile": profile}}


# -- placement: which cores run the pipeline, and which the generator and read-back ----------
def _tasks(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def _set_cores(pid: int, cores: set[int]) -> None:
    """Every thread of process ``pid`` onto ``cores`` (threads made later inherit it)."""
    for tid in _tasks(pid):
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(tid, cores)


@dataclass(frozen=True)
class Placement:
    name: str
    pipeline: frozenset[int]
    bench: frozenset[int]  # load generator (spawned per point) and read-back

    def describe(self) -> str:
        def cores(c: frozenset[int]) -> str:
            return ",".join(str(i) for i in sorted(c))

        if self.pipeline == self.bench:
            return f"pipeline, generator and read-back share cores {cores(self.pipeline)}"
        return (f"pipeline on core(s) {cores(self.pipeline)}; generator and read-back on "
                f"core(s) {cores(self.bench)}; the broker unpinned")  # fmt: skip


def placements(names: tuple[str, ...] | None) -> list[Placement]:
    """Shared and/or pinned placements of this machine (see the module docstring)."""
    every = frozenset(os.sched_getaffinity(0))
    ordered = sorted(every)
    if names is None:
        names = ("pinned",) if len(every) > 2 else ("shared", "pinned") if len(every) == 2 \
            else ("shared",)  # fmt: skip
    out = []
    for name in names:
        if name == "shared" or len(every) < 2:
            out.append(Placement("shared", every, every))
        else:
            last = frozenset(ordered[-1:])
            out.append(Placement(name, every - last, last))
    return out


@dataclass
class _PointStart:
    """What is read as a point's load starts (``run_point``'s ``on_start``: the generator
    set up, t0 handed over), so the point's CPU leaves the set-up out."""

    proc: PipelineProcess
    meter: CpuMeter
    cpu_s: float = math.nan
    threads: dict[str, float] = field(default_factory=dict)
    machine: CpuReading | None = None

    def __call__(self) -> None:
        self.cpu_s = self.proc.cpu_seconds()
        self.threads = self.proc.thread_cpu_seconds()
        self.machine = self.meter.read(self.proc.pid)


def _place(placement: Placement, pipelines: list[int]) -> None:
    for pid in pipelines:
        _set_cores(pid, set(placement.pipeline))
    _set_cores(os.getpid(), set(placement.bench))


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


@dataclass
class _Lane:
    """One pipeline under test: one latency profile, its own topics, group and read-back."""

    profile: str
    in_topic: str
    readback: Readback
    lag: GroupLag
    proc: PipelineProcess | None = None


def run_server(bootstrap: str, opts: ServerOptions, command: str, say: Say) -> Report:
    setup = SETUPS[opts.kind]
    cfg_path = opts.config or setup.config
    base = load_raw(cfg_path)
    machine = probe_machine()
    partitions = broker_partitions(bootstrap)
    if partitions > BUSY_BROKER_PARTITIONS:
        say(f"warning: the broker holds {partitions:,} partitions; its GC pauses will set the "
            "tail. Note: for numbers to compare, use a fresh broker (streamfer broker start "
            "--port P --data-dir NEW_DIR)")  # fmt: skip
    rid = run_id()
    started = time.monotonic()
    profiles: tuple[str | None, ...] = opts.profiles or (None,)
    places = placements(opts.placements)
    every = frozenset(os.sched_getaffinity(0))
    with topic_set(bootstrap, keep=opts.keep_topics) as topics:
        drains: dict[str, float] = {}
        if opts.max_rate is not None:
            max_rate, source = opts.max_rate, "given (--max-rate)"
        else:
            n = opts.probe_records or setup.probe_records
            for profile in profiles:
                drains[profile or "file"] = probe_capacity(
                    bootstrap, base, setup, cfg_path, n, rid, topics, say, profile
                )
            max_rate = next(iter(drains.values()))
            source = (f"measured: replay-mode drain of {n:,} preloaded records"
                      + (f" ({profiles[0]} profile)" if profiles[0] else ""))  # fmt: skip
        result = ServerResult(setup.kind, setup.bound_ms, max_rate, source)
        result.drain_rates = drains
        result.cores = {p.name: p.describe() for p in places}
        result.broker_partitions = partitions
        meter = CpuMeter(bootstrap)
        result.broker_pid = meter.broker_pid
        ladder: list[tuple[float, float | None]]
        if opts.rates:  # with fractions too: the rates first, then the fractions of max
            ladder = [(r, None) for r in opts.rates]
            ladder += [(f * max_rate, f) for f in (opts.fractions or ())]
        else:
            ladder = [(f * max_rate, f) for f in (opts.fractions or setup.fractions)]
        ladder = ladder * opts.repeats  # repeated ladders interleave their points
        lanes: list[_Lane] = []
        with contextlib.ExitStack() as stack:
            for profile in profiles:
                name = profile or "file"
                in_topic = topics.input(f"bench-{rid}-{setup.kind}-{name}-in")
                topics.track(f"{in_topic}.dlq")
                out = topics.output(f"bench-{rid}-{setup.kind}-{name}-out")
                group = f"bench-{rid}-server-{name}"
                raw, cfg = bench_config(
                    base, source=str(cfg_path), kind=setup.kind, bootstrap=bootstrap,
                    input_topic=in_topic, output_topic=out, group=group,
                    overrides=_profile_override(profile),
                )  # fmt: skip
                topics.track(cfg.streams[0].state_topic(group))  # made by a stateful pipeline
                readback = Readback(bootstrap, out)
                readback.start()
                stack.callback(readback.close)
                lag = GroupLag(bootstrap, in_topic, group)
                stack.callback(lag.close)
                lane = _Lane(name, in_topic, readback, lag)
                say(f"waiting for the pipeline ({name}) to decide its first record")
                with _Nudger(bootstrap, in_topic, setup) as nudge:
                    lane.proc, _ = start_flowing(raw, readback.count, say, nudge=nudge)
                stack.enter_context(contextlib.closing(lane.proc))
                lanes.append(lane)
            pids = [p for lane in lanes if lane.proc and (p := lane.proc.pid) is not None]
            _place(Placement("shared", every, every), pids)
            _broker_warm_up(bootstrap, setup, ladder[0][0], lanes[0], opts, result, say)
            for lane in lanes[1:]:
                _warm_up(bootstrap, lane.in_topic, setup, ladder[0][0], lane.readback,
                         lane.lag.lag)  # fmt: skip
            runs = [(rate, frac, lane, place) for rate, frac in ladder for lane in lanes
                    for place in places]  # fmt: skip
            budget = opts.budget_s or setup.budget_s
            t_ladder = time.monotonic()
            for i, (rate, frac, lane, place) in enumerate(runs):
                assert lane.proc is not None
                left = budget - (time.monotonic() - t_ladder)
                duration = _point_duration(opts, rate, left, len(runs) - i)
                n = max(10, int(rate * duration))
                _place(place, pids)
                say(f"point {i + 1}/{len(runs)}: {rate:,.0f}/s for {duration:.0f} s ({n:,}), "
                    f"profile {lane.profile}, {place.name}")  # fmt: skip
                spec = LoadSpec(
                    bootstrap, lane.in_topic, rate, n, setup.pool, setup.pool_size, seed=i,
                    header_hook=setup.header_hook,
                )  # fmt: skip
                last = i == len(runs) - 1  # nothing follows it: no need to settle
                start = _PointStart(lane.proc, meter)
                load, lat = run_point(
                    spec,
                    lane.readback,
                    opts.drain_timeout_s,
                    lane.lag.lag,
                    settle_timeout_s=0 if last else opts.settle_timeout_s,
                    on_start=start,
                )
                cpu0, threads0 = start.cpu_s, start.threads
                cpu = lane.proc.cpu_seconds() - cpu0
                threads = lane.proc.thread_cpu_seconds()
                cpu_end = meter.read(lane.proc.pid)
                lane.proc.check_alive()
                pt = _evaluate(rate, lat, load.sent_late_ns, setup.bound_ms, duration)
                pt.fraction = frac
                pt.settled = load.settled
                pt.profile, pt.placement = lane.profile, place.name
                pt.cpu_us_per_record = cpu * 1e6 / max(pt.records, 1)
                if start.machine is not None:
                    pt.machine_cpu_us = cpu_end.per_record_us(
                        start.machine, pt.records, load.generator_cpu_s
                    )
                pt.thread_cpu_us = {  # live at the end (zero too: under a clock tick)
                    name: max(0.0, s - threads0.get(name, 0.0)) * 1e6 / max(pt.records, 1)
                    for name, s in threads.items()
                }
                if not load.settled:
                    say("  the pipeline still had a backlog when the next point started")
                pt.stages_ms = {
                    k: (float(v.mean()), float(np.percentile(v, 99)))
                    for k, v in load.stage_ms.items()
                    if v.size
                }
                result.points.append(pt)
                say(f"  p50 {fmt_ms(pt.p50_ms)} p99 {fmt_ms(pt.p99_ms)} ms, "
                    f"decided {pt.decided:,}/{pt.records:,}, "
                    f"{pt.cpu_us_per_record:.0f} CPU µs/record")  # fmt: skip
            _place(Placement("shared", every, every), pids)
    say(f"server scenario done in {time.monotonic() - started:.0f} s")
    return server_report(result, opts, command, machine)


def _broker_warm_up(
    bootstrap: str, setup: KindSetup, rate: float, lane: _Lane, opts: ServerOptions,
    result: ServerResult, say: Say,
) -> None:  # fmt: skip
    """The first rate in windows of ``warmup_window_s`` until two consecutive p99s are
    within 20 % of each other (or ``warmup_max_s`` passed); not part of the ladder."""
    t0 = time.monotonic()
    n = max(20, int(rate * opts.warmup_window_s))
    for i in range(10_000):
        spec = LoadSpec(bootstrap, lane.in_topic, rate, n, setup.pool, setup.pool_size,
                        seed=1000 + i, header_hook=setup.header_hook)  # fmt: skip
        load, lat = run_point(spec, lane.readback, drain_timeout_s=10, lag=lane.lag.lag,
                              settle_timeout_s=30)  # fmt: skip
        pt = _evaluate(rate, lat, load.sent_late_ns, setup.bound_ms, opts.warmup_window_s)
        result.warmup_p99s_ms.append(pt.p99_ms)
        say(f"  warm-up window {i + 1}: p99 {fmt_ms(pt.p99_ms)} ms")
        p = result.warmup_p99s_ms
        if len(p) >= 2 and math.isfinite(p[-1]) and math.isfinite(p[-2]) \
                and abs(p[-1] - p[-2]) <= 0.2 * max(p[-1], p[-2]):  # fmt: skip
            result.warmup_stable = True
            break
        if time.monotonic() - t0 > opts.warmup_max_s:
            break
    result.warmup_s = time.monotonic() - t0


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


def _thread_table(points: list[PointResult]) -> Table:
    """CPU µs a record per thread name, the busiest first (a few names per pipeline)."""
    total: dict[str, float] = {}
    for p in points:
        for name, us in p.thread_cpu_us.items():
            total[name] = total.get(name, 0.0) + us
    names = sorted(total, key=lambda k: (-total[k], k))
    rows = tuple(
        (fmt_rate(p.offered_rate), p.profile, p.placement,
         *[f"{p.thread_cpu_us[k]:.0f}" if k in p.thread_cpu_us else "—" for k in names])
        for p in points
    )  # fmt: skip
    return Table(
        "CPU µs per record by thread of the pipeline (its OS name, cut to 15 bytes; "
        "librdkafka's threads summed; —: the thread was not running)",
        ("offered/s", "profile", "cores", *names),
        rows,
    )


def _machine_table(result: ServerResult) -> Table:
    """Who used the machine's CPU during each point, per record, and its busy cores."""
    parties = ("pipeline", "broker", "generator and read-back", "rest of the machine")
    cores = len(os.sched_getaffinity(0))
    broker = (f"the broker (pid {result.broker_pid})" if result.broker_pid is not None
              else "the broker (not a local process: counted in the rest)")  # fmt: skip
    return Table(
        f"Where the machine's CPU went from t0 to the point's end: µs a record of the "
        f"pipeline, {broker}, the load generator (its own report) with the read-back (this "
        f"bench process) and the rest; busy cores of the {cores} (all of them together over "
        "that wall time)",
        ("offered/s", "profile", "cores", *parties, f"busy cores of {cores}"),
        tuple(
            (fmt_rate(p.offered_rate), p.profile, p.placement,
             *[_us(p.machine_cpu_us.get(k, math.nan)) for k in parties],
             f"{p.machine_cpu_us.get('busy_cores', math.nan):.2f}")
            for p in result.points
        ),
    )  # fmt: skip


def _us(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0f}"


def server_report(result: ServerResult, opts: ServerOptions, command: str, machine: object
                  ) -> Report:  # fmt: skip
    from streamfer.bench.machine import Machine

    assert isinstance(machine, Machine)
    after = probe_machine()
    rows = []
    for p in result.points:
        frac = f"{p.fraction:.0%}" if p.fraction is not None else "—"
        rows.append((
            fmt_rate(p.offered_rate), frac, p.profile, p.placement,
            f"{p.cpu_us_per_record:.0f}", f"{p.duration_s:.0f}", f"{p.records:,}",
            f"{p.decided / p.records:.1%}", fmt_ms(p.p50_ms), fmt_ms(p.p99_ms),
            fmt_ms(p.p999_ms), fmt_ms(p.p99_decided_ms), fmt_ms(p.gen_late_p99_ms),
            "yes" if p.within_bound else "no", "" if p.settled else "backlog left",
        ))  # fmt: skip
    table = Table(
        f"{result.kind}: latency scheduled send -> decision read back (ms); bound "
        f"{result.bound_ms:g} ms; max throughput {result.max_rate:,.0f}/s "
        f"({result.max_rate_source})",
        ("offered/s", "of max", "profile", "cores", "CPU µs/record", "s", "records", "decided",
         "p50", "p99", "p99.9",
         "p99 decided only", "generator late p99", f"p99 <= {result.bound_ms:g}", "after"),
        tuple(rows),
    )  # fmt: skip
    stage_names = ("broker", "queue", "preprocess", "infer", "postprocess", "publish", "e2e")
    stage_table = Table(
        "Where the time goes: the decisions' own latency_ms per stage (mean / p99), and the "
        "rest (generator -> broker before, acknowledgement and read-back after: measured "
        "latency minus decision e2e, p99 of measured vs e2e)",
        ("offered/s", "profile", "cores", *stage_names, "measured p99 - e2e p99"),
        tuple(
            (fmt_rate(p.offered_rate), p.profile, p.placement,
             *[f"{p.stages_ms[k][0]:.1f} / {p.stages_ms[k][1]:.1f}" if k in p.stages_ms else "—"
               for k in stage_names],
             fmt_ms(p.p99_decided_ms - p.stages_ms["e2e"][1]) if "e2e" in p.stages_ms else "—")
            for p in result.points
        ),
    )  # fmt: skip
    tables = [table, stage_table, _thread_table(result.points), _machine_table(result)]
    if result.drain_rates:
        tables.append(Table(
            "Drain maximum per latency profile (replay mode, preloaded backlog)",
            ("profile", "records/s"),
            tuple((k, fmt_rate(v)) for k, v in result.drain_rates.items()),
        ))  # fmt: skip
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
        *(f"cores, {name}: {text}" for name, text in result.cores.items()),
        f"broker warm-up at the first rate before the ladder: {result.warmup_s:.0f} s, "
        f"{'stable' if result.warmup_stable else 'NOT stable'} (two 5 s windows' p99 within "
        f"20 %); window p99s (ms): {', '.join(fmt_ms(v) for v in result.warmup_p99s_ms)}",
        f"load average after the run: {'/'.join(f'{x:.2f}' for x in after.load_avg)}",
        f"broker: {result.broker_partitions:,} partitions before the run"
        + (f" (**over {BUSY_BROKER_PARTITIONS:,}: its GC pauses set the tail; compare only "
           "with runs on a broker holding about as many**)"
           if result.broker_partitions > BUSY_BROKER_PARTITIONS else ""),
    ]
    return Report(
        f"Server scenario ({result.kind})", command, machine, tables, targets, notes,
        raw={"server": asdict(result)},
    )  # fmt: skip
