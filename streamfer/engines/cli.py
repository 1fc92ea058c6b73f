"""``streamfer engines build|inspect``: build engines ahead of time, see what a model is."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from streamfer.engines.base import DEFAULT_MAX_BATCH, PRECISIONS, TensorSpec
from streamfer.engines.host import resolve_cache_dir
from streamfer.engines.onnx_model import OnnxModelInfo, check_model_path, read_onnx_info
from streamfer.engines.select import TARGETS, refuse_low_precision_on_onnxruntime, resolve_target
from streamfer.errors import EngineError
from streamfer.lifecycle import Lifecycle


def _choice(flag: str, choices: Sequence[str], default: str, help: str) -> Any:
    """A ``--flag`` taking one of ``choices``, its default shown in ``--help``."""
    return click.option(
        flag, type=click.Choice(choices), default=default, show_default=True, help=help
    )


_target = _choice(
    "--target",
    TARGETS,
    "auto",
    "auto: TensorRT when it imports and a GPU is present, else ONNX Runtime.",
)
_precision = _choice(
    "--precision",
    PRECISIONS,
    "fp32",
    "fp16/int8 need TensorRT (the ONNX graph is cast/quantized first).",
)
_cache_dir = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Engine cache (default: $STREAMFER_CACHE_DIR or ~/.cache/streamfer/engines).",
)


class RichBuildProgress(Lifecycle, start="start", stop="stop"):
    """TensorRT build phases as rich progress bars (TensorRT calls from its threads)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._parents: dict[str, str | None] = {}

    def start(self) -> None:
        self._progress.start()

    def stop(self) -> None:
        self._progress.stop()

    def note(self, text: str) -> None:
        self._progress.console.print(text)

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
        self._parents[phase] = parent
        self._tasks[phase] = self._progress.add_task(("  " if parent else "") + phase, total=steps)

    def step_complete(self, phase: str, step: int) -> None:
        task = self._tasks.get(phase)
        if task is not None:
            self._progress.update(task, completed=step + 1)

    def phase_finish(self, phase: str) -> None:
        task = self._tasks.pop(phase, None)
        if task is None:
            return
        if self._parents.pop(phase, None) is not None:
            self._progress.remove_task(task)  # keep only top-level phases on screen
        else:
            self._progress.update(task, completed=self._progress.tasks[task].total)


@click.group()
def engines() -> None:
    """Build and inspect inference engines."""


@engines.command()
@click.argument("model", type=click.Path(path_type=Path))
@_target
@_precision
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BATCH,
    show_default=True,
    help="Largest batch: the TensorRT profile's max; checked batch size on ONNX Runtime.",
)
@click.option(
    "--opt-batch", type=click.IntRange(min=1), help="TensorRT profile opt (default: max)."
)
@click.option(
    "--workspace-mib",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="TensorRT builder workspace limit.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    help="int8: .npz with one array of samples per model input.",
)
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime intra-op threads.")
@click.option("--force", is_flag=True, help="TensorRT: rebuild even when a cached engine is valid.")
@_cache_dir
def build(
    model: Path,
    target: str,
    precision: str,
    max_batch: int,
    opt_batch: int | None,
    workspace_mib: int,
    calibration: Path | None,
    threads: int | None,
    force: bool,
    cache_dir: Path | None,
) -> None:
    """Build MODEL.onnx into the engine cache and check it runs.

    TensorRT: parse, cast to the precision, build with a batch profile up to
    --max-batch and store the serialized engine (reused when still valid).

    ONNX Runtime: save the optimised graph in the cache and check it gives the
    original's outputs at batch 1 and --max-batch.
    """
    console = Console(soft_wrap=True)
    check_model_path(model)
    if resolve_target(target) == "tensorrt":
        _build_tensorrt(
            console,
            model,
            precision,
            max_batch,
            opt_batch,
            workspace_mib,
            calibration,
            force,
            cache_dir,
        )
        return
    refuse_low_precision_on_onnxruntime(model, precision, target)
    from streamfer.engines.onnxruntime.optimize import optimize_onnx

    with console.status("ONNX Runtime build") as status:

        def note(text: str) -> None:
            console.print(f"- {text}")
            status.update(text)

        done = optimize_onnx(
            model, cache_dir=cache_dir, max_batch=max_batch, intra_op_threads=threads, note=note
        )
    console.print(
        f"[bold]onnxruntime[/] fp32 {done.source}: optimised graph ({done.level}) saved to "
        f"{done.path}\n  nodes {done.nodes_before} -> {done.nodes_after}; outputs match the "
        f"original at batch {', '.join(map(str, done.checked_batches))} "
        f"(max abs diff {done.max_abs_diff:.2e}); providers {', '.join(done.providers)}; "
        f"{done.seconds:.1f} s\n  The runner loads {done.source} and optimises it at start-up; "
        "this file documents and checks that step."
    )


