"""Sensor samples (``kind: sensor-sample``): one timestamped multichannel sample per record.

Value: ``channels`` little-endian float32 (24 bytes for a 6-channel IMU sample:
ax, ay, az, gx, gy, gz). Event time: the ``capture-ts-ns`` header (epoch ns),
else the Kafka record timestamp. Key: the vehicle id (windows are assembled
per key, so a vehicle's samples must share a partition).
"""

from __future__ import annotations

import numpy as np

from streamfer.streams.codecs.limits import fail, int_header
from streamfer.streams.records import Record

CAPTURE_TS = "capture-ts-ns"
_LE_F32 = np.dtype("<f4")


def encode_sample(values: np.ndarray, ts_ns: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A sample's value and headers."""
    return np.asarray(values, dtype=_LE_F32).tobytes(), [(CAPTURE_TS, str(ts_ns).encode())]


def sample_ts_ns(record: Record) -> int:
    """Event time of a sample: its ``capture-ts-ns`` header, else its Kafka timestamp."""
    ts = int_header(record, CAPTURE_TS)  # bad_header unless 0..2^63-1
    return record.timestamp_ms * 1_000_000 if ts is None else ts


def decode_sample(record: Record, channels: int) -> tuple[int, np.ndarray]:
    """``(event time ns, float32 [channels])``; CodecError with a reason otherwise."""
    value = record.value
    if value is None:
        raise fail(record, "null value (a tombstone)", "null_value", "expected a sample")
    if len(value) != channels * 4:
        raise fail(record, f"value is {len(value)} bytes", "bad_shape",
                   f"expected {channels} little-endian float32 ({channels * 4} bytes)")  # fmt: skip
    sample = np.frombuffer(value, dtype=_LE_F32).astype(np.float32)
    if not np.isfinite(sample).all():
        raise fail(record, "a channel is NaN or infinite", "non_finite", "expected finite numbers")
    return sample_ts_ns(record), sample


