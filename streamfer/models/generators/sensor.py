"""Synthetic vehicle IMU windows with labelled driving events, deterministic per seed.

A window is 100 samples x 6 channels at 50 Hz (2 s): ax, ay, az in m/s^2
(x forward, y left, z up, gravity included) and gx, gy, gz in rad/s (roll,
pitch, yaw rate). Each vehicle has its own noise level, mounting tilt, gyro
bias and engine vibration. Normal driving includes the hard negatives:
moderate braking, lane changes, potholes and speed bumps.
"""

from __future__ import annotations

import numpy as np

from streamfer.errors import ConfigError

SENSOR_LABELS: tuple[str, ...] = ("normal", "hard_brake", "swerve", "impact")
SENSOR_CHANNELS: tuple[str, ...] = ("ax", "ay", "az", "gx", "gy", "gz")
WINDOW_SAMPLES = 100
SAMPLE_RATE_HZ = 50.0
GRAVITY = 9.81
_LABEL_P = (0.55, 0.15, 0.15, 0.15)
_time_s = np.arange(WINDOW_SAMPLES, dtype=np.float64) / SAMPLE_RATE_HZ


def _pulse(t0: float, rise_s: float, hold_s: float, fall_s: float) -> np.ndarray:
    """A trapezoid 0 -> 1 -> 0 over the window's time axis, starting at ``t0``."""
    up = np.clip((_time_s - t0) / rise_s, 0.0, 1.0)
    down = np.clip((t0 + rise_s + hold_s + fall_s - _time_s) / fall_s, 0.0, 1.0)
    return np.minimum(up, down)


class _Vehicle:
    def __init__(self, vehicle_id: str, rng: np.random.Generator) -> None:
        self.vehicle_id = vehicle_id
        self.noise = rng.uniform(0.12, 0.6)
        self.gyro_noise = rng.uniform(0.005, 0.02)
        self.gyro_bias = rng.normal(0.0, 0.01, size=3)
        self.pitch, self.roll = rng.normal(0.0, 0.04, size=2)  # mounting tilt, rad
        self.vib_hz = rng.uniform(12.0, 22.0)
        self.vib_amp = rng.uniform(0.05, 0.3)
        self.speed = rng.uniform(8.0, 30.0)  # m/s


