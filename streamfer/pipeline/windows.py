"""Windows of sensor samples per key: reorder within a tolerance, cut by size and hop.

Pure: samples in, windows out, no Kafka. A key's samples arrive in roughly
event-time order; each is held until the key's watermark (its newest event
time minus ``tolerance_ns``) passes it, then released in event-time order
(equal times in arrival order). A sample older than the last released one is
*late*: it cannot be put in order any more, so it is counted and left out.
Released samples form one series per key; the first window is its first
``size`` samples, and every ``hop`` samples after that another window ends.
So the windows equal those cut offline from the key's samples sorted by
event time, late ones removed (``cut_offline``).
"""

from __future__ import annotations

import bisect
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamfer.errors import ConfigError

_HEAD = struct.Struct("<qqqII")


@dataclass(slots=True)
class KeyWindows:
    """One key's window state."""

    recent: deque[np.ndarray]  # the last ``size`` released samples
    released: int = 0  # samples released so far
    released_ts: int = -1  # event time (ns) of the last released sample
    max_ts: int = -1  # the newest event time seen
    held_ts: list[int] = field(default_factory=list)  # held back, in event-time order
    held: list[np.ndarray] = field(default_factory=list)


class WindowAssembler:
    """Cuts windows of ``size`` samples every ``hop`` samples, per key (see the module doc)."""

    def __init__(self, size: int, hop: int, channels: int, tolerance_ns: int) -> None:
        if size < 1 or hop < 1 or channels < 1 or tolerance_ns < 0:
            raise ConfigError(
                f"windows | size={size}, hop={hop}, channels={channels}, "
                f"tolerance_ns={tolerance_ns}. Note: expected size, hop, channels >= 1 and a "
                "tolerance >= 0"
            )
        self.size = size
        self.hop = hop
        self.channels = channels
        self.tolerance_ns = tolerance_ns

    def new(self) -> KeyWindows:
        return KeyWindows(deque(maxlen=self.size))

    def add(self, state: KeyWindows, ts_ns: int, sample: np.ndarray) -> list[np.ndarray] | None:
        """The windows this sample completes (maybe none); None if it is late."""
        if ts_ns < state.released_ts:
            return None
        at = bisect.bisect_right(state.held_ts, ts_ns)
        state.held_ts.insert(at, ts_ns)
        state.held.insert(at, sample)
        state.max_ts = max(state.max_ts, ts_ns)
        ready = bisect.bisect_right(state.held_ts, state.max_ts - self.tolerance_ns)
        if not ready:
            return []
        out = []
        size, hop = self.size, self.hop
        for t, s in zip(state.held_ts[:ready], state.held[:ready], strict=True):
            state.recent.append(s)
            state.released += 1
            state.released_ts = t
            if state.released >= size and (state.released - size) % hop == 0:
                out.append(np.stack(state.recent))
        del state.held_ts[:ready], state.held[:ready]
        return out


def cut_offline(samples: Sequence[tuple[int, np.ndarray]], size: int, hop: int) -> list[np.ndarray]:
    """Windows cut from one key's samples (none late): sorted by event time, stable."""
    ordered = [s for _, s in sorted(samples, key=lambda p: p[0])]
    return [np.stack(ordered[i : i + size]) for i in range(0, len(ordered) - size + 1, hop)]


class KeyWindowsCodec:
    """A key's window state as bytes and back, exactly (a ``streamfer.streams.state`` codec)."""

    def __init__(self, size: int, channels: int) -> None:
        self.size = size
        self.channels = channels

    def encode(self, state: KeyWindows) -> bytes:
        recent = np.asarray(list(state.recent), dtype="<f4").tobytes()
        held = np.asarray(state.held, dtype="<f4").tobytes()
        head = _HEAD.pack(state.released, state.released_ts, state.max_ts, len(state.recent),
                          len(state.held))  # fmt: skip
        return head + recent + np.asarray(state.held_ts, dtype="<i8").tobytes() + held

    def decode(self, payload: bytes) -> KeyWindows:
        released, released_ts, max_ts, n_recent, n_held = _HEAD.unpack_from(payload)
        c, at = self.channels, _HEAD.size
        recent = np.frombuffer(payload, "<f4", n_recent * c, at).reshape(n_recent, c)
        at += recent.nbytes
        held_ts = np.frombuffer(payload, "<i8", n_held, at)
        at += held_ts.nbytes
        held = np.frombuffer(payload, "<f4", n_held * c, at).reshape(n_held, c)
        return KeyWindows(
            deque((r.astype(np.float32) for r in recent), maxlen=self.size),
            released,
            released_ts,
            max_ts,
            held_ts.tolist(),
            [h.astype(np.float32) for h in held],
        )

    def seen_ms(self, state: KeyWindows) -> int:
        return state.max_ts // 1_000_000
