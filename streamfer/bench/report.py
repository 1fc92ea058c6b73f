"""A benchmark's outcome: tables, targets met or missed, raw numbers; printed and recorded.

Every command builds one :class:`Report`, prints it as a table and appends it
to ``bench/RESULTS.md`` with the machine, date, commit and command beside it.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from streamfer.bench.machine import Machine
from streamfer.paths import checkout_root

# the checkout's bench/RESULTS.md; installed, the current directory's
RESULTS_PATH = (checkout_root() or Path.cwd()) / "bench" / "RESULTS.md"
RESULTS_HEADER = """# streamfer benchmark results

Appended by `streamfer bench ...`; newest at the bottom. Each section names the
machine, the load average when it was measured, the date, the commit and the
command that produced it, and keeps the raw numbers. Targets are marked
**met** or **MISSED** as measured; the machine is shared, so read the load
figure beside each result.

Reproduce (local broker first: `streamfer broker start`; each command ends
within 10 minutes at its defaults):

- `streamfer bench scoring` (about 3 min): transactions/s and CPU µs/record,
  streamfer vs the pass-through limit of each Kafka client, the plain and the
  tuned hand-written confluent-kafka batch loops and the naive loop, 3
  interleaved runs;
- `streamfer bench server --stream transactions` (about 8 min): Poisson ladder
  at 25/50/75/100 % of the maximum and twice more at 50 %, p50/p99/p99.9,
  bound 25 ms;
- `streamfer bench server --stream camera` (about 8 min): the same for camera
  frames, bound 100 ms;
- `streamfer bench batching` (about 4 min): engine samples/s vs batch size per
  model, and the dynamic batcher's gain at equal p99;
- `streamfer bench frames` (about 4 min): camera frames/s per core, time per
  stage, against the JPEG-decode and engine limits.
"""


@dataclass(frozen=True)
class Table:
    """A titled table of already-formatted cells."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Target:
    """One target: what was measured against what was required."""

    name: str
    measured: str
    required: str
    met: bool | None  # None: could not be measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


@dataclass
class Report:
    """Everything one benchmark command produced."""

    title: str
    command: str
    machine: Machine
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # paths relative to RESULTS.md
    raw: dict[str, Any] = field(default_factory=dict)


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, with the console script name instead of a path."""
    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = Path(args[0]).name
    return shlex.join(args)


def _md_table(table: Table) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    """The RESULTS.md section for ``report``."""
    m = report.machine
    out = [
        f"## {report.title} — {m.date_utc}",
        "",
        f"- machine: {m.describe()}",
        f"- commit: `{m.commit}`",
        f"- command: `{report.command}`",
        "",
    ]
    for table in report.tables:
        out += [_md_table(table), ""]
    if report.targets:
        rows = tuple((t.name, t.measured, t.required, f"**{t.verdict}**") for t in report.targets)
        out += [_md_table(Table("Targets", ("target", "measured", "required", "verdict"), rows))]
        out.append("")
    for note in report.notes:
        out.append(f"- {note}")
    if report.notes:
        out.append("")
    for image in report.images:
        out += [f"![{Path(image).stem}]({image})", ""]
    raw = json.dumps({"machine": asdict(m), **report.raw}, indent=1, default=str)
    out += ["<details><summary>raw numbers</summary>", "", "```json", raw, "```", "", "</details>"]
    return "\n".join(out) + "\n"


def append_results(report: Report, path: Path = RESULTS_PATH) -> Path:
    """Append ``report`` to ``path`` (created with a header when missing)."""
    text = render_markdown(report)
    if not path.exists():
        path.write_text(RESULTS_HEADER + "\n" + text, encoding="utf-8")
    else:
        with path.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    return path


def print_report(report: Report, console: Console | None = None) -> None:
    """The report as rich tables on the terminal."""
    console = console or Console()
    console.print(f"[bold]{report.title}[/bold]  {report.machine.describe()}")
    for table in report.tables:
        rt = RichTable(title=table.title, title_justify="left")
        for col in table.columns:
            rt.add_column(col)
        for row in table.rows:
            rt.add_row(*row)
        console.print(rt)
    if report.targets:
        rt = RichTable(title="Targets", title_justify="left")
        for col in ("target", "measured", "required", "verdict"):
            rt.add_column(col)
        for t in report.targets:
            style = {True: "green", False: "red", None: "yellow"}[t.met]
            rt.add_row(t.name, t.measured, t.required, f"[{style}]{t.verdict}[/{style}]")
        console.print(rt)
    for note in report.notes:
        console.print(f"- {note}")
