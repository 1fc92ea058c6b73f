"""FraudFeaturizer: per-card history turns into the documented features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamfer.errors import ConfigError
from streamfer.models.features import FEATURE_NAMES, FraudFeaturizer, TxColumns
from streamfer.models.generators.transactions import TransactionGenerator

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def tx(card: str = "c1", ts: int = T0, **kw: Any) -> dict[str, Any]:
    base = {
        "tx_id": "t", "card_id": card, "amount": 40.0, "currency": "USD", "merchant_id": "m",
        "mcc": "5411", "ts": ts, "lat": 40.71, "lon": -74.01, "channel": "pos",
    }  # fmt: skip
    return {**base, **kw}


def f(vec: np.ndarray, name: str) -> float:
    return float(vec[FEATURE_NAMES.index(name)])


def test_vector_shape_and_one_hots() -> None:
    v = FraudFeaturizer().transform(tx(mcc="7995", channel="ecom"))
    assert v.shape == (len(FEATURE_NAMES),) and v.dtype == np.float32
    assert f(v, "first_seen") == 1.0
    assert f(v, "mcc_high") == 1.0 and f(v, "mcc_low") == 0.0
    assert f(v, "channel_ecom") == 1.0 and f(v, "channel_pos") == 0.0
    groups = [f(v, n) for n in ("mcc_low", "mcc_medium", "mcc_high", "mcc_unknown")]
    assert sum(groups) == 1.0
    assert f(FraudFeaturizer().transform(tx(mcc="1234")), "mcc_unknown") == 1.0


def test_impossible_travel_and_bursts() -> None:
    feat = FraudFeaturizer()
    feat.transform(tx(ts=T0))
    near = feat.transform(tx(ts=T0 + 120_000, lat=40.72))
    assert f(near, "impossible_travel") == 0.0
    assert f(near, "log_tx_count_10min") == pytest.approx(np.log1p(1))
    london = feat.transform(
        tx(ts=T0 + 240_000, lat=51.51, lon=-0.13)
    )  # New York -> London in 2 min
    assert f(london, "impossible_travel") == 1.0
    assert f(london, "log_speed_kmh") > np.log1p(10_000)
    assert f(london, "log_tx_count_10min") == pytest.approx(np.log1p(2))
    later = feat.transform(tx(ts=T0 + 2 * 3_600_000, lat=51.51, lon=-0.13))
    assert f(later, "log_tx_count_1h") == 0.0 and f(later, "log_tx_count_10min") == 0.0


@pytest.mark.parametrize("path", ["transform", "row by row", "arrays"])
def test_the_windows_hold_their_edges(path: str) -> None:
    """10 min and 1 h back are in the counts, a millisecond more is not, on every path."""
    gaps = [600_000, 600_001, 3_600_000, 3_600_001]
    txs = [t for g in gaps for t in (tx(f"c{g}", ts=T0), tx(f"c{g}", ts=T0 + g))]
    feat = FraudFeaturizer()
    if path == "transform":
        rows = np.stack([feat.transform(t) for t in txs])
    else:
        padding = [tx(f"pad{i}", ts=T0) for i in range(40 if path == "arrays" else 0)]
        rows = feat.transform_columns(_columns(txs + padding))[: len(txs)]
    seconds = rows[1::2]  # each card's second transaction
    in10 = [f(v, "log_tx_count_10min") for v in seconds]
    in60 = [f(v, "log_tx_count_1h") for v in seconds]
    one = pytest.approx(np.log1p(1))
    assert in10 == [one, 0.0, 0.0, 0.0]
    assert in60 == [one, one, one, 0.0]


def test_amount_is_relative_to_the_card_and_currency() -> None:
    feat = FraudFeaturizer()
    for i in range(5):
        feat.transform(tx(ts=T0 + i * 60_000, amount=40.0))
    big = feat.transform(tx(ts=T0 + 10 * 60_000, amount=2000.0))
    assert f(big, "amount_vs_card_mean") > 3.0
    yen = FraudFeaturizer().transform(tx(amount=6000.0, currency="JPY"))
    dollars = FraudFeaturizer().transform(tx(amount=40.0, currency="USD"))
    assert abs(f(yen, "log_amount_usd") - f(dollars, "log_amount_usd")) < 0.1


def test_local_night_uses_the_longitude() -> None:
    # 03:00 UTC is night in London but evening in New York (22:00 local).
    london = FraudFeaturizer().transform(tx(ts=T0 + 3 * 3_600_000, lat=51.5, lon=-0.1))
    new_york = FraudFeaturizer().transform(tx(ts=T0 + 3 * 3_600_000))
    assert f(london, "is_night") == 1.0 and f(new_york, "is_night") == 0.0


def test_memory_is_bounded_lru() -> None:
    feat = FraudFeaturizer(max_cards=2)
    feat.transform(tx("a"))
    feat.transform(tx("b"))
    feat.transform(tx("a", ts=T0 + 1000))  # a is now the most recent
    feat.transform(tx("c"))  # evicts b
    assert len(feat) == 2
    assert f(feat.transform(tx("a", ts=T0 + 2000)), "first_seen") == 0.0
    assert f(feat.transform(tx("b", ts=T0 + 3000)), "first_seen") == 1.0
    with pytest.raises(ConfigError, match="max_cards"):
        FraudFeaturizer(max_cards=0)


def test_out_of_order_timestamps_do_not_go_negative() -> None:
    feat = FraudFeaturizer()
    feat.transform(tx(ts=T0 + 60_000))
    v = feat.transform(tx(ts=T0))
    assert f(v, "log_seconds_since_prev") == 0.0
    assert np.isfinite(v).all()


def _columns(txs: list[dict]) -> TxColumns:
    return TxColumns(
        [t["card_id"] for t in txs], [t["ts"] for t in txs], [t["lat"] for t in txs],
        [t["lon"] for t in txs], [float(t["amount"]) for t in txs], [t["currency"] for t in txs],
        [t["mcc"] for t in txs], [t["channel"] for t in txs],
    )  # fmt: skip


SMALL_POLLS = [1, 7, 16, 3, 2, 11] * 100  # each batch row by row (at most _ROW_BY_ROW)
MIXED_POLLS = [1, 7, 500, 3, 1000, 2489]


@pytest.mark.parametrize(
    ("max_cards", "sizes"),
    [
        (200_000, MIXED_POLLS),
        (50, MIXED_POLLS),
        (200_000, SMALL_POLLS),
        (200_000, [17] * 235 + [5]),  # just above: the array path
    ],
)
def test_batches_give_exactly_the_features_of_one_record_at_a_time(
    max_cards: int, sizes: list[int]
) -> None:
    gen = TransactionGenerator(seed=11, n_cards=300)
    txs = [gen.next()[0] for _ in range(4000)]
    txs[100:110] = [{**txs[100], "ts": txs[100]["ts"] - 1000 * k} for k in range(10)]  # one
    # card ten times in one batch, its timestamps going backwards
    one = FraudFeaturizer(max_cards=max_cards)
    expected = np.stack([one.transform(t) for t in txs])
    many = FraudFeaturizer(max_cards=max_cards)
    got, at = [], 0
    for size in sizes:
        got.append(many.transform_columns(_columns(txs[at : at + size])))
        at += size
    assert at == len(txs)
    assert np.array_equal(np.concatenate(got), expected)  # bit for bit
    assert len(many) == len(one)
    assert many.transform_columns(_columns([])).shape == (0, len(FEATURE_NAMES))
