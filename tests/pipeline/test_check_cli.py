"""``streamfer check-processor``: a plug-in on sample records, no Kafka, in seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_models import sensor_model, sum_model

from streamfer.errors import ConfigError
from streamfer.pipeline.check_cli import check_processor


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return sum_model(tmp_path / "sum.onnx")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(check_processor, list(args))
    return result.exit_code, result.output


def test_it_prints_feeds_outputs_results_and_dead_letters(tmp_path: Path, model: Path) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"values": [1, 2, 3]}\n\n{"values": [1]}\n{"values": [10, 20, 30]}\n')
    code, out = run("plugin_kit:JsonSum", "--model", str(model), "--sample", str(samples),
                    "--set", "scale=2", "--set", "alert_above=50")  # fmt: skip
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "processor JsonSum (plugin_kit:JsonSum) on sum.onnx [onnxruntime]"
    assert "  inputs x float32 [N, 3]; outputs y float32 [N, 1]" in lines
    assert "  #1 dead letter missing_field: sample[0]@1 | no three 'values'" in lines
    assert "  feed x: float32 [2, 3], first row [1. 2. 3.]" in lines
    assert "  output y: float32 [2, 1], first row [6.]" in lines
    assert '  #0 {"result":{"sum":12.0}}' in lines
    assert '''  #2 {"result":{"sum":120.0}}  key=b'alerts'  headers=[('alert', b'yes')]''' in lines
    assert lines[-1] == (
        "3 records: 2 results, 1 dead letters (missing_field 1); 0 batch(es) needed isolating"
    )


def test_a_batch_that_needs_isolating_shows_the_traceback_and_fails(
    tmp_path: Path, model: Path
) -> None:
    samples = tmp_path / "s.txt"
    samples.write_text("ok-1\nraise-2\nok-3\ncount-4\nok-5\n")
    code, out = run("plugin_kit:Faulty", "--model", str(model), "--sample", str(samples),
                    "--batch", "2")  # fmt: skip
    assert code == 1
    assert "prepare failed for the whole batch; the pipeline retries it record by record" in out
    assert 'raise RuntimeError(f"cannot prepare {bad}")' in out  # the plug-in's own line
    assert ("#1 dead letter processor_error: sample[0]@1 | Faulty.prepare raised RuntimeError: "
            "cannot prepare ['sample[0]@1']") in out  # fmt: skip
    assert "#0 {\"result\":{\"n\":1}}" in out
    assert "#3 dead letter processor_error: Faulty.results | returned 1 results for a batch " in out
    assert out.splitlines()[-1].endswith("2 batch(es) needed isolating")


def test_config_problems_are_listed_like_validate_does(tmp_path: Path, model: Path) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"values": [1, 2, 3]}\n')
    result = CliRunner().invoke(check_processor, ["plugin_kit:JsonSum", "--model", str(model),
                                                  "--sample", str(samples), "--set", "scale=-1",
                                                  "--set", "colour=red"])  # fmt: skip
    assert isinstance(result.exception, ConfigError)  # streamfer's entry point: exit status 2
    assert str(result.exception).splitlines() == [
        "check-processor | 2 problems in the config",
        "  check-processor: processor_config.scale | Input should be greater than 0 (got -1). "
        "Note: allowed: > 0.0",
        "  check-processor: processor_config.colour | unknown key (got 'colour'). Note: allowed: "
        "alert_above, scale",
    ]


def test_a_builtin_kind_with_a_plugin_postprocessor(tmp_path: Path) -> None:
    model = sensor_model(tmp_path / "sensor.onnx")
    samples = tmp_path / "w.jsonl"
    samples.write_text("[" + ",".join(["[0, 0, 5, 0, 0, 0]"] * 100) + "]\n")
    code, out = run("sensor", "--model", str(model), "--sample", str(samples),
                    "--postprocessor", "plugin_kit:SensorLabels", "--set", "prefix=c")  # fmt: skip
    assert code == 0, out
    assert "processor SensorProcessor (plugin_kit:SensorLabels) on sensor.onnx" in out
    assert '#0 {"result":{"class":"c' in out


def test_the_processor_config_file_is_processor_config_and_set_goes_on_top(
    tmp_path: Path, model: Path
) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"values": [1, 2, 3]}\n')
    conf = tmp_path / "proc.yaml"
    conf.write_text("scale: 3\nalert_above: 1000\n")
    code, out = run("plugin_kit:JsonSum", "--model", str(model), "--sample", str(samples),
                    "--processor-config", str(conf), "--set", "alert_above=5")  # fmt: skip
    assert code == 0, out
    assert '  processor_config {"scale": 3, "alert_above": 5}' in out.splitlines()
    assert '  #0 {"result":{"sum":18.0}}  key=b\'alerts\'  headers=[(\'alert\', b\'yes\')]' in out


def test_the_old_config_option_says_it_was_renamed(tmp_path: Path, model: Path) -> None:
    conf = tmp_path / "proc.yaml"
    conf.write_text("scale: 3\n")
    code, out = run("plugin_kit:JsonSum", "--model", str(model), "--sample", "-",
                    "--config", str(conf))  # fmt: skip
    assert code == 2
    assert f"--config {conf} | renamed" in out and "--processor-config FILE" in out


def _streamfer_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``streamfer`` command, run in ``cwd`` without PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(Path(sys.executable).parent / "streamfer"), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_a_plugin_in_the_current_directory_imports_without_pythonpath(tmp_path: Path) -> None:
    module = f"kit_{uuid.uuid4().hex[:8]}"  # importable from nowhere else
    shutil.copy(Path(__file__).with_name("plugin_kit.py"), tmp_path / f"{module}.py")
    sum_model(tmp_path / "sum.onnx")
    (tmp_path / "s.jsonl").write_text('{"values": [1, 2, 3]}\n')
    done = _streamfer_in(tmp_path, "check-processor", f"{module}:JsonSum", "--model", "sum.onnx",
                         "--sample", "s.jsonl")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"processor JsonSum ({module}:JsonSum) on sum.onnx" in done.stdout
    assert '  #0 {"result":{"sum":6.0}}' in done.stdout.splitlines()


def test_a_missing_plugin_module_says_where_it_looked(tmp_path: Path) -> None:
    sum_model(tmp_path / "sum.onnx")
    (tmp_path / "s.jsonl").write_text('{"values": [1, 2, 3]}\n')
    done = _streamfer_in(tmp_path, "check-processor", "no_such_kit:JsonSum", "--model",
                         "sum.onnx", "--sample", "s.jsonl")  # fmt: skip
    assert done.returncode == 2
    assert "cannot import 'no_such_kit' (ModuleNotFoundError" in done.stderr
    assert f"looked in {tmp_path}, " in done.stderr  # the current directory first
