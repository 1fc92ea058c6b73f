"""`streamfer engines build|inspect` on tiny models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from streamfer.engines.cli import engines
from streamfer.errors import EngineError


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` must mean ONNX Runtime here even on a host with TensorRT."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_inspect_prints_specs_metadata_engine_and_cache(mlp_onnx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = CliRunner().invoke(engines, ["inspect", str(mlp_onnx), "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "features" in out and "[N, 4]" in out
    assert "score" in out and "[N, 3]" in out
    assert "streamfer.version" in out and "0.0.1" in out
    assert "engine: onnxruntime fp32 (target auto); session providers: CPUExecutionProvider" in out
    assert f"cache: {cache}" in out
    assert "nothing cached for this model yet" in out


def test_build_onnxruntime_writes_and_checks_the_optimised_graph(
    mlp_onnx: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    args = ["build", str(mlp_onnx), "--target", "onnxruntime", "--max-batch", "8"]
    result = CliRunner().invoke(engines, [*args, "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    built = list((cache / "onnxruntime").glob("mlp-*.onnx"))
    assert len(built) == 1
    assert onnx.load(str(built[0])).graph.node  # a loadable graph
    assert f"saved to {built[0]}" in result.output
    assert "outputs match the original at batch 1, 8" in result.output
    again = CliRunner().invoke(engines, ["inspect", str(mlp_onnx), "--cache-dir", str(cache)])
    assert f"{built[0]} (present)" in again.output


def test_fp16_on_onnxruntime_is_refused(mlp_onnx: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        engines, ["build", str(mlp_onnx), "--precision", "fp16", "--cache-dir", str(tmp_path)]
    )
    assert isinstance(result.exception, EngineError)
    assert "precision fp16 requested but TensorRT is not usable" in str(result.exception)
    assert not (tmp_path / "onnxruntime").exists()


def test_inspect_engine_without_sidecar_is_explained(tmp_path: Path) -> None:
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"\x00")
    result = CliRunner().invoke(engines, ["inspect", str(engine)])
    assert isinstance(result.exception, EngineError)
    assert "no readable sidecar x.json" in str(result.exception)


@pytest.mark.parametrize("command", ["inspect", "build"])
def test_missing_model_is_a_one_line_error(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "streamfer.pipeline.cli", "engines", command, str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {missing} | no such file. Note: expected an ONNX model file (.onnx)"
    )


def test_a_file_that_is_not_onnx_is_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("just some text, not a model\n")
    result = CliRunner().invoke(engines, ["inspect", str(text)])
    assert isinstance(result.exception, EngineError)
    assert str(result.exception).startswith(f"{text} | ")
    assert "expected an ONNX" in str(result.exception)


def test_build_progress_follows_tensorrt_phases() -> None:
    """TensorRT reports nested phases; top-level ones stay on screen, finished children go."""
    import io

    from rich.console import Console

    from streamfer.engines.cli import RichBuildProgress

    out = io.StringIO()
    with RichBuildProgress(Console(file=out, width=120)) as progress:
        progress.note("building mlp (fp16, batch 1..8) with TensorRT 11.4.0")
        progress.phase_start("Building engine", None, 2)
        progress.phase_start("Tactic selection", "Building engine", 3)
        for step in range(3):
            progress.step_complete("Tactic selection", step)
        progress.phase_finish("Tactic selection")
        progress.step_complete("Building engine", 0)
        progress.step_complete("unknown phase", 0)  # never started: ignored
        progress.phase_finish("Building engine")
    text = out.getvalue()
    assert "building mlp (fp16, batch 1..8) with TensorRT 11.4.0" in text
    assert "Building engine" in text
    assert "2/2" in text
    assert "Tactic selection" not in text.splitlines()[-1]


@pytest.mark.parametrize("model", ["fraud", "sensor", "camera"])
def test_inspect_and_build_every_reference_model(model: str, tmp_path: Path) -> None:
    from tiny_onnx import REFERENCE_DIR

    path = REFERENCE_DIR / f"{model}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not produced yet")
    cache = ["--cache-dir", str(tmp_path)]
    shown = CliRunner().invoke(engines, ["inspect", str(path), *cache])
    assert shown.exit_code == 0, shown.output
    assert "streamfer.name" in shown.output and model in shown.output
    assert "engine: onnxruntime fp32" in shown.output
    built = CliRunner().invoke(
        engines, ["build", str(path), "--target", "onnxruntime", "--max-batch", "4", *cache]
    )
    assert built.exit_code == 0, built.output
    assert "outputs match the original at batch 1, 4" in built.output
    assert len(list((tmp_path / "onnxruntime").glob(f"{model}-*.onnx"))) == 1
