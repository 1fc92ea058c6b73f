"""``kind: sensor-sample`` end to end: samples in, a decision per assembled window out."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import MODELS, decisions, produce, read_all, wait_for, write_config

from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import load_config
from streamfer.streams.codecs import validate_decision
from streamfer.streams.codecs.sample import encode_sample
from streamfer.streams.local.feeds import sample_feed

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (MODELS / "sensor.onnx").exists(), reason="models/sensor.onnx missing"),
]


def test_samples_become_windows_and_late_ones_are_counted(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out, group = unique_topic(2), unique_topic(1), unique_group()
    msgs = list(itertools.islice(sample_feed(seed=5, vehicles=3, start_ns=10**18), 1500))
    late_value, _ = encode_sample(np.zeros(6, dtype=np.float32), 10**18)  # far behind
    late = [(key, late_value, [("capture-ts-ns", b"%d" % 10**18)]) for key in (b"veh-0000",)]
    produce(kafka_bootstrap, src, msgs[:1200] + late + msgs[1200:])
    stream = {
        "name": "imu", "kind": "sensor-sample", "input_topic": src, "output_topic": out,
        "model": "sensor", "windows": {"size": 100, "hop": 50, "reorder_ms": 50},
        "state": {"enabled": True, "dir": str(tmp_path / "state")},
    }  # fmt: skip
    cfg = load_config(write_config(tmp_path / "p.yaml", kafka_bootstrap, group, [stream],
                                   ["sensor"]))  # fmt: skip
    per_vehicle = {k: sum(1 for m in msgs if m[0] == k) for k in {m[0] for m in msgs}}
    # the last 50 ms of each vehicle (5 samples at 100 Hz) stay held back for reordering
    windows = sum((n - 5 - 100) // 50 + 1 for n in per_vehicle.values() if n - 5 >= 100)
    with Pipeline(cfg, serve_http=False) as pipe:
        pipe.wait_ready(30)
        wait_for(lambda: pipe.stats()["imu"].resolved >= len(msgs) + 1, 60, "all samples")
        stats = pipe.stats()["imu"]
    assert stats.dropped == {"late": 1} and not stats.dead_lettered
    assert stats.decided == windows and stats.absorbed == len(msgs) - windows
    got = decisions(read_all(kafka_bootstrap, out, lambda m: len(m) >= windows, timeout_s=30))
    assert len(got) == windows
    for d in got:
        validate_decision(d)
        assert d["kind"] == "sensor" and d["source"]["key"].startswith("veh-")
