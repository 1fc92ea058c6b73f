"""Fraud features: one transaction record plus what its card did before.

The featurizer keeps a small state per card (last time and place, running
typical amount, recent timestamps) in a bounded LRU, so one process can score
a partition's cards indefinitely. Transactions of one card must arrive in
order, which partitioning by card id gives.

Features are raw (log scales, one-hots); standardisation lives in the ONNX graph.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.generators.catalog import MCC_RISK, USD_PER_UNIT, haversine_km, local_hour
from streamfer.errors import ConfigError

FEATURE_NAMES: tuple[str, ...] = (
    "log_amount_usd",
    "amount_vs_card_mean",
    "first_seen",
    "log_card_tx_count",
    "log_seconds_since_prev",
    "log_distance_km",
    "log_speed_kmh",
    "impossible_travel",
    "log_tx_count_10min",
    "log_tx_count_1h",
    "hour_sin",
    "hour_cos",
    "is_night",
    "mcc_low",
    "mcc_medium",
    "mcc_high",
    "mcc_unknown",
    "channel_pos",
    "channel_ecom",
    "channel_atm",
)

_NEVER_S = 30 * 86_400.0  # "no previous transaction" reads as a month ago
_MIN_TRAVEL_H = 1.0 / 60.0  # floor the elapsed time at a minute before dividing
_IMPOSSIBLE_KMH = 900.0  # faster than an airliner
_WINDOW_1H_MS = 3_600_000
_WINDOW_10MIN_MS = 600_000
_MCC_GROUPS = ("low", "medium", "high")
_CHANNELS = ("pos", "ecom", "atm")


@dataclass(slots=True)
class TxColumns:
    """The fields the featurizer reads, one list per field (a batch, column-wise)."""

    card_id: list[str]
    ts: list[int]
    lat: list[float]
    lon: list[float]
    amount: list[float]
    currency: list[str]
    mcc: list[str]
    channel: list[str]


@dataclass(slots=True)
class _CardState:
    last_ts: int
    last_lat: float
    last_lon: float
    mean_log_usd: float
    count: int = 0
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=64))


class FraudFeaturizer:
    """Turns transaction records into ``float32 [len(FEATURE_NAMES)]`` vectors.

    Stateful per ``card_id``; remembers at most ``max_cards`` cards (least
    recently seen are forgotten first, and read as first seen when they return).
    """

    def __init__(self, max_cards: int = 200_000) -> None:
        if max_cards < 1:
            raise ConfigError(f"max_cards | got {max_cards!r}. Note: expected at least 1")
        self.max_cards = max_cards
        self._cards: OrderedDict[str, _CardState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cards)

    def transform(self, tx: Mapping[str, Any]) -> np.ndarray:
        """Features of ``tx`` given its card's history, then remember ``tx``."""
        card_id = str(tx["card_id"])
        ts = int(tx["ts"])
        lat = float(tx["lat"])
        lon = float(tx["lon"])
        usd = float(tx["amount"]) * USD_PER_UNIT.get(str(tx["currency"]), 1.0)
        log_usd = math.log1p(max(usd, 0.0))
        state = self._cards.get(card_id)

        if state is None:
            rel, first, log_count = 0.0, 1.0, 0.0
            dt_s, km, kmh, n10, n60 = _NEVER_S, 0.0, 0.0, 0, 0
        else:
            self._cards.move_to_end(card_id)
            rel, first, log_count = log_usd - state.mean_log_usd, 0.0, math.log1p(state.count)
            dt_s = max(0.0, (ts - state.last_ts) / 1000.0)
            km = haversine_km(state.last_lat, state.last_lon, lat, lon)
            kmh = km / max(dt_s / 3600.0, _MIN_TRAVEL_H)
            while state.recent and ts - state.recent[0] > _WINDOW_1H_MS:
                state.recent.popleft()
            n60 = len(state.recent)
            n10 = sum(1 for t in state.recent if ts - t <= _WINDOW_10MIN_MS)

        hour = local_hour(ts, lon)
        angle = 2.0 * math.pi * hour / 24.0
        group = MCC_RISK.get(str(tx["mcc"]), "unknown")
        channel = str(tx["channel"])
        values = [
            log_usd,
            rel,
            first,
            log_count,
            math.log1p(dt_s),
            math.log1p(km),
            math.log1p(kmh),
            1.0 if kmh > _IMPOSSIBLE_KMH and km > 100.0 else 0.0,
            math.log1p(n10),
            math.log1p(n60),
            math.sin(angle),
            math.cos(angle),
            1.0 if hour < 5.0 else 0.0,
            *(1.0 if group == g else 0.0 for g in _MCC_GROUPS),
            1.0 if group == "unknown" else 0.0,
            *(1.0 if channel == c else 0.0 for c in _CHANNELS),
        ]
        self._remember(card_id, state, ts, lat, lon, log_usd)
        return np.asarray(values, dtype=np.float32)

    def transform_many(self, txs: list[Mapping[str, Any]]) -> np.ndarray:
        """``float32 [len(txs), F]``, rows in order (state advances row by row)."""
        out = np.empty((len(txs), len(FEATURE_NAMES)), dtype=np.float32)
        for i, tx in enumerate(txs):
            out[i] = self.transform(tx)
        return out

    def transform_columns(self, cols: TxColumns) -> np.ndarray:
        """``float32 [n, F]`` for a batch given column-wise; equal to ``transform`` row by row.

        Only what depends on a card's history is computed row by row (in order: the
        state advances with each row); everything else is vectorised over the batch.
        """
        n = len(cols.card_id)
        rel, first, log_count = [0.0] * n, [1.0] * n, [0.0] * n
        dt_s, km, kmh = [_NEVER_S] * n, [0.0] * n, [0.0] * n
        n10, n60 = [0] * n, [0] * n
        log_usd = [0.0] * n
        cards, log1p, remember = self._cards, math.log1p, self._remember
        for i, (card_id, ts, lat, lon, amount, currency) in enumerate(
            zip(cols.card_id, cols.ts, cols.lat, cols.lon, cols.amount, cols.currency, strict=True)
        ):
            lu = log_usd[i] = log1p(max(amount * USD_PER_UNIT.get(currency, 1.0), 0.0))
            state = cards.get(card_id)
            if state is not None:
                cards.move_to_end(card_id)
                rel[i], first[i], log_count[i] = lu - state.mean_log_usd, 0.0, log1p(state.count)
                d = dt_s[i] = max(0.0, (ts - state.last_ts) / 1000.0)
                k = km[i] = haversine_km(state.last_lat, state.last_lon, lat, lon)
                kmh[i] = k / max(d / 3600.0, _MIN_TRAVEL_H)
                recent = state.recent
                while recent and ts - recent[0] > _WINDOW_1H_MS:
                    recent.popleft()
                n60[i] = len(recent)
                n10[i] = sum(1 for t in recent if ts - t <= _WINDOW_10MIN_MS)
            remember(card_id, state, ts, lat, lon, lu)
        out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
        if not n:
            return out
        ts_a = np.asarray(cols.ts, dtype=np.float64)
        lon_a = np.asarray(cols.lon, dtype=np.float64)
        km_a, kmh_a = np.asarray(km), np.asarray(kmh)
        hour = (((ts_a / 3_600_000.0) % 24.0) + lon_a / 15.0) % 24.0  # as catalog.local_hour
        angle = 2.0 * math.pi * hour / 24.0
        group = np.asarray([MCC_RISK.get(m, "unknown") for m in cols.mcc])
        channel = np.asarray(cols.channel)
        out[:, 0] = log_usd
        out[:, 1] = rel
        out[:, 2] = first
        out[:, 3] = log_count
        out[:, 4] = [log1p(x) for x in dt_s]
        out[:, 5] = [log1p(x) for x in km]
        out[:, 6] = [log1p(x) for x in kmh]
        out[:, 7] = (kmh_a > _IMPOSSIBLE_KMH) & (km_a > 100.0)
        out[:, 8] = [log1p(x) for x in n10]
        out[:, 9] = [log1p(x) for x in n60]
        out[:, 10] = np.sin(angle)
        out[:, 11] = np.cos(angle)
        out[:, 12] = hour < 5.0
        for j, g in enumerate((*_MCC_GROUPS, "unknown")):
            out[:, 13 + j] = group == g
        for j, c in enumerate(_CHANNELS):
            out[:, 17 + j] = channel == c
        return out

    def _remember(
        self,
        card_id: str,
        state: _CardState | None,
        ts: int,
        lat: float,
        lon: float,
        log_usd: float,
    ) -> None:
        if state is None:
            state = _CardState(last_ts=ts, last_lat=lat, last_lon=lon, mean_log_usd=log_usd)
            self._cards[card_id] = state
            if len(self._cards) > self.max_cards:
                self._cards.popitem(last=False)
        else:
            alpha = max(1.0 / (state.count + 1), 0.1)
            state.mean_log_usd += alpha * (log_usd - state.mean_log_usd)
            state.last_ts = max(state.last_ts, ts)
            state.last_lat, state.last_lon = lat, lon
        state.count += 1
        state.recent.append(ts)