def _build_tensorrt(
    console: Console,
    model: Path,
    precision: str,
    max_batch: int,
    opt_batch: int | None,
    workspace_mib: int,
    calibration: Path | None,
    force: bool,
    cache_dir: Path | None,
) -> None:
    from streamfer.engines.tensorrt.builder import BuildSettings, EngineFromOnnx
    from streamfer.engines.tensorrt.cache import BatchProfile
    from streamfer.engines.tensorrt.precision import load_calibration

    info = read_onnx_info(model)
    samples = load_calibration(calibration, info.inputs) if calibration else None
    settings = BuildSettings(
        precision=precision,  # type: ignore[arg-type]  # click.Choice checked it
        profile=BatchProfile.for_max(max_batch, opt=opt_batch),
        workspace_bytes=workspace_mib << 20,
        calibration=samples,
    )
    with RichBuildProgress(console) as progress:
        built = EngineFromOnnx(model, settings, cache_dir=cache_dir, progress=progress)(force=force)
    how = "valid engine found in the cache" if built.from_cache else "built"
    console.print(
        f"[bold]tensorrt[/] {precision} {model}: {how}\n  {built.path} "
        f"({len(built.data) / 1e6:.1f} MB; TensorRT {built.key.tensorrt_version}, "
        f"sm {built.key.compute_capability}, batch {built.key.profile.min}/"
        f"{built.key.profile.opt}/{built.key.profile.max})"
    )


def _spec_table(title: str, specs: tuple[TensorSpec, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("name")
    table.add_column("dtype")
    table.add_column("shape (N = batch)")
    for spec in specs:
        table.add_row(spec.name, spec.dtype.name, spec.describe().split(" ", 1)[1])
    return table


def _engine_line(info: OnnxModelInfo, target: str, precision: str) -> str:
    kind = resolve_target(target)
    if kind == "tensorrt":
        return (
            f"tensorrt {precision} (target {target}); built on first activation "
            "or by `streamfer engines build`"
        )
    refuse_low_precision_on_onnxruntime(info.path, precision, target)
    from streamfer.engines.onnxruntime.loader import SessionFromOnnx

    providers = SessionFromOnnx(info.path)().get_providers()
    return f"onnxruntime fp32 (target {target}); session providers: {', '.join(providers)}"


def _cache_lines(info: OnnxModelInfo, cache_dir: Path | None) -> list[str]:
    from streamfer.engines.onnxruntime.optimize import optimized_model_path
    from streamfer.engines.tensorrt.cache import EngineCache

    root = resolve_cache_dir(cache_dir)
    lines = [f"cache: {root}"]
    for entry in EngineCache(root / "tensorrt").entries(info.sha256):
        key = entry.meta["key"]
        profile = key["profile"]
        lines.append(
            f"  tensorrt {key['precision']} engine: {entry.engine_path} (TensorRT "
            f"{key['tensorrt_version']}, sm {key['compute_capability']}, batch "
            f"{profile['min']}/{profile['opt']}/{profile['max']})"
        )
    ort_path = optimized_model_path(info, cache_dir)
    state = "present" if ort_path.exists() else "not built"
    lines.append(f"  onnxruntime optimised graph: {ort_path} ({state})")
    if len(lines) == 2 and not ort_path.exists():
        lines.append("  nothing cached for this model yet")
    return lines


def _inspect_engine(console: Console, path: Path) -> None:
    meta_path = path.with_suffix(".json")
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"{path} | no readable sidecar {meta_path.name} ({exc}). "
            "Note: expected an engine written by `streamfer engines build`"
        ) from exc
    console.print(f"[bold]{path}[/] (tensorrt engine)")
    console.print_json(json.dumps(meta))


@engines.command()
@click.argument("model", type=click.Path(path_type=Path))
@_target
@_precision
@_cache_dir
def inspect(model: Path, target: str, precision: str, cache_dir: Path | None) -> None:
    """Print MODEL's I/O specs, metadata, engine kind, precision and cache location.

    MODEL is an .onnx file (or a cached .engine, whose sidecar is shown).
    """
    console = Console(soft_wrap=True)
    check_model_path(model)
    if model.suffix == ".engine":
        _inspect_engine(console, model)
        return
    info = read_onnx_info(model)
    console.print(f"[bold]{info.path}[/]  ({info.size_bytes / 1e6:.2f} MB, sha256 {info.sha256})")
    console.print(f"opset {info.opset}, {info.node_count} nodes, producer {info.producer or '?'}")
    console.print(_spec_table("inputs", info.inputs))
    console.print(_spec_table("outputs", info.outputs))
    meta = Table(title="metadata", title_justify="left")
    meta.add_column("key")
    meta.add_column("value", overflow="fold")
    for key, value in sorted(info.metadata.items()):
        meta.add_row(key, value)
    console.print(meta if info.metadata else "metadata: none")
    console.print(f"engine: {_engine_line(info, target, precision)}")
    for line in _cache_lines(info, cache_dir):
        console.print(line)
