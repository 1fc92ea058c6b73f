"""Batching curve: engine throughput vs batch size per reference model, and the
dynamic batcher's throughput gain at equal p99 (see :mod:`streamfer.bench.batcher_gain`).

The curve itself is measured by :func:`streamfer.bench.engine_curve.measure_engine_curve`;
the gain uses each model's shipped stream config (``deploy/configs``) for the
batcher settings and engine threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from streamfer.bench.batcher_gain import GainResult, batcher_gain
from streamfer.bench.engine_curve import MODELS_DIR, curve_report, measure_engine_curve
from streamfer.bench.machine import probe_machine
from streamfer.bench.pipeline_proc import CONFIG_DIR, load_raw
from streamfer.bench.report import Report, Table, Target
from streamfer.bench.stats import fmt_ms, fmt_rate
from streamfer.engines.select import create_runner
from streamfer.pipeline.config import parse_config

Say = Callable[[str], None]

# model -> (shipped config, p99 bound in ms for the gain; sensor has no bound of its own,
# its config's deadline is used)
GAIN_SETUPS: dict[str, tuple[str, float]] = {
    "fraud": ("fraud.yaml", 50.0),
    "sensor": ("sensor.yaml", 200.0),
    "camera": ("camera.yaml", 100.0),
}


@dataclass(frozen=True)
class GainRow:
    model: str
    bound_ms: float
    unbatched: GainResult
    batched: GainResult

    @property
    def gain(self) -> float:
        base = self.unbatched.best_rate
        return self.batched.best_rate / base if base > 0 else float("nan")


def measure_gains(
    models: Sequence[str], seconds_per_point: float, steps: int, say: Say
) -> list[GainRow]:
    rows = []
    for model in models:
        cfg_name, bound = GAIN_SETUPS[model]
        cfg_path = CONFIG_DIR / cfg_name
        if not (MODELS_DIR / f"{model}.onnx").exists():
            say(f"{model}: no ONNX file, gain skipped")
            continue
        cfg = parse_config(load_raw(cfg_path), str(cfg_path))
        stream = cfg.streams[0]
        mcfg = cfg.models[stream.model]
        runner = create_runner(
            mcfg.path, target=mcfg.target, precision=mcfg.precision, max_batch=mcfg.max_batch,
            intra_op_threads=mcfg.intra_op_threads,
        )  # fmt: skip
        with runner:
            one, many = batcher_gain(
                runner, stream.batching.max_batch, stream.knobs.batch_wait_ms, bound,
                seconds_per_point=seconds_per_point, steps=steps,
            )  # fmt: skip
        row = GainRow(model, bound, one, many)
        say(f"{model}: batch 1 {one.best_rate:,.0f}/s, batch <= {many.max_batch} "
            f"{many.best_rate:,.0f}/s at p99 <= {bound:g} ms ({row.gain:.1f}x)")  # fmt: skip
        rows.append(row)
    return rows


def _p99_at(result: GainResult) -> str:
    pts = [p for p in result.points if p.rate == result.best_rate]
    return fmt_ms(pts[0].p99_ms) if pts else "n/a"


def batching_report(
    models: Sequence[str], batches: Sequence[int], seconds: float, gain_seconds: float,
    steps: int, command: str, say: Say, out_dir: Path,
) -> Report:  # fmt: skip
    from streamfer.bench.plots import plot_batching

    machine = probe_machine()
    say("engine curve (streamfer.bench.engine_curve)")
    curve = measure_engine_curve(models, batches, seconds)
    report = curve_report(curve, command)
    report.title = "Batching curve and dynamic batcher gain (ONNX Runtime, CPU)"
    report.machine = machine
    say("dynamic batcher gain at equal p99")
    rows = measure_gains([m for m in models if m in GAIN_SETUPS], gain_seconds, steps, say)
    report.tables.append(Table(
        "Dynamic batcher: highest Poisson rate with p99 within the bound (engine + batcher, "
        "no Kafka)",
        ("model", "p99 bound ms", "batching (config)", "best rate batch 1", "p99 there",
         "best rate batched", "p99 there", "gain"),
        tuple(
            (r.model, f"{r.bound_ms:g}",
             f"max_batch {r.batched.max_batch}, max_wait {r.batched.max_wait_ms:g} ms",
             fmt_rate(r.unbatched.best_rate), _p99_at(r.unbatched),
             fmt_rate(r.batched.best_rate), _p99_at(r.batched), f"{r.gain:.1f}x")
            for r in rows
        ),
    ))  # fmt: skip
    report.targets += [
        Target(f"batcher gain ({r.model}, p99 <= {r.bound_ms:g} ms)", f"{r.gain:.1f}x",
               "> 1x (no numeric target set)", r.gain > 1)
        for r in rows
    ]  # fmt: skip
    report.notes.append(
        "gain: one thread owns the real Batcher and the runner (as the pipeline's engine "
        "worker does); open-loop Poisson arrivals; bisection for the highest rate whose p99 "
        f"(scheduled arrival -> batch result) stays within the bound, {gain_seconds:g} s or "
        "at least 200 items per trial; sensor's bound is its config's deadline_ms"
    )
    curve_pts = {
        m: [(p.batch, p.samples_per_s, p.p99_ms) for p in curve.for_model(m)]
        for m in dict.fromkeys(p.model for p in curve.points)
    }
    if curve_pts:
        report.images.append(plot_batching(curve_pts, out_dir))
    report.raw["batcher_gain"] = [
        {"model": r.model, "bound_ms": r.bound_ms, "gain": r.gain,
         "unbatched": asdict(r.unbatched), "batched": asdict(r.batched)}
        for r in rows
    ]  # fmt: skip
    return report
