"""Each machine's own normal: an exponentially weighted mean and variance per signal.

This is the plug-in's per-key state: one :class:`Baseline` per machine id,
kept in streamfer's state store (restored after a crash or a rebalance), and
:data:`BASELINE_CODEC`, which turns it into 96 bytes and back exactly (the
floats as their bits), so a restored baseline scores as the one that never
left memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from telemetry_anomaly.data import FEATURES

_SIGNALS = len(FEATURES)


@dataclass(frozen=True)
class Baseline:
    """A machine's readings so far: how many, the event time (epoch ms) of the last one,
    and per signal (in ``FEATURES`` order) their weighted mean and variance."""

    readings: int
    seen_ms: int
    mean: np.ndarray  # float64 [5]
    var: np.ndarray  # float64 [5]

    @classmethod
    def first(cls, x: np.ndarray, ts_ms: int) -> Baseline:
        return cls(1, ts_ms, x.astype(np.float64), np.zeros(_SIGNALS))

    def z_scores(self, x: np.ndarray) -> np.ndarray:
        """How many standard deviations each signal of ``x`` is from this baseline."""
        return np.abs(x - self.mean) / np.sqrt(np.maximum(self.var, 1e-12))

    def updated(self, x: np.ndarray, ts_ms: int, alpha: float) -> Baseline:
        """The baseline with reading ``x`` added (a new object: this one is not changed).

        The incremental exponentially weighted mean and variance (Finch, 2009): a
        reading weighs ``alpha``, one ``k`` readings older ``alpha * (1 - alpha)**k``.
        """
        diff = x - self.mean
        step = alpha * diff
        var = (1.0 - alpha) * (self.var + diff * step)
        return Baseline(self.readings + 1, ts_ms, self.mean + step, var)


class BaselineCodec:
    """A :class:`Baseline` as bytes: readings, seen_ms, then the means and variances as
    little-endian float64, so ``decode(encode(b))`` equals ``b`` bit for bit."""

    _layout = struct.Struct(f"<qq{_SIGNALS}d{_SIGNALS}d")

    def encode(self, value: Baseline) -> bytes:
        return self._layout.pack(value.readings, value.seen_ms, *value.mean, *value.var)

    def decode(self, payload: bytes) -> Baseline:
        fields = self._layout.unpack(payload)
        mean = np.array(fields[2 : 2 + _SIGNALS], dtype=np.float64)
        var = np.array(fields[2 + _SIGNALS :], dtype=np.float64)
        return Baseline(int(fields[0]), int(fields[1]), mean, var)

    def seen_ms(self, value: Baseline) -> int:
        return value.seen_ms


BASELINE_CODEC = BaselineCodec()
