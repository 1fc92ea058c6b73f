"""``streamfer bench``: each benchmark is one command that prints a table and records it.

Every command appends its result (machine, load, date, commit, command, raw
numbers, targets met or missed) to ``bench/RESULTS.md`` unless ``--no-record``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from streamfer.bench.engine_curve import curve_options
from streamfer.bench.report import RESULTS_PATH, Report, append_results, command_line, print_report
from streamfer.pipeline.config import config_file, read_config
from streamfer.streams.admin import wait_for_broker
from streamfer.streams.bootstrap import bootstrap_option, resolve_bootstrap

_console = Console(stderr=True)


def _say(text: str) -> None:
    _console.log(text)


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--bootstrap (the -c file's servers count too) and the result options."""
    return _recording(bootstrap_option(fn))


def _common_no_config(fn: Callable[..., Any]) -> Callable[..., Any]:
    return _recording(bootstrap_option(config_file=False)(fn))


def _config_option(default_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Pipeline YAML file, or the name of a shipped one (default: {default_name}).",
    )


def _recording(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--results", type=click.Path(dir_okay=False, path_type=Path), default=RESULTS_PATH,
        show_default="bench/RESULTS.md", help="Markdown file the result is appended to; charts "
        "are written next to it.",
    )(fn)  # fmt: skip
    fn = click.option("--no-record", is_flag=True, help="Print only; do not append to results.")(fn)
    return fn


