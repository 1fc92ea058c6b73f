"""``streamfer validate`` and ``streamfer run --help`` through the real entry point."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from kafka.protocol.sasl import SaslAuthenticateRequest

from streamfer.pipeline.config import parse_config
from streamfer.pipeline.run_cli import with_metrics


def streamfer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamfer.pipeline.cli", *args],
        capture_output=True, text=True, timeout=60,
    )


def test_validate_prints_a_summary_for_a_good_file(tmp_path: Path) -> None:
    (tmp_path / "fraud.onnx").write_bytes(b"onnx")
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "kafka": {"sasl_password": "hunter2", "security_protocol": "SASL_SSL",
                          "sasl_mechanism": "PLAIN", "sasl_username": "u"},
                "models": {"fraud": {"path": "fraud.onnx"}},
                "streams": [{"name": "pay", "kind": "transaction", "input_topic": "tx",
                             "output_topic": "out", "model": "fraud"}],
            }
        )
    )  # fmt: skip
    done = streamfer("validate", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    assert f"{cfg}: OK" in done.stdout
    assert "stream pay (transaction): tx -> fraud -> out" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr


def test_validate_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("models: {}\nstreams: [{name: x, kind: video}]\nmetrics: {port: 70000}\n")
    done = streamfer("validate", "-c", str(cfg))
    assert done.returncode == 2
    err = done.stderr
    assert "models | " in err and "streams[0].kind | " in err and "metrics.port | " in err
    assert "streams[0].input_topic | required key missing" in err
    assert "Note: allowed: camera, sensor, sensor-sample, transaction" in err


def test_run_help_documents_workers_and_signals() -> None:
    done = streamfer("run", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # help text is wrapped to the terminal
    assert "--workers" in text and "metrics.port + i" in text
    assert "A second signal exits at once" in text


def test_run_help_documents_the_metrics_host_and_its_default() -> None:
    done = streamfer("run", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--metrics-host ADDRESS" in text and "default 0.0.0.0" in text


def test_metrics_host_and_port_options_override_the_config(tmp_path: Path) -> None:
    (tmp_path / "fraud.onnx").write_bytes(b"onnx")
    doc = {
        "models": {"fraud": {"path": "fraud.onnx"}},
        "streams": [{"name": "pay", "kind": "transaction", "input_topic": "tx",
                     "output_topic": "out", "model": "fraud"}],
        "metrics": {"host": "0.0.0.0", "port": 9999},
    }  # fmt: skip
    cfg = parse_config(doc, base_dir=tmp_path)
    assert with_metrics(cfg, None, None) is cfg
    local = with_metrics(cfg, "127.0.0.1")
    assert (local.metrics.host, local.metrics.port) == ("127.0.0.1", 9999)
    assert cfg.metrics.host == "0.0.0.0"  # frozen config: a changed copy, not a change
    moved = with_metrics(cfg, None, 0)
    assert (moved.metrics.host, moved.metrics.port) == ("0.0.0.0", 0)


def test_run_and_demo_both_take_metrics_host_and_port() -> None:
    for command in ("run", "demo"):
        done = streamfer(command, "--help")
        assert done.returncode == 0, done.stderr
        text = " ".join(done.stdout.split())
        assert "--metrics-host ADDRESS" in text and "--metrics-port PORT" in text, command
        assert "--bootstrap HOST:PORT" in text, command


@pytest.mark.parametrize(
    "args", [["-vv", "validate"], ["validate", "-vv"], ["--log-level", "debug", "validate"]]
)
def test_debug_logs_leave_out_kafka_python_wire_dumps(tmp_path: Path, args: list[str]) -> None:
    # kafka-python logs each request at DEBUG, a SASL PLAIN login's password included
    sasl_plain = SaslAuthenticateRequest(auth_bytes=b"\x00svc\x00hunter2")
    script = (
        "import logging, sys\n"
        "from streamfer.pipeline.cli import cli\n"
        f"cli.main([*{args!r}, '-c', sys.argv[1]], standalone_mode=False)\n"
        "logging.getLogger('kafka.protocol.parser').debug('Sending request %s', sys.argv[2])\n"
        "logging.getLogger('streamfer.pipeline.app').debug('streamfer debug line')\n"
    )
    (tmp_path / "fraud.onnx").write_bytes(b"onnx")
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "models": {"fraud": {"path": "fraud.onnx"}},
                "streams": [{"name": "pay", "kind": "transaction", "input_topic": "tx",
                             "output_topic": "out", "model": "fraud"}],
            }
        )
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", script, str(cfg), repr(sasl_plain)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "streamfer debug line" in done.stderr
    assert "hunter2" not in done.stderr


def test_workers_get_the_log_bootstrap_and_metrics_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streamfer import logs
    from streamfer.pipeline import run_cli

    started: list[list[str]] = []

    class Done:
        returncode = 0

        def __init__(self, args: list[str], **_: object) -> None:
            started.append(args)

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(run_cli.subprocess, "Popen", Done)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure(logging.DEBUG, "json")
        code = run_cli._run_workers(Path("p.yaml"), 2, "h:1", "127.0.0.1", 9500)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert code == 0
    assert [args[3:] for args in started] == [
        ["run", "-c", "p.yaml", "--log-level", "debug", "--log-format", "json", "--bootstrap",
         "h:1", "--metrics-host", "127.0.0.1", "--metrics-port", "9500", "--worker-index", str(i)]
        for i in range(2)
    ]  # fmt: skip


def test_run_freezes_the_start_up_heap_once_the_pipeline_has_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    from streamfer.pipeline import app, run_cli

    calls: list[str] = []
    real_freeze = run_cli.freeze_start_up_heap

    class Started:
        """The pipeline as ``streamfer run`` drives it: started, ended at once, stopped."""

        http_url = None
        failure = None

        def __init__(self, cfg: object, **_: object) -> None:
            self.cfg = cfg

        def start(self) -> None:
            calls.append("start")

        def wait(self, timeout_s: float | None = None) -> bool:
            return True

        def stop(self, drain: bool = True) -> None:
            calls.append("stop")

        def stats(self) -> dict[str, object]:
            return {}

    def freeze() -> int:
        calls.append("freeze")
        return 1

    monkeypatch.setattr(app, "Pipeline", Started)
    monkeypatch.setattr(run_cli, "freeze_start_up_heap", freeze)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        cfg = SimpleNamespace(streams=[])
        assert run_cli._run_one(cfg, 0) == 0  # type: ignore[arg-type]
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert calls == ["start", "freeze", "stop"]

    # and the real one: what is alive now leaves the collector's generations
    gc.unfreeze()
    try:
        before = len(gc.get_objects())
        frozen = real_freeze()
        assert frozen > 0 and frozen >= before // 2
        assert len(gc.get_objects()) < frozen // 10
    finally:
        gc.unfreeze()
