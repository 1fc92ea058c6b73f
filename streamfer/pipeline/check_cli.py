"""``streamfer check-processor``: a processor on sample records, without Kafka.

For plug-in authors: it builds the processor the way a stream would (the same
config checks, the same context), runs ``prepare``, the model and ``results``
on the samples a batch at a time, and prints the feeds, the outputs and every
record's result or dead letter, with the contract checks and the per-record
isolation the pipeline applies. Exit status: 0 when the processor kept its
contract on every batch (rejecting records is part of it), 1 when a batch
needed isolating (prepare or results raised for it, a contract check failed,
a wrong number of results), 2 for a config problem.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import yaml

from streamfer.engines.base import Runner, TensorSpec
from streamfer.engines.select import TARGETS, create_runner
from streamfer.errors import CodecError, ConfigError
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.config.checks import plugin_problems
from streamfer.pipeline.config.model import MAX_BATCH
from streamfer.pipeline.config.problems import format_problems
from streamfer.pipeline.config.stream import DEFAULT_BATCH
from streamfer.pipeline.decisions import RESERVED, DecisionEncoder, ModelIdentity, SegmentTiming
from streamfer.pipeline.isolation import prepare_isolated, results_isolated
from streamfer.pipeline.outlet import output_problem
from streamfer.pipeline.processors import Output, Prepared, Processor, engine_wiring, make_processor
from streamfer.streams.records import Record, RecordBatch

BUILTIN_KINDS = ("camera", "sensor", "transaction")
_NO_TIMING = SegmentTiming(0.0, 0.0, 0.0, 0.0)


@dataclass
class Tally:
    """What the samples came to, over every batch."""

    records: int = 0
    results: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    faults: int = 0  # batches that needed isolating

    def dead_letter(self, reason: str) -> None:
        self.dead_letters[reason] = self.dead_letters.get(reason, 0) + 1

    def summary(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.dead_letters.items())) or "none"
        return (
            f"{self.records} records: {self.results} results, "
            f"{sum(self.dead_letters.values())} dead letters ({reasons}); "
            f"{self.faults} batch(es) needed isolating"
        )


@click.command("check-processor")
@click.argument("name")
@click.option("--model", "model_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The ONNX model the processor feeds.")
@click.option("--sample", "sample_path", required=True,
              type=click.Path(exists=True, allow_dash=True, path_type=Path),
              help="JSON Lines, one record value a line ('-': stdin), or a directory with "
                   "one record value a file (images).")
@click.option("--processor-config", "config_path",
              type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="A YAML or JSON file holding the processor_config.")
@click.option("-c", "--config", "old_config", hidden=True, expose_value=True, default=None,
              help="Renamed: --processor-config (-c/--config names a pipeline file elsewhere).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="One processor_config entry (the value read as YAML); repeatable.")
@click.option("--postprocessor", default=None, metavar="REF",
              help="With a built-in kind as NAME: a plug-in in place of its results step.")
@click.option("--batch", "batch_size", type=click.IntRange(1, MAX_BATCH), default=DEFAULT_BATCH,
              show_default=True, help="Records per batch.")
@click.option("--target", type=click.Choice(TARGETS),
              default="auto", show_default=True,
              help="The engine. auto: TensorRT when it imports and a GPU is present, else "
              "ONNX Runtime.")
@click.option("--decisions", is_flag=True, help="Print whole decision documents.")
def check_processor(name: str, model_path: Path, sample_path: Path, config_path: Path | None,
                    old_config: str | None, settings: tuple[str, ...], postprocessor: str | None,
                    batch_size: int, target: str, decisions: bool) -> None:  # fmt: skip
    """Run processor NAME on sample records without Kafka and print what it does.

    NAME is a plug-in (package.module:Name, or an installed streamfer.processors
    name) or a built-in kind (camera, sensor, transaction). A plug-in module is
    imported from the current directory first (as `python -m` does), then the
    installed packages and PYTHONPATH. Its processor_config comes from
    --processor-config FILE, then each --set KEY=VALUE on top.
    """
    if old_config is not None:
        raise click.UsageError(
            f"--config {old_config} | renamed. Note: the processor's own config file is "
            "--processor-config FILE"
        )
    config = processor_config(config_path, settings)
    stream = check_stream(name, model_path, config, postprocessor, batch_size)
    values = read_samples(sample_path)
    runner = create_runner(model_path, target=target, max_batch=batch_size)  # type: ignore[arg-type]
    tally = Tally()
    with runner:
        processor = make_processor(stream, runner, threads=1)
        click.echo(f"processor {type(processor).__name__} ({stream.plugin or stream.kind}) "
                   f"on {model_path.name} [{runner.info.kind}]")  # fmt: skip
        click.echo(f"  inputs {_specs(runner.input_specs)}; outputs {_specs(runner.output_specs)}")
        if stream.processor_config:
            click.echo(f"  processor_config {json.dumps(stream.processor_config)}")
        run = BatchRun(stream, runner, processor, tally, decisions)
        try:
            for first in range(0, len(values), batch_size):
                run.batch(values[first : first + batch_size], first)
        finally:
            close = getattr(processor, "close", None)
            if callable(close):
                close()
    click.echo(tally.summary())
    if tally.faults:
        raise SystemExit(1)


def processor_config(path: Path | None, settings: Sequence[str]) -> dict[str, Any]:
    """``--processor-config`` then each ``--set KEY=VALUE`` (values read as YAML) on top."""
    config: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} | holds a {type(loaded).__name__}. Note: expected a mapping")
        config.update(loaded)
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} | not KEY=VALUE. Note: e.g. --set threshold=0.9")
        config[key] = yaml.safe_load(value)
    return config


def check_stream(name: str, model: Path, config: dict[str, Any], postprocessor: str | None,
                 batch_size: int) -> StreamConfig:  # fmt: skip
    """The stream a pipeline config would declare for processor NAME, checked like one."""
    builtin = name in BUILTIN_KINDS
    stream = StreamConfig.model_validate(
        {
            "name": "check",
            "kind": name if builtin else "custom",
            "processor": None if builtin else name,
            "postprocessor": postprocessor,
            "processor_config": config,
            "input_topic": "sample",
            "output_topic": "sample.decisions",
            "model": model.stem,
            "batching": {"max_batch": batch_size},
        }
    )
    found = plugin_problems(0, stream)
    problems = [replace(p, key=p.key.removeprefix("streams[0].")) for p in found]
    if problems:
        raise ConfigError(format_problems("check-processor", problems))
    return stream


def read_samples(path: Path) -> list[bytes]:
    """Record values: one a line of a JSON Lines file (blank lines skipped), or one a file
    of a directory (in name order; an empty file is an empty record)."""
    if path.is_dir():
        values = [p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()]
    else:
        text = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        values = [line for line in text.splitlines() if line.strip()]
    if not values:
        raise ConfigError(f"{path} | no samples. Note: expected one record value a line")
    return values


def _specs(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{s.name} {s.describe()}" for s in specs)


def _array(arr: Any) -> str:
    if not isinstance(arr, np.ndarray):
        return f"a {type(arr).__name__}"
    first = np.array2string(arr[0], threshold=8, edgeitems=3, precision=4) if len(arr) else "-"
    return f"{arr.dtype.name} {list(arr.shape)}, first row {' '.join(first.split())}"


class BatchRun:
    """Runs sample batches as the pipeline does and says what happens at each step."""

    def __init__(self, stream: StreamConfig, runner: Runner, processor: Processor, tally: Tally,
                 decisions: bool) -> None:  # fmt: skip
        self.runner = runner
        self.processor = processor
        self.tally = tally
        self.decisions = decisions
        self.infer, self.check = engine_wiring(processor, runner)
        identity = ModelIdentity.of(stream.model, runner)
        self.encoder = DecisionEncoder(stream.name, stream.decision_kind, identity)

    def batch(self, values: list[bytes], first: int) -> None:
        now_ms, now_ns = time.time_ns() // 1_000_000, time.monotonic_ns()
        batch = RecordBatch.of([Record("sample", 0, first + i, None, v, (), now_ms, now_ns)
                                for i, v in enumerate(values)])  # fmt: skip
        click.echo(f"batch of {len(batch)}: samples {first}..{first + len(batch) - 1}")
        self.tally.records += len(batch)
        on_fault = lambda error: self._fault("prepare", error)  # noqa: E731
        parts = prepare_isolated(self.processor, batch, "processor_error", self.check, on_fault)
        for prepared in parts:
            for rej in prepared.rejects:
                self._dead_letter(f"#{first + rej.row}", rej.reason, rej.error)
            if len(prepared):
                self._infer(batch, prepared, first)

    def _infer(self, batch: RecordBatch, prepared: Prepared, first: int) -> None:
        for name, arr in prepared.feeds.items():
            click.echo(f"  feed {name}: {_array(arr)}")
        outputs = self.infer(prepared.feeds)
        for name, arr in outputs.items():
            click.echo(f"  output {name}: {_array(arr)}")
        metas = list(prepared.metas) if prepared.metas is not None else [None] * len(prepared)
        results = results_isolated(
            self.processor, outputs, metas, on_fault=lambda p, e: self._fault("results", e, p)
        )
        for row, res in zip(prepared.rows.tolist(), results, strict=True):
            self._result(batch, row, first, res)

    def _result(self, batch: RecordBatch, row: int, first: int, res: object) -> None:
        where = f"#{first + row}"
        if isinstance(res, BaseException):
            self._dead_letter(where, getattr(res, "reason", "processor_error"), res)
            return
        key: bytes | None = None
        headers: tuple[tuple[str, bytes], ...] = ()
        result, extra = res, None
        if isinstance(res, Output):
            problem = output_problem(res)
            if problem:
                self._dead_letter(where, "bad_decision", problem)
                return
            result, extra, key, headers = res.result, res.extra, res.key, tuple(res.headers)
        if not isinstance(result, Mapping):
            self._dead_letter(where, "bad_decision", f"result is a {type(result).__name__}")
            return
        (doc,) = self.encoder.encode_segment(batch.topic, 0, [batch.offsets[row]], [None],
                                             [result], [extra], [0.0], 1, _NO_TIMING)  # fmt: skip
        if isinstance(doc, CodecError):
            self._dead_letter(where, doc.reason, doc)
            return
        self.tally.results += 1
        decision = json.loads(doc)
        if not self.decisions:  # the result and any extra fields
            decision = {k: v for k, v in decision.items() if k == "result" or k not in RESERVED}
        shown = json.dumps(decision, separators=(",", ":"))
        if key is not None:
            shown += f"  key={key!r}"
        if headers:
            shown += f"  headers={list(headers)}"
        click.echo(f"  {where} {shown}")

    def _dead_letter(self, where: str, reason: str, error: object) -> None:
        self.tally.dead_letter(reason)
        click.echo(f"  {where} dead letter {reason}: {error}")

    def _fault(self, step: str, error: BaseException | None, problem: str = "") -> None:
        self.tally.faults += 1
        if error is None:
            click.echo(f"  {problem}", err=True)
            return
        click.echo(f"  {step} failed for the whole batch; the pipeline retries it record by "
                   "record:", err=True)  # fmt: skip
        lines = traceback.format_exception(error)
        click.echo("    " + "".join(lines).rstrip().replace("\n", "\n    "), err=True)