class SensorGenerator:
    """An endless, deterministic stream of ``(vehicle_id, window, label)``.

    ``window`` is float32 ``[100, 6]`` in raw IMU units; ``label`` is one of
    ``SENSOR_LABELS`` (55 % normal, 15 % each event).
    """

    def __init__(self, seed: int = 0, n_vehicles: int = 20) -> None:
        if n_vehicles < 1:
            raise ConfigError(f"n_vehicles | got {n_vehicles!r}. Note: expected at least 1")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._vehicles = [_Vehicle(f"veh-{i:04d}", self._rng) for i in range(n_vehicles)]

    def __iter__(self) -> SensorGenerator:
        return self

    def __next__(self) -> tuple[str, np.ndarray, str]:
        return self.next()

    def next(self) -> tuple[str, np.ndarray, str]:
        """The next window of a random vehicle and its label."""
        rng = self._rng
        vehicle = self._vehicles[int(rng.integers(len(self._vehicles)))]
        label = SENSOR_LABELS[int(rng.choice(len(SENSOR_LABELS), p=_LABEL_P))]
        vehicle.speed = float(np.clip(vehicle.speed + rng.normal(0.0, 2.0), 5.0, 35.0))
        motion = self._driving(vehicle)
        if label == "normal":
            self._normal_events(motion, vehicle)
        elif label == "hard_brake":
            self._hard_brake(motion)
        elif label == "swerve":
            self._swerve(motion, vehicle)
        else:
            self._impact(motion)
        return vehicle.vehicle_id, self._measure(motion, vehicle), label

    # -- motion (body frame, gravity excluded) ---------------------------------

    def _smooth(self, amp: float) -> np.ndarray:
        rng = self._rng
        out = np.zeros(WINDOW_SAMPLES)
        for _ in range(2):
            f = rng.uniform(0.1, 0.6)
            phase = rng.uniform(0, 2 * np.pi)
            out += rng.uniform(0.0, amp) * np.sin(2 * np.pi * f * _time_s + phase)
        return out

    def _driving(self, v: _Vehicle) -> np.ndarray:
        m = np.zeros((WINDOW_SAMPLES, 6))
        m[:, 0] = self._smooth(0.6)
        m[:, 1] = self._smooth(1.0)
        m[:, 5] = m[:, 1] / v.speed  # yaw rate follows lateral acceleration: a = v * r
        return m

    def _normal_events(self, m: np.ndarray, v: _Vehicle) -> None:
        rng = self._rng
        if rng.random() < 0.25:  # moderate braking
            p = _pulse(rng.uniform(-0.5, 1.5), 0.4, rng.uniform(0.3, 1.2), 0.4)
            m[:, 0] -= rng.uniform(1.5, 5.5) * p
            m[:, 4] += 0.03 * np.gradient(p, 1 / SAMPLE_RATE_HZ)
        if rng.random() < 0.2:  # lane change
            f = rng.uniform(0.3, 0.8)
            t0 = rng.uniform(-1.0, 0.5)
            on = (_time_s > t0) & (_time_s < t0 + 1 / f)
            wave = np.sin(2 * np.pi * f * (_time_s - t0)) * on
            lat = rng.choice((-1.0, 1.0)) * rng.uniform(0.8, 3.0) * wave
            m[:, 1] += lat
            m[:, 5] += lat / v.speed
        if rng.random() < 0.25:  # pothole or speed bump: vertical, short
            i = int(rng.integers(5, WINDOW_SAMPLES - 8))
            n = int(rng.integers(2, 5))
            bump = rng.uniform(3.0, 12.0) * rng.choice((-1.0, 1.0))
            m[i : i + n, 2] += bump * np.hanning(n + 2)[1:-1]
            m[i : i + n, 4] += rng.uniform(0.1, 0.5) * rng.choice((-1.0, 1.0))
            m[i : i + n, 0] += rng.uniform(-4.0, 4.0) * np.hanning(n + 2)[1:-1]

    def _hard_brake(self, m: np.ndarray) -> None:
        rng = self._rng
        p = _pulse(rng.uniform(-0.8, 1.8), rng.uniform(0.15, 0.35), rng.uniform(0.5, 1.4), 0.3)
        m[:, 0] = m[:, 0] * 0.3 - rng.uniform(4.0, 9.0) * p
        m[:, 4] += rng.uniform(0.04, 0.08) * np.gradient(p, 1 / SAMPLE_RATE_HZ)  # nose dive
        m[:, 2] -= 0.5 * p

    def _swerve(self, m: np.ndarray, v: _Vehicle) -> None:
        rng = self._rng
        f = rng.uniform(0.6, 1.6)
        cycles = rng.uniform(1.0, 1.5)
        t0 = rng.uniform(-0.4 / f, 2.0 - 0.4 / f)  # may be cut by the window
        on = (_time_s >= t0) & (_time_s <= t0 + cycles / f)
        peak = rng.choice((-1.0, 1.0)) * rng.uniform(2.0, 7.5)
        lat = peak * np.sin(2 * np.pi * f * (_time_s - t0)) * on
        m[:, 1] = m[:, 1] * 0.3 + lat
        m[:, 5] = m[:, 5] * 0.3 + lat / v.speed
        m[:, 3] += 0.04 * lat  # body roll
        m[:, 0] -= rng.uniform(0.0, 2.0) * on

    def _impact(self, m: np.ndarray) -> None:
        rng = self._rng
        i = int(rng.integers(10, 85))
        n = int(rng.integers(4, 9))
        ring = np.exp(-np.arange(n) / 1.5) * np.cos(np.pi * np.arange(n) * rng.uniform(0.6, 1.0))
        front = rng.random() < 0.6
        axis = 0 if front else 1
        sign = -1.0 if front else rng.choice((-1.0, 1.0))
        m[i : i + n, axis] += sign * rng.uniform(6.0, 60.0) * ring
        m[i : i + n, 2] += rng.uniform(3.0, 15.0) * rng.choice((-1.0, 1.0)) * ring
        m[i : i + n, 3:] += rng.uniform(-2.0, 2.0, size=3) * ring[:, None]
        after = _time_s >= _time_s[i + n - 1]
        m[after, 0] -= rng.uniform(2.0, 7.0) * np.exp(-(_time_s[after] - _time_s[i + n - 1]) / 0.8)

    # -- sensor model ------------------------------------------------------------

    def _measure(self, m: np.ndarray, v: _Vehicle) -> np.ndarray:
        rng = self._rng
        out = m.copy()
        out[:, 0] += GRAVITY * np.sin(v.pitch)
        out[:, 1] += GRAVITY * np.sin(v.roll)
        out[:, 2] += GRAVITY * np.cos(v.pitch) * np.cos(v.roll)
        vib = v.vib_amp * np.sin(2 * np.pi * v.vib_hz * _time_s + rng.uniform(0, 2 * np.pi))
        out[:, 2] += vib
        out[:, :3] += rng.normal(0.0, v.noise, size=(WINDOW_SAMPLES, 3))
        out[:, 3:] += v.gyro_bias + rng.normal(0.0, v.gyro_noise, size=(WINDOW_SAMPLES, 3))
        return out.astype(np.float32)
