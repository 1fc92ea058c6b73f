"""Synthetic machine telemetry with labelled faults, deterministic per seed.

A sample is one reading of a machine (a press, a pump, a fan): speed (``rpm``),
``temperature_c``, ``vibration_mm_s``, ``current_a`` and ``pressure_bar``.
Every machine follows its own load (a slow random walk between 5 % and 95 %)
and every signal follows the load, so in normal running the five move
together; each machine has its own offsets and noise. Faults break that
agreement rather than any single range, which is what an autoencoder trained
on normal running notices:

* ``bearing_wear``: vibration 0.5-4 mm/s above what the speed explains;
* ``overheating``: 3-20 °C hotter than the load explains;
* ``stall``: the motor draws 6-10 A more while the speed drops to 300-600 rpm.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

FEATURES: tuple[str, ...] = ("rpm", "temperature_c", "vibration_mm_s", "current_a", "pressure_bar")
FAULTS: tuple[str, ...] = ("bearing_wear", "overheating", "stall")
NORMAL = "normal"


class _Machine:
    def __init__(self, machine_id: str, rng: np.random.Generator) -> None:
        self.machine_id = machine_id
        self.load = rng.uniform(0.1, 0.9)
        self.offsets = rng.normal(0.0, [10.0, 1.0, 0.05, 0.2, 0.05])
        self.noise = rng.uniform(0.7, 1.3) * np.array([12.0, 0.8, 0.12, 0.3, 0.08])


class TelemetryGenerator:
    """An endless stream of ``(sample, label)``: ``sample`` is the record's JSON object,
    ``label`` ``normal`` or one of ``FAULTS`` (``fault_ratio`` of the samples)."""

    def __init__(self, seed: int = 0, machines: int = 12, fault_ratio: float = 0.0) -> None:
        if not 0.0 <= fault_ratio <= 1.0:
            raise ValueError(f"fault_ratio | got {fault_ratio!r}. Note: expected 0..1")
        self._rng = np.random.default_rng(seed)
        self._machines = [_Machine(f"machine-{i:03d}", self._rng) for i in range(machines)]
        self.fault_ratio = fault_ratio
        self._ts_ms = 1_767_225_600_000  # 2026-01-01, then one sample a machine a second

    def __iter__(self) -> Iterator[tuple[dict[str, Any], str]]:
        return self

    def __next__(self) -> tuple[dict[str, Any], str]:
        rng = self._rng
        m = self._machines[int(rng.integers(len(self._machines)))]
        m.load = float(np.clip(m.load + rng.normal(0.0, 0.03), 0.05, 0.95))
        values = self.normal_values(m.load) + m.offsets + rng.normal(0.0, m.noise)
        label = NORMAL
        if rng.random() < self.fault_ratio:
            label = FAULTS[int(rng.integers(len(FAULTS)))]
            values = fault(values, label, rng)
        self._ts_ms += 1000 // len(self._machines)
        sample: dict[str, Any] = {"machine_id": m.machine_id, "ts": self._ts_ms}
        sample.update({name: round(float(v), 3) for name, v in zip(FEATURES, values, strict=True)})
        return sample, label

    @staticmethod
    def normal_values(load: float) -> np.ndarray:
        """The five signals of a healthy machine at ``load`` (0..1), before noise."""
        rpm = 900.0 + 1200.0 * load
        return np.array([rpm, 35.0 + 40.0 * load, 0.8 + 0.0015 * rpm, 4.0 + 18.0 * load,
                         3.0 + 4.0 * load])  # fmt: skip

    def take(self, n: int) -> tuple[list[dict[str, Any]], list[str]]:
        """``n`` samples and their labels."""
        pairs = [next(self) for _ in range(n)]
        return [s for s, _ in pairs], [label for _, label in pairs]


def fault(values: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``values`` (in FEATURES order) with a fault of ``kind``."""
    out = values.copy()
    if kind == "bearing_wear":
        out[2] += rng.uniform(0.5, 4.0)
    elif kind == "overheating":
        out[1] += rng.uniform(3.0, 20.0)
    elif kind == "stall":
        out[0] = rng.uniform(300.0, 600.0)
        out[3] += rng.uniform(6.0, 10.0)
    else:
        raise ValueError(f"fault | {kind!r} is unknown. Note: expected one of {FAULTS}")
    return out


def matrix(samples: list[dict[str, Any]]) -> np.ndarray:
    """float32 ``[N, 5]`` of the samples' signals, in FEATURES order."""
    return np.array([[s[name] for name in FEATURES] for s in samples], dtype=np.float32)
