"""The shell blocks of the documentation, as the doc test runs them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = "# not run by the doc test:"
_FENCE = re.compile(r"^```(bash|sh|console)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_FRESH = re.compile(r"<!--\s*doc-test:\s*fresh topics\s+(.*?)\s*-->", re.S)
# commands that need what the test machine does not have: such a block must be marked
NEEDS_MORE = re.compile(
    r"^\s*(docker|kubectl|nvidia-smi|pip install|bash scripts/|sudo |apt-get )", re.M
)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str

    @property
    def skip_reason(self) -> str | None:
        first = self.text.lstrip("\n").splitlines()[0] if self.text.strip() else ""
        return first[len(SKIP):].strip() if first.startswith(SKIP) else None

    @property
    def commands(self) -> str:
        """The shell text: a console block's ``$ `` lines, any other block as it is."""
        if self.language != "console":
            return self.text
        return "".join(line[2:] + "\n" for line in self.text.splitlines() if line.startswith("$ "))

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    """README.md, docs/*.md and examples/*/README.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "examples").glob("*/README.md"))]  # fmt: skip


def blocks(path: Path) -> list[Block]:
    """Every bash, sh or console block of ``path`` in the order written."""
    text = path.read_text(encoding="utf-8")
    return [
        Block(path, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
        for m in _FENCE.finditer(text)
    ]


def fresh_topics(path: Path) -> list[str]:
    """Topics the file's flow expects to start empty (``<!-- doc-test: fresh topics ... -->``)."""
    text = path.read_text(encoding="utf-8")
    return [topic for m in _FRESH.finditer(text) for topic in m.group(1).split()]
