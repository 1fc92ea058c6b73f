"""The bench commands find the cluster by the one bootstrap precedence, the -c file included."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from streamfer.bench.cli import _broker, bench


def test_the_config_files_servers_count_below_the_flag_and_the_override(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMFER__KAFKA__BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("STREAMFER_BOOTSTRAP", "127.0.0.1:1")  # below the file: not used
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"kafka: {{bootstrap_servers: '{kafka_bootstrap}'}}\n")
    assert _broker(None, cfg) == kafka_bootstrap
    assert _broker(kafka_bootstrap, None) == kafka_bootstrap
    monkeypatch.setenv("STREAMFER__KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    cfg.write_text("kafka: {bootstrap_servers: '127.0.0.1:1'}\n")
    assert _broker(None, cfg) == kafka_bootstrap


@pytest.mark.parametrize("command", ["scoring", "server", "frames", "state-restore"])
def test_every_broker_benchmark_takes_bootstrap(command: str) -> None:
    result = CliRunner().invoke(bench, [command, "--help"])
    assert result.exit_code == 0
    assert "--bootstrap HOST:PORT" in result.output
    if command != "state-restore":
        assert "-c, --config FILE" in result.output
