"""What the producers send: endless iterators of ``(key, value, headers)`` per kind.

Synthetic data comes from ``streamfer.models.generators``; files and cameras are read with
csv/json and OpenCV. Generators are imported lazily so the producer CLI stays fast.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from streamfer.errors import ConfigError, StreamError
from streamfer.streams.codecs import encode_camera, encode_sensor, encode_transaction

Message = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
MALFORMED_KINDS = ("bad_json", "missing_field", "bad_field", "not_an_object")
MALFORMED_HEADER = "malformed"  # marks injected bad records (value: the kind)
SENSOR_COLUMNS = ("ax", "ay", "az", "gx", "gy", "gz")


def transaction_feed(
    *,
    seed: int = 0,
    fraud_rate: float = 0.01,
    malformed_ratio: float = 0.0,
    path: Path | None = None,
) -> Iterator[Message]:
    """Transactions keyed by card id; ``malformed_ratio`` of them deliberately broken."""
    if not 0.0 <= malformed_ratio <= 1.0:
        raise ConfigError(f"malformed_ratio | got {malformed_ratio!r}. Note: expected 0..1")
    rng = random.Random(seed + 1)
    txs = _transactions_from(path) if path is not None else _generated(seed, fraud_rate)
    for tx in txs:
        key = str(tx.get("card_id", "")).encode() or None
        if malformed_ratio and rng.random() < malformed_ratio:
            kind = rng.choice(MALFORMED_KINDS)
            yield key, _break(tx, kind, rng), [(MALFORMED_HEADER, kind.encode())]
        else:
            yield key, encode_transaction(tx), []


def _generated(seed: int, fraud_rate: float) -> Iterator[dict[str, Any]]:
    from streamfer.models.generators.transactions import TransactionGenerator

    gen = TransactionGenerator(seed=seed, fraud_rate=fraud_rate)
    while True:
        yield gen.next()[0]


def _break(tx: dict[str, Any], kind: str, rng: random.Random) -> bytes:
    if kind == "bad_json":
        raw = encode_transaction(tx)
        return raw[: rng.randrange(1, len(raw))]
    if kind == "missing_field":
        tx = dict(tx)
        tx.pop(rng.choice(["tx_id", "amount", "currency", "ts", "channel"]), None)
        return encode_transaction(tx)
    if kind == "bad_field":
        return encode_transaction({**tx, "amount": "lots"})
    return b"[1, 2, 3]"


_TX_FLOATS = ("amount", "lat", "lon")


def _transactions_from(path: Path) -> Iterator[dict[str, Any]]:
    """JSON lines (one object each) or CSV with a header row (numbers converted)."""
    with _open(path) as fh:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as exc:
                        raise ConfigError(f"{path}:{n} | not JSON: {exc}") from exc
            return
        for row in csv.DictReader(fh):
            tx: dict[str, Any] = dict(row)
            for name in _TX_FLOATS:
                if tx.get(name) not in (None, ""):
                    tx[name] = float(tx[name])
            if tx.get("ts") not in (None, ""):
                tx["ts"] = int(float(tx["ts"]))
            yield tx


def _open(path: Path) -> Any:
    try:
        return path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path} | cannot read: {exc.strerror}") from exc


def sensor_feed(
    *, seed: int = 0, vehicles: int = 20, fmt: str = "raw", path: Path | None = None
) -> Iterator[Message]:
    """Windows keyed by vehicle id, raw float32 (default) or JSON."""
    if path is not None:
        windows = _windows_from(path)
    else:
        from streamfer.models.generators.sensor import SensorGenerator

        windows = _generated_windows(SensorGenerator(seed=seed, n_vehicles=vehicles))
    for vehicle, window in windows:
        value, headers = encode_sensor(window, fmt=fmt, extra={"vehicle_id": vehicle})
        yield vehicle.encode(), value, headers


def sample_feed(
    *, seed: int = 0, vehicles: int = 20, hz: float = 100.0, start_ns: int | None = None
) -> Iterator[Message]:
    """Single IMU samples keyed by vehicle id (``kind: sensor-sample``), each vehicle's
    clock ticking at ``hz`` from ``start_ns`` (default: now); a generated window's samples
    are sent one after another."""
    from streamfer.models.generators.sensor import SensorGenerator
    from streamfer.streams.codecs.sample import encode_sample

    start = time.time_ns() if start_ns is None else start_ns
    step = int(1e9 / hz)
    sent: dict[str, int] = {}
    for vehicle, window in _generated_windows(SensorGenerator(seed=seed, n_vehicles=vehicles)):
        key = vehicle.encode()
        for row in window:
            n = sent.get(vehicle, 0)
            sent[vehicle] = n + 1
            value, headers = encode_sample(row, start + n * step)
            yield key, value, headers


def _generated_windows(gen: Any) -> Iterator[tuple[str, np.ndarray]]:
    while True:
        vehicle, window, _label = gen.next()
        yield vehicle, window


def _windows_from(path: Path, rows: int = 100) -> Iterator[tuple[str, np.ndarray]]:
    """Consecutive 100-sample windows per vehicle from a CSV of ax..gz (+ vehicle_id)."""
    pending: dict[str, list[list[float]]] = {}
    with _open(path) as fh:
        reader = csv.DictReader(fh)
        missing = set(SENSOR_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(
                f"{path} | CSV lacks columns {sorted(missing)}. "
                f"Note: expected {', '.join(SENSOR_COLUMNS)} and optionally vehicle_id"
            )
        for n, row in enumerate(reader, 2):
            vehicle = row.get("vehicle_id") or "veh-0000"
            try:
                sample = [float(row[c]) for c in SENSOR_COLUMNS]
            except ValueError as exc:
                raise ConfigError(f"{path}:{n} | {exc}. Note: expected numbers") from exc
            buf = pending.setdefault(vehicle, [])
            buf.append(sample)
            if len(buf) == rows:
                yield vehicle, np.asarray(buf, dtype=np.float32)
                pending[vehicle] = []


def camera_feed(
    *,
    source: str | None = None,
    cameras: int = 1,
    width: int = 640,
    height: int = 360,
    quality: int = 85,
    content_type: str = "image/jpeg",
    seed: int = 0,
    loop: bool = True,
) -> Iterator[Message]:
    """Frames round-robin over ``cameras``; capture-ts-ns taken when each frame is captured.

    ``source`` is a video file or stream URL (every camera opens its own capture),
    or None for the synthetic road-scene generator.
    """
    if cameras < 1:
        raise ConfigError(f"cameras | got {cameras!r}. Note: expected at least 1")
    grab = _video_grabber(source, cameras, loop) if source else _scene_grabber(seed, width, height)
    seq = [0] * cameras
    while True:
        for cam in range(cameras):
            image, captured_ns = grab(cam)
            if image is None:
                return
            value, headers = encode_camera(
                image,
                content_type=content_type,
                quality=quality,
                capture_ts_ns=captured_ns,
                frame_seq=seq[cam],
            )
            seq[cam] += 1
            yield f"cam-{cam}".encode(), value, headers


def _scene_grabber(seed: int, width: int, height: int) -> Any:
    from streamfer.models.generators.scenes import SceneGenerator

    gen = SceneGenerator(seed=seed, width=width, height=height)

    def grab(cam: int) -> tuple[np.ndarray | None, int]:
        captured = time.time_ns()  # wall clock: deadlines are compared across processes
        return gen.render(cam).image, captured

    return grab


def _video_grabber(source: str, cameras: int, loop: bool) -> Any:
    import cv2

    caps = []
    for _ in range(cameras):
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise StreamError(f"{source} | cannot open video. Note: expected a file or RTSP URL")
        caps.append(cap)
    is_file = Path(source).exists()

    def grab(cam: int) -> tuple[np.ndarray | None, int]:
        ok, frame = caps[cam].read()
        captured = time.time_ns()
        if not ok and loop and is_file:  # rewind files; a live stream that ends has ended
            caps[cam].set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = caps[cam].read()
            captured = time.time_ns()
        return (frame if ok else None), captured

    return grab
