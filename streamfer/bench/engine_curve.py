"""Engine batching curve: ONNX Runtime throughput and latency vs batch size, on CPU.

For each reference model and batch size, the same random batch is run
back to back for a fixed time; each call's latency is recorded. Throughput is
samples per second of wall time (batch x calls / elapsed); p50/p99 are per
call, i.e. per batch. Run it as::

    python -m streamfer.bench.engine_curve [--models fraud,sensor] [--batches 1,2,4,8] [--seconds 2]

``measure_engine_curve()`` returns the numbers for the benchmark harness.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from streamfer.bench.machine import probe_machine
from streamfer.bench.report import Report, Table, append_results, command_line, print_report
from streamfer.bench.stats import fmt_rate, percentiles_ms
from streamfer.engines.base import random_feeds
from streamfer.engines.onnxruntime.loader import SessionSettings
from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner
from streamfer.paths import PACKAGE_DIR

MODELS_DIR = PACKAGE_DIR / "models"
DEFAULT_MODELS: tuple[str, ...] = ("fraud", "sensor", "camera")
DEFAULT_BATCHES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_SECONDS = 1.5  # per point: 3 models x 7 batches stays around a minute
MIN_CALLS = 5  # slow points (camera at 64) still get a p50/p99 from several calls
WARMUP_CALLS = 2


@dataclass(frozen=True)
class CurvePoint:
    """One model at one batch size."""

    model: str
    batch: int
    calls: int
    elapsed_s: float
    samples_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class EngineCurve:
    """Every point measured, plus what they were measured on."""

    points: tuple[CurvePoint, ...]
    providers: dict[str, tuple[str, ...]]
    intra_op_threads: int | None
    seconds_per_point: float
    skipped: tuple[str, ...]  # models whose ONNX file does not exist

    def for_model(self, model: str) -> list[CurvePoint]:
        return [p for p in self.points if p.model == model]


def _measure_point(runner: OnnxRuntimeRunner, model: str, batch: int, seconds: float) -> CurvePoint:
    feeds = random_feeds(runner.input_specs, batch, seed=batch)
    for _ in range(WARMUP_CALLS):
        runner.infer(feeds)
    latencies: list[int] = []
    start = time.perf_counter_ns()
    deadline = start + int(seconds * 1e9)
    while True:
        t0 = time.perf_counter_ns()
        runner.infer(feeds)
        t1 = time.perf_counter_ns()
        latencies.append(t1 - t0)
        if t1 >= deadline and len(latencies) >= MIN_CALLS:
            break
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    p50, p99 = percentiles_ms(np.asarray(latencies, dtype=np.int64), (50, 99))
    return CurvePoint(
        model=model,
        batch=batch,
        calls=len(latencies),
        elapsed_s=elapsed_s,
        samples_per_s=batch * len(latencies) / elapsed_s,
        p50_ms=p50,
        p99_ms=p99,
    )


def measure_engine_curve(
    models: Sequence[str] = DEFAULT_MODELS,
    batches: Sequence[int] = DEFAULT_BATCHES,
    seconds: float = DEFAULT_SECONDS,
    *,
    intra_op_threads: int | None = None,
    models_dir: Path = MODELS_DIR,
) -> EngineCurve:
    """Measure every (model, batch) point on the ONNX Runtime runner; missing models are skipped."""
    if seconds <= 0 or not batches or min(batches) < 1:
        raise ValueError(f"seconds={seconds} batches={list(batches)}: expected > 0 and >= 1")
    points: list[CurvePoint] = []
    providers: dict[str, tuple[str, ...]] = {}
    skipped: list[str] = []
    settings = SessionSettings(intra_op_threads=intra_op_threads)
    for model in models:
        path = models_dir / f"{model}.onnx"
        if not path.exists():
            skipped.append(model)
            continue
        with OnnxRuntimeRunner(path, max_batch=max(batches), settings=settings) as runner:
            providers[model] = runner.info.providers
            points += [_measure_point(runner, model, b, seconds) for b in sorted(batches)]
    return EngineCurve(tuple(points), providers, intra_op_threads, seconds, tuple(skipped))


def _ms(value: float) -> str:
    """Engine calls take microseconds to seconds: keep three significant digits."""
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def curve_report(curve: EngineCurve, command: str) -> Report:
    """The benchmark's report: one table per model, raw numbers kept."""
    report = Report(
        title="Engine batching curve (ONNX Runtime, CPU)", command=command, machine=probe_machine()
    )
    for model in dict.fromkeys(p.model for p in curve.points):
        pts = curve.for_model(model)
        base = pts[0].samples_per_s
        rows = tuple(
            (
                str(p.batch),
                fmt_rate(p.samples_per_s),
                f"{p.samples_per_s / base:.1f}x",
                _ms(p.p50_ms),
                _ms(p.p99_ms),
                str(p.calls),
            )
            for p in pts
        )
        columns = ("batch", "samples/s", f"vs batch {pts[0].batch}", "p50 ms", "p99 ms", "calls")
        providers = ", ".join(curve.providers[model])
        report.tables.append(Table(f"{model} ({providers})", columns, rows))
    threads = curve.intra_op_threads or "onnxruntime default"
    report.notes.append(
        f"{curve.seconds_per_point:g} s per point after {WARMUP_CALLS} warm-up calls "
        f"(at least {MIN_CALLS} calls); intra-op threads: {threads}; inter-op 1, sequential, "
        "all graph optimisations; random inputs of the model's shape"
    )
    report.notes.append(
        "latency is per call (one whole batch); the machine is shared, so the numbers are "
        "indicative, and the load average above says how busy it was"
    )
    if curve.skipped:
        report.notes.append(f"skipped (no ONNX file yet): {', '.join(curve.skipped)}")
    report.raw = {"engine_curve": [asdict(p) for p in curve.points]}
    return report


def _csv(kind: type, text: str) -> list:  # type: ignore[type-arg]
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: expected a comma-separated list") from exc


def curve_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--models, --batches and --seconds: the curve's points (``streamfer bench batching``
    takes them too)."""
    fn = click.option(
        "--seconds",
        type=click.FloatRange(min=0.01),
        default=DEFAULT_SECONDS,
        show_default=True,
        help="Measuring time per (model, batch) point of the curve.",
    )(fn)
    fn = click.option(
        "--batches",
        default=",".join(map(str, DEFAULT_BATCHES)),
        show_default=True,
        help="Batch sizes of the engine curve, comma-separated.",
    )(fn)
    fn = click.option(
        "--models",
        default=",".join(DEFAULT_MODELS),
        show_default=True,
        help="Reference models (models/<name>.onnx), comma-separated.",
    )(fn)
    return fn  # fmt: skip


@click.command(name="engine-curve")
@curve_options
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime intra-op threads (default: onnxruntime's).")  # fmt: skip
@click.option(
    "--record/--no-record",
    default=True,
    show_default=True,
    help="Append the results to bench/RESULTS.md.",
)
def engine_curve(
    models: str, batches: str, seconds: float, threads: int | None, record: bool
) -> None:
    """ONNX Runtime throughput and p50/p99 latency vs batch size for each reference model."""
    curve = measure_engine_curve(
        _csv(str, models), _csv(int, batches), seconds, intra_op_threads=threads
    )
    argv = sys.argv
    if Path(argv[0]).name == "engine_curve.py":  # run as `python -m streamfer.bench.engine_curve`
        argv = ["python", "-m", "streamfer.bench.engine_curve", *argv[1:]]
    report = curve_report(curve, command_line(argv))
    print_report(report)
    if record:
        click.echo(f"appended to {append_results(report)}")


if __name__ == "__main__":
    engine_curve()