def _option(
    name: str, kind: click.ParamType, default: object, help: str, dest: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An option of ``kind`` (a click range or choice), its default shown where it has one."""
    decls = (name, dest) if dest else (name,)
    return click.option(*decls, type=kind, default=default, show_default=default is not None,
                        help=help)  # fmt: skip


def _repeats(default: int | None, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return _option("--repeats", click.IntRange(1), default, help)


_keep_topics = click.option(
    "--keep-topics", is_flag=True, help="Leave the benchmark topics on the broker."
)


def _finish(report: Report, results: Path, no_record: bool) -> None:
    print_report(report, Console())
    if not no_record:
        append_results(report, results)
        _say(f"appended to {results}")


def _config(config_path: Path | None) -> Path | None:
    """The file ``-c`` names (a path or a shipped config's name)."""
    return None if config_path is None else config_file(config_path)


def _broker(bootstrap: str | None, config_path: Path | None = None) -> str:
    """The cluster by the one precedence (``streamfer.streams.bootstrap``), once it answers."""
    file_value = None
    if config_path is not None:
        kafka = (read_config(config_path)[1] or {}).get("kafka")
        file_value = kafka.get("bootstrap_servers") if isinstance(kafka, dict) else None
    address = resolve_bootstrap(bootstrap, file_value).servers
    wait_for_broker(address, timeout_s=30)
    return address


@click.group()
def bench() -> None:
    """Run the benchmarks and record results in bench/RESULTS.md."""


@bench.command()
@_common
@_option("--records", click.IntRange(100), 100_000,
         "Transactions per run of every system but naive (all of the input topic).")  # fmt: skip
@_option("--naive-records", click.IntRange(10), 2_000,
         "Transactions per naive run (the first ones of the same topic).")  # fmt: skip
@_repeats(3, "Interleaved repetitions of all systems (rotated order).")
@click.option(
    "--systems",
    "systems_text",
    default=None,
    metavar="LIST",
    help="Comma-separated subset to run: passthrough-kafka-python, passthrough-confluent, "
    "naive, plain-loop, tuned-loop, streamfer, streamfer-metrics-off, streamfer-state, "
    "streamfer-no-state (default: the first six). Targets whose systems did not run read "
    "'not measured'.",
)
@_config_option("fraud")
@click.option(
    "--metrics-off",
    is_flag=True,
    help="Also run the pipeline with metrics disabled (metrics overhead; ~1 min more).",
)
@_keep_topics
def scoring(
    bootstrap: str | None, results: Path, no_record: bool, records: int, naive_records: int,
    repeats: int, systems_text: str | None, config_path: Path | None, metrics_off: bool,
    keep_topics: bool,
) -> None:  # fmt: skip
    """Transactions/s and CPU µs/record of streamfer against both clients' pass-through
    limits, the plain and the tuned hand-written confluent-kafka batch loops and the naive
    loop, with the targets' verdicts (about 5 min)."""
    from streamfer.bench.pipeline_proc import CONFIG_DIR
    from streamfer.bench.scoring import ScoringOptions, parse_systems, run_scoring
    from streamfer.errors import ConfigError

    try:
        only = parse_systems(systems_text) if systems_text is not None else ()
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--systems") from None
    config_path = _config(config_path)
    opts = ScoringOptions(
        records, naive_records, repeats, config_path or CONFIG_DIR / "fraud.yaml",
        keep_topics=keep_topics, metrics_off=metrics_off, only=only,
    )  # fmt: skip
    report = run_scoring(_broker(bootstrap, config_path), opts, command_line(), _say)
    _finish(report, results, no_record)


@bench.command("state-restore")
@_common_no_config
@click.option("--keys", type=click.IntRange(1000), default=1_000_000, show_default=True,
              help="Cards in the changelog partition.")  # fmt: skip
def state_restore(bootstrap: str | None, results: Path, no_record: bool, keys: int) -> None:
    """Restore time of one partition's state (from the changelog, from a checkpoint plus
    the changelog, from a current checkpoint), and the local stores compared per key
    (about 1 min at 1 million cards)."""
    from streamfer.bench.state_restore import run_restore

    report = run_restore(_broker(bootstrap), keys, command_line(), _say)
    _finish(report, results, no_record)


def _floats(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated numbers") from None
    if not values or min(values) <= 0:
        raise click.BadParameter(f"{text!r}: expected numbers > 0")
    return values


@bench.command()
@_common
@_option("--stream", click.Choice(["transactions", "camera"]), "transactions",
         "Which stream: transactions (bound 25 ms) or camera frames (bound 100 ms).",
         "kind")  # fmt: skip
@_config_option("fraud or camera")
@_option("--max-rate", click.FloatRange(min=0, min_open=True), None,
         "Maximum throughput to scale the ladder to (default: measured first).")  # fmt: skip
@click.option(
    "--fractions",
    default=None,
    help="Ladder as fractions of the maximum, run in this order (default: "
    "0.25,0.5,0.5,0.5,0.75,1: rising, the 50% point three times).",
)
@click.option("--rates", default=None,
              help="Explicit rates in records/s; with --fractions, these first.")  # fmt: skip
@_option("--min-duration", click.FloatRange(min=1), 60.0,
         "Seconds per point at least (budget permitting).", "min_duration_s")  # fmt: skip
@_option("--min-records", click.IntRange(min=10), 25_000,
         "Records per point at least (budget permitting).")  # fmt: skip
@_option("--budget", click.FloatRange(min=1), None, "Seconds for the whole ladder; points are "
         "shortened to fit (default: 400, so the command ends within 10 minutes).",
         "budget_s")  # fmt: skip
@_option("--probe-records", click.IntRange(min=10), None, "Backlog drained to measure the "
         "maximum (default: 30000 transactions, 1200 frames).")  # fmt: skip
@_repeats(1, "Run the ladder this many times, one after another (e.g. --fractions 0.5 "
          "--repeats 3 for the 50%-of-max target).")  # fmt: skip
@click.option(
    "--profiles",
    default=None,
    help="Latency profiles side by side, interleaved (e.g. low,balanced,throughput); "
    "default: the config's own.",
)
@click.option(
    "--placements",
    default=None,
    help="shared and/or pinned (comma-separated); default: pinned on more than 2 cores, both on 2.",
)
@_option("--warmup-max", click.FloatRange(min=0), 120.0,
         "Longest broker warm-up (5 s windows at the first rate until two p99s agree).",
         "warmup_max_s")  # fmt: skip
@_keep_topics
def server(
    bootstrap: str | None, results: Path, no_record: bool, kind: str, config_path: Path | None,
    max_rate: float | None, fractions: str | None, rates: str | None, min_duration_s: float,
    min_records: int, budget_s: float | None, probe_records: int | None, repeats: int,
    profiles: str | None, placements: str | None, warmup_max_s: float, keep_topics: bool,
) -> None:  # fmt: skip
    """Poisson arrivals at rising rates: p50/p99/p99.9 per rate and the highest rate within
    the p99 bound (default run: about 8 min)."""
    from streamfer.bench.plots import plot_server
    from streamfer.bench.server import ServerOptions, run_server

    config_path = _config(config_path)
    opts = ServerOptions(
        kind="transaction" if kind == "transactions" else "camera", config=config_path,
        max_rate=max_rate, fractions=_floats(fractions), rates=_floats(rates),
        min_duration_s=min_duration_s, min_records=min_records, budget_s=budget_s,
        probe_records=probe_records, keep_topics=keep_topics, repeats=repeats,
        profiles=_names(profiles, ("low", "balanced", "throughput"), "--profiles"),
        placements=_names(placements, ("shared", "pinned"), "--placements"),
        warmup_max_s=warmup_max_s,
    )  # fmt: skip
    report = run_server(_broker(bootstrap, config_path), opts, command_line(), _say)
    if not no_record:  # the chart goes beside the results it belongs to, or nowhere
        report.images.append(plot_server(report, results.parent))
    _finish(report, results, no_record)


@bench.command()
@_recording
@curve_options
@_option("--gain-seconds", click.FloatRange(min=0.01), 2.0,
         "Seconds per trial rate of the batcher-gain search.")  # fmt: skip
@_option("--steps", click.IntRange(1, 20), 6, "Bisection steps of the batcher-gain search.")
def batching(
    results: Path, no_record: bool, models: str, batches: str,
    seconds: float, gain_seconds: float, steps: int,
) -> None:  # fmt: skip
    """Engine throughput vs batch size per model, and the dynamic batcher's gain at equal
    p99 (about 3-5 min; needs no broker)."""
    from streamfer.bench.batching import batching_report

    names = [m.strip() for m in models.split(",") if m.strip()]
    sizes = [int(b) for b in _floats(batches) or (1,)]
    report = batching_report(names, sizes, seconds, gain_seconds, steps, command_line(), _say,
                             results.parent)  # fmt: skip
    _finish(report, results, no_record)


@bench.command()
@_common
@_option("--frames", click.IntRange(10), 1500, "Preloaded frames the pipeline drains per run.")
@_repeats(3, "Interleaved repetitions of decode limit, engine limit and pipeline.")
@_option("--split-frames", click.IntRange(1), 300,
         "Frames through the instrumented one-thread loop (time split).")  # fmt: skip
@_option("--limit-seconds", click.FloatRange(min=0.1), 3.0,
         "Seconds per decode-limit and engine-limit measurement.")  # fmt: skip
@_config_option("camera")
@_keep_topics
@_option("--preprocess", click.Choice(["cpu", "gpu"]), "cpu", "gpu: the GPU frame path's "
         "stages per process (nvImageCodec decode, letterbox kernel, TensorRT where installed, "
         "postprocess) on frames in memory; needs no broker.")  # fmt: skip
@_option("--gpu-batch", click.IntRange(1, 1024), 64, "Frames per GPU batch (--preprocess gpu).")
@_option("--gpu-threads", click.IntRange(1, 64), 2,
         "Preprocessing threads, one GPU preprocessor each (--preprocess gpu).")  # fmt: skip
def frames(
    bootstrap: str | None, results: Path, no_record: bool, frames: int, repeats: int,
    split_frames: int, limit_seconds: float, config_path: Path | None, keep_topics: bool,
    preprocess: str, gpu_batch: int, gpu_threads: int,
) -> None:  # fmt: skip
    """Camera frames/s per core with the time split over Kafka I/O, decode, preprocess,
    inference, postprocess and publish, against the decode and engine limits (about 3 min).
    With --preprocess gpu: frames/s per process of the GPU frame path (about 1 min)."""
    from streamfer.bench.frames import FramesOptions, run_frames

    if preprocess == "gpu":
        from streamfer.bench.gpu_frames import GpuFramesOptions, run_gpu_frames

        gpu_opts = GpuFramesOptions(gpu_batch, limit_seconds, repeats, gpu_threads)
        _finish(run_gpu_frames(gpu_opts, command_line(), _say), results, no_record)
        return

    config_path = _config(config_path)
    opts = FramesOptions(frames, repeats, split_frames, limit_seconds, keep_topics=keep_topics)
    if config_path is not None:
        opts = FramesOptions(frames, repeats, split_frames, limit_seconds, config_path,
                             keep_topics)  # fmt: skip
    report = run_frames(_broker(bootstrap, config_path), opts, command_line(), _say)
    _finish(report, results, no_record)


@bench.command("models")
@_common
@_config_option("fraud")
@click.option("--quick", is_flag=True,
              help="A smoke run (1-2 min): 3 s phases, 4 s rate runs, 5,000-record drains, "
              "one run each.")  # fmt: skip
@_option("--rate", click.FloatRange(min=1), 1000.0,
         "Transactions/s (Poisson) of the swap runs and the fixed-rate shadow runs.")  # fmt: skip
@_option("--phase-seconds", click.FloatRange(min=1), None, "Seconds per phase of a swap run "
         "(steady, after the swap, after the refusal; default 8, --quick 3).",
         "steady_s")  # fmt: skip
@_repeats(None, "Interleaved shadow / no-shadow runs of each kind (default 3, --quick 1).")
def models(
    bootstrap: str | None, results: Path, no_record: bool, config_path: Path | None,
    quick: bool, rate: float, steady_s: float | None, repeats: int | None,
) -> None:  # fmt: skip
    """A model version swapped under load (per delivery mode), a refused version, and the
    cost of a shadow model, on the fraud stream (about 4 min; --quick 1-2 min)."""
    import dataclasses

    from streamfer.bench.models import ModelsOptions, run_models

    config_path = _config(config_path)
    opts = ModelsOptions.quick(config_path) if quick else ModelsOptions()
    if config_path is not None:
        opts = dataclasses.replace(opts, config=config_path)
    opts = dataclasses.replace(opts, rate=rate)
    if steady_s is not None:
        opts = dataclasses.replace(opts, steady_s=steady_s)
    if repeats is not None:
        opts = dataclasses.replace(opts, repeats=repeats)
    report = run_models(_broker(bootstrap, config_path), opts, command_line(), _say)
    _finish(report, results, no_record)


def _names(text: str | None, allowed: tuple[str, ...], option: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise click.BadParameter(
            f"{option} | {', '.join(bad) or 'nothing'} (got {text!r}). "
            f"Note: allowed: {', '.join(allowed)}"
        )
    return names
