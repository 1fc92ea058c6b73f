"""Feed a topic with telemetry readings, some faulty, some malformed.

    python -m telemetry_anomaly.produce --topic telemetry.readings --count 2000

Readings are keyed by machine id. ``--fault-ratio`` of them carry a fault,
``--malformed-ratio`` are broken on purpose (not JSON, a missing field, a
string where a number belongs) to show the dead-letter topic at work.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from streamfer.streams.admin import default_bootstrap
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from telemetry_anomaly.data import TelemetryGenerator

_BROKEN: tuple[bytes, ...] = (
    b"not json",
    b'{"machine_id": "machine-999", "rpm": 1200.0}',
    b'{"machine_id": "machine-999", "rpm": "fast", "temperature_c": 50, '
    b'"vibration_mm_s": 2, "current_a": 10, "pressure_bar": 5}',
)


def readings(count: int, seed: int, fault_ratio: float, malformed_ratio: float
             ) -> Iterator[tuple[bytes, bytes, str]]:  # fmt: skip
    """``(key, value, label)`` per record; label ``malformed`` for the broken ones."""
    gen = TelemetryGenerator(seed=seed, fault_ratio=fault_ratio)
    rng = np.random.default_rng(seed + 1)
    for i in range(count):
        sample, label = next(gen)
        key = str(sample["machine_id"]).encode()
        if rng.random() < malformed_ratio:
            yield key, _BROKEN[i % len(_BROKEN)], "malformed"
        else:
            yield key, json.dumps(sample).encode(), label


def produce(bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes, str]]) -> int:
    """Send every record, wait for the acknowledgements; the number sent."""
    failed: list[Any] = []

    def on_delivery(error: object | None, _message: object) -> None:
        if error is not None:
            failed.append(error)

    n = 0
    with KafkaSink(KafkaSettings(bootstrap)) as sink:
        for key, value, _ in records:
            sink.send(topic, value, key, on_delivery=on_delivery)
            n += 1
        sink.flush(30)
    if failed:
        raise SystemExit(f"{topic} | {len(failed)} readings not delivered: {failed[0]}")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="default: $STREAMFER_BOOTSTRAP")
    parser.add_argument("--topic", default="telemetry.readings")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fault-ratio", type=float, default=0.03)
    parser.add_argument("--malformed-ratio", type=float, default=0.01)
    args = parser.parse_args()
    bootstrap = args.bootstrap or default_bootstrap()
    records = readings(args.count, args.seed, args.fault_ratio, args.malformed_ratio)
    print(f"{produce(bootstrap, args.topic, records)} readings sent to {args.topic}")


if __name__ == "__main__":
    main()
