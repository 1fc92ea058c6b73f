"""``python -m streamfer.bench.state_window`` at a small size (enough records that the
drain outlasts its start): every variant drains the whole backlog and is reported, with the
state store's cost beside state off. No timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from streamfer.bench.state_window import VARIANTS


@pytest.mark.integration
def test_every_variant_drains_and_is_reported_by_thread(kafka_bootstrap: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamfer.bench.state_window", "--bootstrap", kafka_bootstrap,
         "--records", "30000", "--rounds", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for name in VARIANTS:
        (row,) = [ln for ln in lines if re.match(rf"round 1 +{re.escape(name)}:", ln)]
        assert re.search(r"[\d,]+/s, +[\d.]+ µs CPU a record", row), row
        assert "consume-" in row and "engine-" in row, row  # by the threads' OS names
        (median,) = [ln for ln in lines if re.match(rf"median +{re.escape(name)}:", ln)]
        assert "over state off: process " in median and "consumer thread " in median, median
