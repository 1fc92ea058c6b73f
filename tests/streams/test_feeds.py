"""Producer feeds (no broker): generated, file-based and deliberately malformed records."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from recordkit import make_record

from streamfer.errors import CodecError, ConfigError
from streamfer.streams.codecs import CodecLimits, decode_camera, decode_sensor, decode_transaction
from streamfer.streams.local.feeds import camera_feed, sensor_feed, transaction_feed

LIMITS = CodecLimits()


def test_generated_transactions_decode_and_are_keyed_by_card() -> None:
    for key, value, headers in itertools.islice(transaction_feed(seed=3), 200):
        tx = decode_transaction(make_record(value, headers, key=key), LIMITS)
        assert key == tx["card_id"].encode()
        assert headers == []


def test_malformed_ratio_injects_marked_records_the_codec_rejects() -> None:
    feed = itertools.islice(transaction_feed(seed=1, malformed_ratio=0.3), 1000)
    kinds: set[bytes] = set()
    bad = 0
    for key, value, headers in feed:
        record = make_record(value, headers, key=key)
        if headers:
            bad += 1
            kinds.add(dict(headers)["malformed"])
            with pytest.raises(CodecError):
                decode_transaction(record, LIMITS)
        else:
            decode_transaction(record, LIMITS)
    assert 200 < bad < 400
    assert kinds == {b"bad_json", b"missing_field", b"bad_field", b"not_an_object"}


def test_transactions_from_csv_and_jsonl(tmp_path: Path) -> None:
    tx = {
        "tx_id": "t1",
        "card_id": "c1",
        "amount": 9.5,
        "currency": "EUR",
        "merchant_id": "m1",
        "mcc": "5411",
        "ts": 1_760_000_000_000,
        "lat": 1.5,
        "lon": 2.5,
        "channel": "pos",
    }
    jsonl = tmp_path / "tx.jsonl"
    jsonl.write_text(json.dumps(tx) + "\n\n" + json.dumps({**tx, "tx_id": "t2"}) + "\n")
    out = [decode_transaction(make_record(v), LIMITS) for _, v, _ in transaction_feed(path=jsonl)]
    assert [t["tx_id"] for t in out] == ["t1", "t2"]
    csv_path = tmp_path / "tx.csv"
    csv_path.write_text(",".join(tx) + "\n" + ",".join(str(v) for v in tx.values()) + "\n")
    ((key, value, _),) = list(transaction_feed(path=csv_path))
    assert key == b"c1" and decode_transaction(make_record(value), LIMITS) == tx


def test_sensor_windows_from_generator_and_csv(tmp_path: Path) -> None:
    for fmt in ("raw", "json"):
        key, value, headers = next(sensor_feed(seed=2, fmt=fmt))
        window = decode_sensor(make_record(value, headers, key=key), LIMITS)
        assert window.shape == (100, 6) and key.startswith(b"veh-")
    rows = ["vehicle_id,ax,ay,az,gx,gy,gz"]
    rows += [f"v{i % 2},{i},0,9.8,0,0,{i / 10}" for i in range(250)]
    path = tmp_path / "imu.csv"
    path.write_text("\n".join(rows) + "\n")
    windows = list(sensor_feed(path=path))
    assert [k for k, _, _ in windows] == [b"v0", b"v1"]  # 125 samples each: one full window
    first = decode_sensor(make_record(windows[0][1], windows[0][2]), LIMITS)
    assert np.array_equal(first[:, 0], np.arange(0, 200, 2, dtype=np.float32))


def test_sensor_csv_without_columns_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "imu.csv"
    path.write_text("ax,ay\n1,2\n")
    with pytest.raises(ConfigError, match="gz"):
        list(sensor_feed(path=path))


def test_synthetic_camera_frames_carry_sequence_and_capture_time() -> None:
    frames = list(itertools.islice(camera_feed(cameras=2, width=160, height=96), 4))
    assert [k for k, _, _ in frames] == [b"cam-0", b"cam-1", b"cam-0", b"cam-1"]
    decoded = [decode_camera(make_record(v, h), LIMITS) for _, v, h in frames]
    assert [f.frame_seq for f in decoded] == [0, 0, 1, 1]
    assert all(f.image.shape == (96, 160, 3) for f in decoded)
    stamps = [f.capture_ts_ns or 0 for f in decoded]
    assert stamps == sorted(stamps) and stamps[0] > 1_600_000_000 * 10**9


def test_camera_frames_from_a_video_file(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), i * 60, np.uint8))
    writer.release()
    frames = list(camera_feed(source=str(path), loop=False))
    assert len(frames) == 3
    images = [decode_camera(make_record(v, h), LIMITS).image for _, v, h in frames]
    assert [round(float(im.mean()) / 60) for im in images] == [0, 1, 2]
