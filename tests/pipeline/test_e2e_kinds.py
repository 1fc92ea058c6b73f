"""End to end for camera frames and sensor windows on the real broker (tiny ONNX models).

N records in -> every record decided, dropped as stale (camera, realtime only) or
dead-lettered with its reason; offsets committed past all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import committed, config_doc, decisions, produce, read_all, wait_for
from tiny_models import camera_model, sensor_model

from streamfer.models.generators.scenes import SceneGenerator
from streamfer.models.generators.sensor import SensorGenerator
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import parse_config
from streamfer.streams.codecs import encode_camera, encode_sensor, validate_decision

pytestmark = pytest.mark.integration


def pipeline_for(tmp_path: Path, bootstrap: str, group: str, model: Path, stream: dict) -> Pipeline:
    doc = config_doc(bootstrap, group, [stream], {stream["model"]: model})
    return Pipeline(parse_config(doc, "test", tmp_path))


def check_outcomes(
    pipe: Pipeline, bootstrap: str, group: str, src: str, out: str, n: int, decided: int
) -> list[dict]:
    name = pipe.config.streams[0].name
    wait_for(lambda: pipe.stats()[name].resolved >= n, 60, "every record resolved")
    got = decisions(read_all(bootstrap, out, lambda m: len(m) >= decided))
    assert len(got) == decided
    for d in got:
        validate_decision(d)
    wait_for(lambda: sum(committed(bootstrap, group, src).values()) == n, 30, "offsets committed")
    return got


@pytest.mark.parametrize("mode", ["realtime", "replay"])
def test_camera_frames_decided_stale_dropped_bad_dead_lettered(
    mode: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out, group = unique_topic(2), unique_topic(1), unique_group()
    stream = {
        "name": "cams", "kind": "camera", "input_topic": src, "output_topic": out,
        "model": "camera", "mode": mode, "deadline_ms": 5000,
        "batching": {"max_batch": 4, "max_wait_ms": 5},
    }  # fmt: skip
    pipe = pipeline_for(tmp_path, kafka_bootstrap, group, camera_model(tmp_path / "c.onnx"), stream)
    scenes = SceneGenerator(seed=1)
    with pipe:
        pipe.wait_ready(30)
        messages = []
        for i in range(30):
            cam = i % 3
            age_ns = 60 * 10**9 if i % 3 == 1 else 0  # a third were captured a minute ago
            value, headers = encode_camera(
                scenes.render(cam).image, capture_ts_ns=time.time_ns() - age_ns, frame_seq=i
            )
            if i % 6 == 5:
                value = value[: len(value) // 3]  # truncated JPEG
            messages.append((f"cam-{cam}".encode(), value, headers))
        n = produce(kafka_bootstrap, src, messages)
        bad, stale = 5, 10 if mode == "realtime" else 0
        got = check_outcomes(pipe, kafka_bootstrap, group, src, out, n, n - bad - stale)
        snap = pipe.stats()["cams"]
    assert snap.dropped == ({"stale": stale} if stale else {})
    assert snap.dead_lettered == {"corrupt_image": bad}
    for d in got:
        assert d["frame"]["width"] == 640 and d["frame"]["height"] == 360
        vehicles = [x for x in d["result"]["detections"] if x["label"] == "vehicle"]
        assert len(vehicles) == 1
        x1, y1, x2, y2 = vehicles[0]["box"]  # input (108,113)-(148,143) back in frame pixels
        assert (x1, y1, x2, y2) == pytest.approx((270, 142.5, 370, 217.5), abs=1)
    letters = read_all(kafka_bootstrap, f"{src}.dlq", lambda m: len(m) >= bad)
    assert {dict(m.headers)["error-reason"] for m in letters} == {b"corrupt_image"}


def test_sensor_windows_decided_and_bad_ones_dead_lettered(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out, group = unique_topic(2), unique_topic(1), unique_group()
    stream = {
        "name": "imu", "kind": "sensor", "input_topic": src, "output_topic": out,
        "model": "sensor", "deadline_ms": 200, "batching": {"max_batch": 8, "max_wait_ms": 5},
    }  # fmt: skip
    gen = SensorGenerator(seed=2)
    messages = []
    for i in range(40):
        vehicle, window, _ = gen.next()
        value, headers = encode_sensor(window, fmt="json" if i % 2 else "raw")
        if i % 8 == 7:
            value, headers = encode_sensor(np.zeros((50, 6), np.float32))  # wrong window shape
        messages.append((vehicle.encode(), value, headers))
    n = produce(kafka_bootstrap, src, messages)
    pipe = pipeline_for(tmp_path, kafka_bootstrap, group, sensor_model(tmp_path / "s.onnx"), stream)
    with pipe:
        got = check_outcomes(pipe, kafka_bootstrap, group, src, out, n, n - 5)
        snap = pipe.stats()["imu"]
    assert snap.dead_lettered == {"bad_shape": 5} and snap.dropped == {}
    assert {d["result"]["class"] for d in got} <= {
        "normal", "hard_brake", "swerve", "impact", "uncertain"
    }  # fmt: skip
    assert all(d["kind"] == "sensor" and d["model"]["version"] == "tiny" for d in got)


def test_latest_per_key_keeps_the_newest_frame_of_each_camera(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out, group = unique_topic(1), unique_topic(1), unique_group()
    stream = {
        "name": "cams", "kind": "camera", "input_topic": src, "output_topic": out,
        "model": "camera", "deadline_ms": 60000, "latest_per_key": True,
        "batching": {"max_batch": 32, "max_wait_ms": 300},
    }  # fmt: skip
    scenes = SceneGenerator(seed=3)
    messages = []
    for i in range(24):  # a backlog: polled together, older frames of a camera superseded
        cam = i % 2
        value, headers = encode_camera(
            scenes.render(cam).image, capture_ts_ns=time.time_ns(), frame_seq=i
        )
        messages.append((f"cam-{cam}".encode(), value, headers))
    n = produce(kafka_bootstrap, src, messages)
    pipe = pipeline_for(tmp_path, kafka_bootstrap, group, camera_model(tmp_path / "c.onnx"), stream)
    with pipe:
        wait_for(lambda: pipe.stats()["cams"].resolved >= n, 60, "every frame resolved")
        snap = pipe.stats()["cams"]
        got = decisions(read_all(kafka_bootstrap, out, lambda m: len(m) >= snap.decided))
        wait_for(lambda: sum(committed(kafka_bootstrap, group, src).values()) == n, 30, "commit")
    superseded = snap.dropped.get("superseded", 0)
    assert superseded > 0 and snap.decided + superseded == n
    assert set(snap.dropped) == {"superseded"} and snap.dead_lettered == {}
    newest = {f"cam-{cam}": max(i for i in range(n) if i % 2 == cam) for cam in (0, 1)}
    decided_seqs = {(d["source"]["key"], d["frame"]["seq"]) for d in got}
    assert set(newest.items()) <= decided_seqs
