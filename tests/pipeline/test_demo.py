"""`streamfer demo` end to end on the real broker: all three streams decide, frames are drawn."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_helpers import assert_demo_summary_resolves_every_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_decides_every_stream_and_writes_annotated_frames(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "frames"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamfer.pipeline.cli",
            "demo",
            "--duration",
            "8",
            "--no-live",
            "--bootstrap",
            kafka_bootstrap,
            "--metrics-port",
            "0",
            "--out",
            str(out),
            "--frames",
            "2",
            "--tx-rate",
            "100",
            "--bad-every",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = assert_demo_summary_resolves_every_record(done.stderr)
    assert rows["transaction"][2] == 0, "transactions are never dropped"
    assert rows["transaction"][3] > 0, "malformed transactions must reach the DLQ"
    assert re.search(r"Prometheus metrics at .*http://[^ ]+/metrics", done.stderr)
    frames = sorted(out.glob("frame-*.jpg"))
    assert frames, f"no annotated frame written\n{done.stderr[-2000:]}"
    assert all(f.stat().st_size > 5000 for f in frames)
    # no Python or library warnings, and the deliberate dead letters only in the table
    noise = [ln for ln in done.stderr.splitlines() if re.search(r"Warning|WARNING|warn\(", ln)]
    assert noise == [], "\n".join(noise)
