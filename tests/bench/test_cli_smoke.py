"""Each benchmark command at a tiny size: it finishes and records well-formed output.

No timing is asserted: numbers on a shared test machine mean nothing. What is
checked is that every system under test ran, every record got its output, and
the result section names the machine, the command and the targets.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from streamfer.bench.cli import bench
from streamfer.bench.kafka_io import broker_topics, wait_visible

MODELS = Path(__file__).resolve().parents[2] / "streamfer" / "models"
VERDICT = re.compile(r"\| \*\*(met|MISSED|not measured)\*\* \|")


def _run(args: list[str]) -> Result:
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _section(path: Path, title: str) -> str:
    text = path.read_text()
    assert text.startswith("# streamfer benchmark results")
    assert f"## {title}" in text
    assert "- machine: " in text and "- commit: `" in text and "- command: `" in text
    return text


def _needs(model: str) -> None:
    if not (MODELS / f"{model}.onnx").exists():
        pytest.skip(f"models/{model}.onnx not there yet")


@pytest.mark.integration
def test_scoring_runs_every_system(kafka_bootstrap: str, tmp_path: Path) -> None:
    _needs("fraud")
    results = tmp_path / "RESULTS.md"
    _run(["scoring", "--bootstrap", kafka_bootstrap, "--results", str(results),
          "--records", "300", "--naive-records", "20", "--repeats", "1",
          "--metrics-off"])  # fmt: skip
    text = _section(results, "Transaction scoring throughput")
    for row in (
        "| passthrough-kafka-python | 300 |",
        "| passthrough-confluent | 300 |",
        "| naive | 20 |",
        "| plain-loop | 300 |",
        "| tuned-loop | 300 |",
        "| streamfer | 300 |",
        "| streamfer-metrics-off | 300 |",
        "| streamfer / tuned-loop |",
        "| streamfer / plain-loop |",
        "| metrics off / metrics on |",
        "| streamfer vs tuned loop |",
        "| streamfer CPU per record |",
    ):
        assert row in text
    assert len(VERDICT.findall(text)) == 4
    assert '"system": "streamfer"' in text and '"system": "tuned-loop"' in text


@pytest.mark.integration
def test_scoring_runs_only_the_chosen_systems(kafka_bootstrap: str, tmp_path: Path) -> None:
    _needs("fraud")
    results = tmp_path / "RESULTS.md"
    _run(["scoring", "--bootstrap", kafka_bootstrap, "--results", str(results),
          "--records", "200", "--repeats", "2", "--systems", "tuned-loop,plain-loop"])  # fmt: skip
    text = _section(results, "Transaction scoring throughput")
    assert "| plain-loop | 200 |" in text and "| tuned-loop | 200 |" in text
    assert "| tuned-loop / plain-loop |" in text
    for absent in ("| streamfer |", "| naive |", "passthrough-confluent |"):
        assert absent not in text
    assert VERDICT.findall(text) == ["not measured"] * 4  # streamfer did not run


def test_scoring_refuses_an_unknown_system() -> None:
    result = CliRunner().invoke(bench, ["scoring", "--systems", "tuned-loop,fast-loop"])
    assert result.exit_code == 2
    assert "fast-loop" in result.output and "plain-loop" in result.output


@pytest.mark.integration
def test_server_ladder_reports_percentiles_and_chart(
    kafka_bootstrap: str, tmp_path: Path, unique_topic: Callable[..., str]
) -> None:
    _needs("fraud")
    held = unique_topic(partitions=3)  # so the broker holds partitions, fresh or not
    wait_visible(kafka_bootstrap, [held])
    results = tmp_path / "RESULTS.md"
    _run(["server", "--bootstrap", kafka_bootstrap, "--results", str(results),
          "--max-rate", "200", "--fractions", "0.25,0.5", "--min-duration", "2",
          "--min-records", "10", "--budget", "30"])  # fmt: skip
    text = _section(results, "Server scenario (transaction)")
    assert "| 50 | 25% | file | " in text and "| 100 | 50% | file | " in text
    assert "p99 at 50% of max throughput" in text and len(VERDICT.findall(text)) == 1
    assert "![server-transaction](server-transaction.png)" in text
    assert (tmp_path / "server-transaction.png").stat().st_size > 0
    assert '"decided": ' in text
    counted = re.search(r"- broker: ([\d,]+) partitions before the run", text)
    assert counted and int(counted.group(1).replace(",", "")) >= 3, "the broker's size is named"
    by_thread = re.search(r"CPU µs per record by thread[^\n]*\n\n(\|[^\n]*\|)\n", text)
    assert by_thread, "CPU per thread reported"
    header = by_thread.group(1)  # the pipeline names its threads in the OS
    assert "consume-" in header and "engine-" in header and "librdkafka" in header, header
    assert "acks-" in header, header  # the stream's delivery thread, named for the stream
    machine = re.search(r"Where the machine's CPU went[^\n]*the broker \(pid \d+\)[^\n]*\n\n"
                        r"[^\n]*\n[^\n]*\n(\|[^\n]*\|)\n", text)  # the local broker found
    assert machine, "the machine's CPU by party, with the broker's"
    cells = [c.strip() for c in machine.group(1).strip("|").split("|")]
    assert all(c.replace(".", "").isdigit() for c in cells[3:]), cells  # every party measured


@pytest.mark.integration
def test_server_no_record_writes_neither_results_nor_chart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _needs("fraud")
    results = tmp_path / "RESULTS.md"
    before = set(broker_topics(kafka_bootstrap))
    stores = Path(tempfile.gettempdir()) / "streamfer-state"  # the shipped configs' default
    stores_before = set(stores.iterdir()) if stores.is_dir() else set()
    out = _run(["server", "--bootstrap", kafka_bootstrap, "--results", str(results), "--no-record",
                "--max-rate", "100", "--fractions", "0.5", "--min-duration", "1",
                "--min-records", "10", "--budget", "10", "--placements", "shared",
                "--warmup-max", "0"])  # fmt: skip
    assert "p99" in out.output
    assert list(tmp_path.iterdir()) == [], "--no-record: nothing written beside the results"
    left = {t for t in set(broker_topics(kafka_bootstrap)) - before if t.startswith("bench-")}
    assert not left, f"topics the run made and left (the changelog included): {left}"
    stores_after = set(stores.iterdir()) if stores.is_dir() else set()
    assert stores_after <= stores_before, f"state stores left: {stores_after - stores_before}"


@pytest.mark.integration
def test_server_runs_profiles_side_by_side_shared_and_pinned(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _needs("fraud")
    results = tmp_path / "RESULTS.md"
    _run(["server", "--bootstrap", kafka_bootstrap, "--results", str(results),
          "--profiles", "low,throughput", "--placements", "shared,pinned", "--probe-records",
          "3000", "--rates", "100", "--min-duration", "2", "--min-records", "10",
          "--budget", "20", "--warmup-max", "5"])  # fmt: skip
    text = _section(results, "Server scenario (transaction)")
    rows = [ln for ln in text.splitlines() if ln.startswith("| 100 | — |")]
    assert [r.split(" | ")[2:4] for r in rows] == [
        ["low", "shared"], ["low", "pinned"], ["throughput", "shared"], ["throughput", "pinned"]
    ]  # interleaved: every profile and placement at a rate before the next rate
    assert all(float(r.split(" | ")[4]) > 0 for r in rows)  # CPU µs per record
    assert "Drain maximum per latency profile" in text
    assert "| low | " in text and "| throughput | " in text
    assert "broker warm-up at the first rate before the ladder:" in text
    if len(os.sched_getaffinity(0)) >= 2:
        assert "generator and read-back on core(s)" in text


@pytest.mark.integration
def test_server_camera_counts_dropped_frames_as_late(kafka_bootstrap: str, tmp_path: Path) -> None:
    _needs("camera")
    results = tmp_path / "RESULTS.md"
    _run(["server", "--stream", "camera", "--bootstrap", kafka_bootstrap, "--results",
          str(results), "--max-rate", "20", "--fractions", "0.5", "--min-duration", "2",
          "--min-records", "10", "--budget", "10"])  # fmt: skip
    text = _section(results, "Server scenario (camera)")
    assert "| 10 | 50% | file | " in text and "bound 100 ms" in text
    assert (tmp_path / "server-camera.png").stat().st_size > 0


@pytest.mark.integration
def test_frames_splits_the_camera_path(kafka_bootstrap: str, tmp_path: Path) -> None:
    _needs("camera")
    results = tmp_path / "RESULTS.md"
    _run(["frames", "--bootstrap", kafka_bootstrap, "--results", str(results),
          "--frames", "16", "--repeats", "1", "--split-frames", "8",
          "--limit-seconds", "0.2"])  # fmt: skip
    text = _section(results, "Frame path (camera)")
    for stage in ("kafka I/O", "decode", "preprocess", "inference", "postprocess", "publish"):
        assert f"| {stage} |" in text
    assert "camera path / lower limit" in text and len(VERDICT.findall(text)) == 1


def test_batching_curve_and_gain(tmp_path: Path) -> None:
    _needs("fraud")
    results = tmp_path / "RESULTS.md"
    _run(["batching", "--results", str(results), "--models", "fraud", "--batches", "1,4",
          "--seconds", "0.05", "--gain-seconds", "0.05", "--steps", "1"])  # fmt: skip
    text = _section(results, "Batching curve and dynamic batcher gain")
    assert "| fraud | 50 |" in text and "batcher gain (fraud" in text
    assert (tmp_path / "batching-curve.png").stat().st_size > 0
