"""One documented set of reasons: what the code writes is in it, and docs/delivery.md shows it."""

from __future__ import annotations

import ast
from pathlib import Path

from streamfer.streams.codecs import REASONS
from streamfer.streams.reasons import (
    DEAD_LETTER_REASONS,
    DROP_REASONS,
    dead_letter_reason,
    markdown_table,
)

ROOT = Path(__file__).resolve().parents[2]
# callable name -> positional index of its reason argument
REASON_ARG = {"CodecError": 1, "Reject": 1, "_Bad": 1, "fail": 2, "reject": 3}
DROPS = {"dropped", "_drop"}


def reason_literals(path: Path) -> set[tuple[str, str]]:
    """(kind, code) of every literal reason code a source file passes on."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        args = [*node.args, *(k.value for k in node.keywords if k.arg == "reason")]
        if name in REASON_ARG and len(node.args) > REASON_ARG[name]:
            args = [node.args[REASON_ARG[name]]]
        elif name not in DROPS:
            continue
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(("drop" if name in DROPS else "dead letter", arg.value))
    return found


def test_every_reason_the_code_writes_is_documented() -> None:
    found: set[tuple[str, str]] = set()
    for package in ("pipeline", "streams"):
        for path in (ROOT / "streamfer" / package).rglob("*.py"):
            found |= reason_literals(path)
    dead = {code for kind, code in found if kind == "dead letter"}
    drops = {code for kind, code in found if kind == "drop"}
    assert dead and drops  # the scan sees the calls at all
    assert dead - set(DEAD_LETTER_REASONS) == set()
    assert drops - set(DROP_REASONS) == set()


def test_codec_reasons_are_the_dead_letter_reasons() -> None:
    assert set(DEAD_LETTER_REASONS) == REASONS
    assert not set(DEAD_LETTER_REASONS) & set(DROP_REASONS)


def test_an_undocumented_code_becomes_processor_error() -> None:
    assert dead_letter_reason("bad_json") == "bad_json"
    assert dead_letter_reason("my_plugin_code") == "processor_error"


def test_the_docs_show_both_tables_as_the_code_has_them() -> None:
    page = (ROOT / "docs" / "delivery.md").read_text(encoding="utf-8")
    delivery = page.split("## Dead-letter and drop reasons", 1)[1].split("\n## ", 1)[0]
    assert markdown_table(DEAD_LETTER_REASONS) in delivery
    assert markdown_table(DROP_REASONS) in delivery
