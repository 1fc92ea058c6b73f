"""The engine batching curve on a tiny model: numbers returned, report written."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from streamfer.bench.engine_curve import curve_report, engine_curve, measure_engine_curve
from streamfer.bench.report import render_markdown


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "tiny.onnx"))
    return tmp_path


def test_measures_every_point_and_skips_missing_models(models_dir: Path) -> None:
    curve = measure_engine_curve(
        ["tiny", "absent"], [4, 1], 0.02, intra_op_threads=1, models_dir=models_dir
    )
    assert [(p.model, p.batch) for p in curve.points] == [("tiny", 1), ("tiny", 4)]
    assert curve.skipped == ("absent",)
    assert curve.providers == {"tiny": ("CPUExecutionProvider",)}
    for p in curve.points:
        assert p.calls >= 5
        assert p.elapsed_s >= 0.02
        assert 0 < p.p50_ms <= p.p99_ms
        assert p.samples_per_s == pytest.approx(p.batch * p.calls / p.elapsed_s)


def test_report_has_machine_command_table_and_raw_numbers(models_dir: Path) -> None:
    curve = measure_engine_curve(["tiny"], [1, 2], 0.01, models_dir=models_dir)
    command = "python -m streamfer.bench.engine_curve --seconds 0.01"
    text = render_markdown(curve_report(curve, command))
    assert "Engine batching curve (ONNX Runtime, CPU)" in text
    assert "- machine: " in text and " cores " in text and "GiB RAM" in text
    assert "- commit: `" in text
    assert "`python -m streamfer.bench.engine_curve --seconds 0.01`" in text
    assert "| batch | samples/s | vs batch 1 | p50 ms | p99 ms | calls |" in text
    assert '"engine_curve": [' in text


def test_bad_arguments_are_refused(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="expected > 0"):
        measure_engine_curve(["tiny"], [0], 1.0, models_dir=models_dir)
    result = CliRunner().invoke(engine_curve, ["--batches", "1,x", "--no-record"])
    assert result.exit_code == 2
    assert "expected a comma-separated list" in result.output
