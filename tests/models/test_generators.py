"""The generators: deterministic per seed, contract-shaped, and carrying their signal."""

from __future__ import annotations

import re

import numpy as np
import pytest

from streamfer.errors import ConfigError
from streamfer.models.generators.scenes import DETECTION_LABELS, SceneGenerator
from streamfer.models.generators.sensor import SENSOR_LABELS, SensorGenerator
from streamfer.models.generators.transactions import DEFAULT_START_MS, TransactionGenerator


def take(gen: TransactionGenerator, n: int) -> list[tuple[dict, bool]]:
    return [gen.next() for _ in range(n)]


def test_transactions_are_deterministic_per_seed() -> None:
    assert take(TransactionGenerator(seed=3), 2000) == take(TransactionGenerator(seed=3), 2000)
    assert take(TransactionGenerator(seed=3), 50) != take(TransactionGenerator(seed=4), 50)


def test_transaction_records_follow_the_contract() -> None:
    rows = take(TransactionGenerator(seed=1, n_cards=300), 3000)
    ids = set()
    last_ts = DEFAULT_START_MS
    for tx, is_fraud in rows:
        assert set(tx) == {
            "tx_id", "card_id", "amount", "currency", "merchant_id", "mcc", "ts", "lat", "lon",
            "channel",
        }  # fmt: skip
        assert isinstance(is_fraud, bool)
        assert isinstance(tx["amount"], float) and tx["amount"] > 0
        assert re.fullmatch(r"[A-Z]{3}", tx["currency"])
        assert re.fullmatch(r"\d{4}", tx["mcc"])
        assert tx["channel"] in ("pos", "ecom", "atm")
        assert -90 <= tx["lat"] <= 90 and -180 <= tx["lon"] <= 180
        assert isinstance(tx["ts"], int) and tx["ts"] >= last_ts
        last_ts = tx["ts"]
        ids.add(tx["tx_id"])
    assert len(ids) == len(rows)


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_fraud_share_follows_the_rate(rate: float) -> None:
    frauds = [f for _, f in take(TransactionGenerator(seed=5, fraud_rate=rate), 40_000)]
    assert rate * 0.7 < np.mean(frauds) < rate * 1.3


def test_fraud_has_its_patterns() -> None:
    rows = take(TransactionGenerator(seed=2, fraud_rate=0.05), 20_000)
    legit = [tx for tx, f in rows if not f]
    fraud = [tx for tx, f in rows if f]
    share = lambda txs, ch: np.mean([t["channel"] == ch for t in txs])  # noqa: E731
    assert share(fraud, "atm") > 3 * share(legit, "atm")
    assert share(fraud, "ecom") > share(legit, "ecom")


def test_start_ms_moves_the_clock_only() -> None:
    a = TransactionGenerator(seed=1).next()[0]
    b = TransactionGenerator(seed=1, start_ms=DEFAULT_START_MS + 1000).next()[0]
    assert b["ts"] == a["ts"] + 1000
    assert {**b, "ts": 0} == {**a, "ts": 0}


def test_bad_generator_arguments_raise() -> None:
    with pytest.raises(ConfigError, match="fraud_rate"):
        TransactionGenerator(fraud_rate=0.9)
    with pytest.raises(ConfigError, match="n_vehicles"):
        SensorGenerator(n_vehicles=0)


def test_sensor_windows_are_deterministic_and_shaped() -> None:
    a, b = SensorGenerator(seed=9), SensorGenerator(seed=9)
    labels = set()
    for _ in range(300):
        (va, wa, la), (vb, wb, lb) = a.next(), b.next()
        assert va == vb and la == lb and np.array_equal(wa, wb)
        assert wa.shape == (100, 6) and wa.dtype == np.float32
        assert np.isfinite(wa).all()
        labels.add(la)
    assert labels == set(SENSOR_LABELS)


def test_sensor_events_show_in_the_signal() -> None:
    gen = SensorGenerator(seed=4)
    by_label: dict[str, list[np.ndarray]] = {k: [] for k in SENSOR_LABELS}
    for _ in range(600):
        _, w, label = gen.next()
        by_label[label].append(w)
    peak = {k: np.median([np.abs(w[:, :2]).max() for w in v]) for k, v in by_label.items()}
    assert peak["impact"] > 2 * peak["normal"]
    gravity = np.median([w[:, 2].mean() for w in by_label["normal"]])
    assert 9.0 < gravity < 10.5
    decel = {k: np.median([w[:, 0].min() for w in v]) for k, v in by_label.items()}
    assert decel["hard_brake"] < decel["normal"] - 2.0


def test_scenes_are_deterministic_and_shaped() -> None:
    a = SceneGenerator(seed=2).render(5)
    b = SceneGenerator(seed=2).render(5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert a.labels == b.labels
    assert a.image.shape == (360, 640, 3) and a.image.dtype == np.uint8
    assert a.boxes.dtype == np.float32 and a.boxes.shape == (len(a.labels), 4)


def test_scene_boxes_lie_in_the_frame_and_cover_the_labels() -> None:
    gen = SceneGenerator(seed=0, width=480, height=270)
    seen = set()
    for cam in range(40):
        s = gen.render(cam)
        assert s.image.shape == (270, 480, 3)
        if len(s.boxes):
            assert (s.boxes[:, 0] >= 0).all() and (s.boxes[:, 2] <= 480).all()
            assert (s.boxes[:, 1] >= 0).all() and (s.boxes[:, 3] <= 270).all()
            assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()
        seen.update(s.labels)
    assert seen == set(DETECTION_LABELS)


def test_cameras_move_between_frames() -> None:
    gen = SceneGenerator(seed=1)
    moved = 0
    for cam in range(6):
        first = gen.render(cam)
        second = gen.render(cam)
        assert second.frame == first.frame + 1
        moved += int(not np.array_equal(first.image, second.image))
    assert moved >= 5


def test_scene_cameras_are_bounded_and_restart_when_forgotten() -> None:
    gen = SceneGenerator(seed=3, max_cameras=2)
    first = gen.render(0)
    gen.render(0)
    gen.render(1)
    gen.render(2)  # camera 0 is forgotten
    again = gen.render(0)
    assert again.frame == 0 and np.array_equal(again.image, first.image)
