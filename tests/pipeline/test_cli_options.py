"""The command line's shared options: log options anywhere, JSON log lines, ``run`` starting
with ``--bootstrap`` and ``-vv`` after the command."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from test_outlet import Harness

from streamfer import logs
from streamfer.errors import CodecError
from streamfer.paths import shipped_config
from streamfer.pipeline.cli import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "level"),
    [
        ([], logging.WARNING),
        (["-v"], logging.INFO),
        (["-vv"], logging.DEBUG),
        (["-q"], logging.ERROR),
        (["--log-level", "error", "-vv"], logging.ERROR),
        (["--log-level", "info", "-q"], logging.INFO),
    ],
)
@pytest.mark.parametrize("where", ["before", "after"])
def test_log_options_work_before_and_after_the_command(
    args: list[str], level: int, where: str
) -> None:
    command = ["config", "show", "-c", "fraud"]
    argv = [*args, *command] if where == "before" else [*command, *args]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert logging.getLogger().level == level
    # kafka-python's wire dump never reaches DEBUG: it would log SASL passwords
    assert logging.getLogger("kafka.protocol").level >= logging.INFO


def test_verbose_before_and_after_adds_up() -> None:
    result = CliRunner().invoke(cli, ["-v", "validate", "-c", "fraud", "-v"])
    assert result.exit_code == 0, result.output
    assert logging.getLogger().level == logging.DEBUG


def test_a_nested_command_takes_the_log_options_after_it() -> None:
    result = CliRunner().invoke(cli, ["config", "show", "-c", "fraud", "--log-format", "json",
                                      "-v"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert logging.getLogger().level == logging.INFO
    formatters = [type(h.formatter) for h in logging.getLogger().handlers]
    assert logs.JsonFormatter in formatters


def test_json_lines_carry_the_dead_letter_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(logging.WARNING, "json")
    h = Harness()
    b = h.batch(3, first=40)
    h.outlet.dead_letter(b, 1, CodecError("tx[2]@41 | bad", "bad_json"), "bad_json")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    (doc,) = [d for d in docs if "dead letter" in d["message"]]
    assert doc["level"] == "warning" and doc["logger"] == "streamfer.pipeline.outlet"
    assert doc["message"] == "s | dead letter (bad_json): tx[2]@41 | bad"
    assert (doc["stream"], doc["topic"], doc["partition"], doc["offset"], doc["reason"]) == (
        "s", "tx", 2, 41, "bad_json"
    )
    assert doc["ts"].endswith("+00:00") and "T" in doc["ts"]


def test_json_lines_leave_out_fields_the_record_does_not_carry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(logging.INFO, "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("streamfer.x").exception("failed %s", "here")
    doc = json.loads(capsys.readouterr().err.strip())
    assert set(doc) == {"ts", "level", "logger", "message", "exc"}
    assert doc["message"] == "failed here" and "ValueError: boom" in doc["exc"]


def _reader(stream: Iterator[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], seen: list[str], match: Callable[[str], bool],
              timeout_s: float) -> bool:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if match(line):
            return True
    return False


def test_run_starts_with_bootstrap_and_verbose_after_the_command(
    tmp_path: Path, kafka_bootstrap: str, unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:  # fmt: skip
    doc = yaml.safe_load(shipped_config("fraud").read_text())
    topic = unique_topic()
    doc["kafka"]["bootstrap_servers"] = "127.0.0.1:1"  # the flag must win over the file
    doc["consumer"]["group_id"] = unique_group()
    doc["models"]["fraud"]["path"] = str(REPO / "streamfer" / "models" / "fraud.onnx")
    doc["streams"][0].update(input_topic=topic, output_topic=f"{topic}.out")
    doc["metrics"] = {"port": 0, "host": "127.0.0.1"}
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFER__")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamfer.pipeline.cli", "run", "-c", str(cfg),
         "--bootstrap", kafka_bootstrap, "-vv", "--log-format", "json"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    lines, seen = _reader(proc.stderr), []
    try:
        started = _wait_for(lines, seen, lambda s: "streamfer worker 0: running" in s, 120)
        assert started, "".join(seen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _wait_for(lines, seen, lambda s: False, 1.0)  # what is left of stderr
    docs = [json.loads(s) for s in seen if s.startswith("{")]
    assert any(d["level"] == "debug" for d in docs), "".join(seen)  # -vv after `run`
    assert all({"ts", "level", "logger", "message"} <= set(d) for d in docs)
    assert "127.0.0.1:1" not in "".join(seen)
    assert any("stopping: finishing records in flight" in s for s in seen)


def _leaves() -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                yield f"{name} {sub_name}", sub
        else:
            yield name, command


def test_every_command_shares_the_option_conventions() -> None:
    leaves = dict(_leaves())
    assert {"run", "validate", "demo", "check-processor", "config show", "produce camera",
            "bench scoring", "broker start", "engines build"} <= set(leaves)  # fmt: skip
    for name, command in leaves.items():
        opts = {o: p for p in command.params for o in p.opts}
        assert {"-v", "-q", "--log-level", "--log-format"} <= set(opts), name
        if "--target" in opts:
            assert opts["--target"].default == "auto", name
        config = opts.get("--config")
        if config is not None and not getattr(config, "hidden", False):
            assert "-c" in config.opts, f"{name}: -c/--config names the pipeline file"
    for name in ("run", "validate", "demo", "config show", "produce transactions",
                 "produce sensor", "produce camera", "bench scoring", "bench server",
                 "bench frames", "bench state-restore"):  # fmt: skip
        assert "--bootstrap" in {o for p in leaves[name].params for o in p.opts}, name
    for name in ("run", "demo"):
        assert {"--metrics-host", "--metrics-port"} <= {
            o for p in leaves[name].params for o in p.opts
        }, name
