"""Windows assembled from single samples equal windows cut offline; late samples counted."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamfer.errors import ConfigError
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.processors.sample import SampleProcessor
from streamfer.pipeline.windows import KeyWindowsCodec, WindowAssembler, cut_offline
from streamfer.streams.codecs.sample import encode_sample
from streamfer.streams.records import RecordBatch
from streamfer.streams.state import LocalStore, StateView

MS = 1_000_000
LABELS = ["normal", "harsh_brake", "pothole", "lane_change", "speed_bump"]


def samples(n: int, jitter_ms: float, late_every: int = 0, seed: int = 1
            ) -> tuple[list[tuple[int, np.ndarray]], list[int]]:  # fmt: skip
    """``n`` samples 10 ms apart, sent up to ``jitter_ms`` out of order; every
    ``late_every``-th sent a second too late. Returns them in sending order, and
    which of them are late."""
    rng = random.Random(seed)
    data = np.random.default_rng(seed).normal(size=(n, 6)).astype(np.float32)
    timed = [(1_000_000 * MS + i * 10 * MS, data[i]) for i in range(n)]
    order = sorted(range(n), key=lambda i: timed[i][0] + rng.uniform(0, jitter_ms) * MS)
    sent = [timed[i] for i in order]
    late = []
    if late_every:
        for k in range(late_every, n - 1, late_every):
            ts, x = sent[k]
            sent[k] = (ts - 1_000 * MS, x)  # a second older than its neighbours
            late.append(k)
    return sent, late


def test_windows_equal_those_cut_offline_and_late_samples_are_left_out() -> None:
    sent, late = samples(1000, jitter_ms=150, late_every=97)
    asm = WindowAssembler(size=100, hop=50, channels=6, tolerance_ns=200 * MS)
    state = asm.new()
    got: list[np.ndarray] = []
    refused = []
    for k, (ts, x) in enumerate(sent):
        done = asm.add(state, ts, x)
        if done is None:
            refused.append(k)
        else:
            got += done
    assert refused == late and len(late) == 10
    kept = [s for k, s in enumerate(sent) if k not in set(late)]
    want = cut_offline(kept, 100, 50)
    # the samples of the last 200 ms are still held back for reordering
    assert len(want) - 1 <= len(got) <= len(want)
    for a, b in zip(got, want, strict=False):
        np.testing.assert_array_equal(a, b)


def test_the_codec_is_exact_and_assembly_goes_on_after_a_round_trip() -> None:
    sent, _ = samples(400, jitter_ms=80)
    asm = WindowAssembler(size=100, hop=30, channels=6, tolerance_ns=100 * MS)
    codec = KeyWindowsCodec(100, 6)
    whole, split = asm.new(), asm.new()
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    for k, (ts, x) in enumerate(sent):
        a += asm.add(whole, ts, x) or []
        if k % 37 == 0:  # as after a restore from the changelog
            split = codec.decode(codec.encode(split))
        b += asm.add(split, ts, x) or []
    assert len(a) == len(b) > 5
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert codec.seen_ms(whole) == whole.max_ts // MS


def stream(**windows: object) -> StreamConfig:
    return StreamConfig.model_validate({
        "name": "imu", "kind": "sensor-sample", "input_topic": "s", "output_topic": "o",
        "model": "sensor", "windows": {"reorder_ms": 200, **windows},
    })  # fmt: skip


def batch_of(sent: list[tuple[bytes, int, np.ndarray]], first: int) -> RecordBatch:
    values, headers = [], []
    for _, ts, x in sent:
        value, hs = encode_sample(x, ts)
        values.append(value)
        headers.append(hs)
    n = len(sent)
    return RecordBatch("s", 0, list(range(first, first + n)), [k for k, _, _ in sent], values,
                       headers, [0] * n, 0)  # fmt: skip


@pytest.fixture
def view(tmp_path: Path) -> Iterator[StateView[object]]:
    with LocalStore(tmp_path / "p0") as store:
        yield StateView("s[0]", store, KeyWindowsCodec(100, 6), ttl_ms=None, cache_keys=1,
                        next_offset=0)  # fmt: skip


@pytest.mark.parametrize("stored", [False, True])
def test_the_processor_hands_each_completed_window_to_the_engine(
    stored: bool, view: StateView[object]
) -> None:
    proc = SampleProcessor(stream(), LABELS)
    vehicles = {b"veh-1": samples(700, 150, late_every=101, seed=2),
                b"veh-2": samples(500, 150, seed=3)}  # fmt: skip
    mixed = []  # interleaved in sending order, each vehicle's own order kept
    cursors = dict.fromkeys(vehicles, 0)
    rng = random.Random(4)
    while any(cursors[v] < len(vehicles[v][0]) for v in vehicles):
        v = rng.choice([v for v in vehicles if cursors[v] < len(vehicles[v][0])])
        ts, x = vehicles[v][0][cursors[v]]
        mixed.append((v, ts, x))
        cursors[v] += 1
    windows: dict[bytes, list[np.ndarray]] = {v: [] for v in vehicles}
    late = absorbed = 0
    for first in range(0, len(mixed), 64):
        batch = batch_of(mixed[first : first + 64], first)
        prep = proc.prepare_with_state(batch, view) if stored else proc.prepare(batch)
        if stored:
            view.flush(first + len(batch))  # the cache holds one key: the other is reloaded
        assert not prep.rejects
        feeds = prep.feeds["window"]
        assert feeds.shape == (len(prep.rows), 100, 6) and feeds.dtype == np.float32
        for row, window in zip(prep.rows.tolist(), feeds, strict=True):
            windows[batch.keys[row]].append(window)
        late += sum(len(r) for r in (prep.dropped or {}).values())
        absorbed += 0 if prep.absorbed is None else len(prep.absorbed)
    assert late == len(vehicles[b"veh-1"][1]) == 6
    assert absorbed + late + sum(len(w) for w in windows.values()) >= len(mixed) - 1
    for v, (sent, lates) in vehicles.items():
        kept = [s for k, s in enumerate(sent) if k not in set(lates)]
        want = cut_offline(kept, 100, 50)
        assert len(want) - 1 <= len(windows[v]) <= len(want)
        for a, b in zip(windows[v], want, strict=False):
            np.testing.assert_array_equal(a, b)


def test_a_window_the_model_cannot_take_fails_at_start() -> None:
    with pytest.raises(ConfigError, match=r"imu\.windows \| size 50 x channels 6.*Note"):
        SampleProcessor(stream(size=50), LABELS)


def test_a_sample_at_exactly_the_last_released_time_is_not_late() -> None:
    """Equal times are released in arrival order: one at the last released time can still
    be put in order, so it is taken, not dropped as late; one older than it is late."""
    asm = WindowAssembler(size=2, hop=1, channels=6, tolerance_ns=0)
    state = asm.new()
    first, second, third = (np.full(6, float(i), np.float32) for i in range(3))
    assert asm.add(state, 10 * MS, first) == []  # released at once (no tolerance)
    assert state.released_ts == 10 * MS
    windows = asm.add(state, 10 * MS, second)  # the same time as the last released
    assert windows is not None, "a sample at the last released time was dropped as late"
    assert len(windows) == 1 and np.array_equal(windows[0], np.stack([first, second]))
    assert asm.add(state, 10 * MS - 1, third) is None  # older than the last released: late
