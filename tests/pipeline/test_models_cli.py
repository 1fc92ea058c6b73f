"""``streamfer models status`` through the real entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from e2e_helpers import MODELS


def status(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamfer.pipeline.cli", "models", "status", "-c", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def config(tmp_path: Path, version: str) -> Path:
    root = tmp_path / "fraud"
    for name in ("1", "2", "10"):
        (root / name).mkdir(parents=True)
        shutil.copyfile(MODELS / "fraud.onnx", root / name / "model.onnx")
    (root / "10" / "model.md").write_text("# fraud 10")
    (root / "11").mkdir()  # being written: no model.onnx yet
    doc = {
        "models": {"fraud": {"path": "fraud", "version": version, "poll_s": 5}},
        "streams": [{"name": "payments", "kind": "transaction", "model": "fraud",
                     "input_topic": "tx", "output_topic": "decisions"}],
    }  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_status_lists_the_versions_in_order_and_what_each_stream_serves(tmp_path: Path) -> None:
    got = status(config(tmp_path, "10"))
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].endswith("fraud (version: 10, polled every 5 s)")
    assert lines[1:5] == ["    1", "    2", "  * 10  [card model.md]", "    11  [no model.onnx]"]
    assert lines[5] == "stream payments: model fraud version 10"


def test_status_says_why_latest_cannot_serve_an_empty_newest_version(tmp_path: Path) -> None:
    cfg = config(tmp_path, "10")
    cfg.write_text(cfg.read_text().replace("version: '10'", "version: latest"))
    got = status(cfg)
    assert got.returncode == 2, got.stdout  # the config itself is refused
    assert "models.fraud.version | " in got.stderr and "version 11 has no model.onnx" in got.stderr
