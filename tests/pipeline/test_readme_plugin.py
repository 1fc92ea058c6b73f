"""The plug-in printed in the README's "Your own model in five minutes" runs as printed.

(tests/docs/test_doc_commands.py runs the whole section on the broker; this checks the
plug-in and its config on their own, in seconds.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from tiny_models import sum_model

from streamfer.pipeline.check_cli import check_processor
from streamfer.pipeline.config import parse_config

README = Path(__file__).resolve().parents[2] / "README.md"


def written_file(name: str) -> str:
    """The text the README's section writes to ``name`` (``cat > name <<'EOF' ... EOF``)."""
    section = README.read_text().split("## Your own model in five minutes", 1)[1]
    section = section.split("\n## ", 1)[0]
    (text,) = re.findall(rf"^cat > {re.escape(name)} <<'EOF'\n(.*?)^EOF$", section, re.S | re.M)
    return str(text)


def test_the_readme_plugin_runs_on_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = written_file("my_plugins.py")
    assert code.startswith("# my_plugins.py")
    (tmp_path / "my_plugins.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = sum_model(tmp_path / "my_model.onnx")
    samples = tmp_path / "records.jsonl"
    samples.write_text('{"features": [1, 2, 3.5]}\n{"values": []}\n')
    result = CliRunner().invoke(check_processor, ["my_plugins:Scores", "--model", str(model),
                                                  "--sample", str(samples)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '#0 {"result":{"score":6.5}}' in result.output
    assert "#1 dead letter missing_field: sample[0]@1 | no 'features' list" in result.output
    doc = yaml.safe_load(written_file("my.yaml"))
    cfg = parse_config(doc, "my.yaml", tmp_path)
    assert cfg.streams[0].processor == "my_plugins:Scores"


def test_the_interface_docstring_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:  # fmt: skip
    from streamfer.pipeline.processors import base

    doc = base.__doc__ or ""
    lines = doc.split("with less code)::\n\n", 1)[1].splitlines()
    end = next(i for i, line in enumerate(lines) if line and not line.startswith("    "))
    source = "\n".join(line[4:] for line in lines[:end])
    (tmp_path / "doc_plugins.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = sum_model(tmp_path / "m.onnx", features=1)
    samples = tmp_path / "texts"
    samples.mkdir()
    (samples / "a").write_bytes(b"four")
    (samples / "b").write_bytes(b"")
    result = CliRunner().invoke(check_processor, ["doc_plugins:Lengths", "--model", str(model),
                                                  "--sample", str(samples)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '#0 {"result":{"score":4.0}}' in result.output
    assert "#1 dead letter empty: sample[0]@1 | no text. Note: expected UTF-8 text" in result.output
