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

from bench.report import RESULTS_PATH, Report, append_results, command_line, print_report
from streams.admin import default_bootstrap, wait_for_broker

_console = Console(stderr=True)


def _say(text: str) -> None:
    _console.log(text)


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--bootstrap", default=None, help="Kafka bootstrap (default: $STREAMFER_BOOTSTRAP or "
        "127.0.0.1:9092).",
    )(fn)  # fmt: skip
    fn = click.option(
        "--results", type=click.Path(dir_okay=False, path_type=Path), default=RESULTS_PATH,
        show_default=True, help="Markdown file the result is appended to.",
    )(fn)  # fmt: skip
    fn = click.option("--no-record", is_flag=True, help="Print only; do not append to results.")(fn)
    return fn


def _finish(report: Report, results: Path, no_record: bool) -> None:
    print_report(report, Console())
    if not no_record:
        append_results(report, results)
        _say(f"appended to {results}")


def _broker(bootstrap: str | None) -> str:
    address = bootstrap or default_bootstrap()
    wait_for_broker(address, timeout_s=30)
    return address


@click.group()
def bench() -> None:
    """Run the benchmarks and record results in bench/RESULTS.md."""


@bench.command()
@_common
@click.option("--records", type=click.IntRange(100), default=50_000, show_default=True,
              help="Transactions per pass-through and streamfer run.")
@click.option("--naive-records", type=click.IntRange(10), default=3_000, show_default=True,
              help="Transactions per naive run (the first ones of the same topic).")
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True,
              help="Interleaved repetitions of all three systems.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), default=None, help="Pipeline config (default: "
              "deploy/configs/fraud.yaml).")
@click.option("--keep-topics", is_flag=True, help="Leave the benchmark topics on the broker.")
def scoring(
    bootstrap: str | None, results: Path, no_record: bool, records: int, naive_records: int,
    repeats: int, config_path: Path | None, keep_topics: bool,
) -> None:  # fmt: skip
    """Transactions/s: pass-through limit vs naive loop vs streamfer (about 2-4 min)."""
    from bench.scoring import ScoringOptions, run_scoring

    opts = ScoringOptions(records, naive_records, repeats, keep_topics=keep_topics)
    if config_path is not None:
        opts = ScoringOptions(records, naive_records, repeats, config_path, keep_topics=keep_topics)
    report = run_scoring(_broker(bootstrap), opts, command_line(), _say)
    _finish(report, results, no_record)
