"""Fraud features: one transaction record plus what its card did before.

The featurizer keeps a small state per card (last time and place, running
typical amount, recent timestamps) in a bounded LRU, so one process can score
a partition's cards indefinitely. Transactions of one card must arrive in
order, which partitioning by card id gives.

``transform_columns(cols, memory=...)`` reads and writes card state through a
:class:`CardMemory` instead (the pipeline's state store, which survives
restarts and rebalances); :data:`CARD_CODEC` turns a card's state into bytes
and back exactly, so restored state gives the same features.

Features are raw (log scales, one-hots); standardisation lives in the ONNX graph.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from streamfer.errors import ConfigError, StateError
from streamfer.models.generators.catalog import (
    MCC_RISK,
    USD_PER_UNIT,
    haversine_km,
    haversine_km_array,
    local_hour,
)

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
_TX_FIELDS = ("card_id", "ts", "lat", "lon", "amount", "currency", "mcc", "channel")
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
    # the card's last timestamps, oldest first, at most _RECENT: an int64 array, so the
    # state store writes them as one block of bytes (see CardStateCodec)
    recent: array[int] = field(default_factory=lambda: array("q"))


_RECENT = 64  # timestamps a card remembers (the 1 h count needs no more)
_ROW_BY_ROW = 16  # batches up to this size skip the array path (bench/RESULTS.md, 2026-12-07)


def _push(recent: array[int], ts: int) -> None:
    recent.append(ts)
    if len(recent) > _RECENT:
        del recent[0]


def _prune(recent: array[int], ts: int) -> None:
    """Forget the timestamps more than an hour before ``ts``."""
    i, n = 0, len(recent)
    while i < n and ts - recent[i] > _WINDOW_1H_MS:
        i += 1
    if i:
        del recent[:i]


def _row_features(
    state: _CardState | None,
    ts: int,
    lat: float,
    lon: float,
    log_usd: float,
    mcc: str,
    channel: str,
) -> list[float]:
    """One transaction's features given its card's state before it (None: first seen).

    The state is only pruned (timestamps more than an hour old), not advanced."""
    if state is None:
        rel, first, log_count = 0.0, 1.0, 0.0
        dt_s, km, kmh, n10, n60 = _NEVER_S, 0.0, 0.0, 0, 0
    else:
        rel, first, log_count = log_usd - state.mean_log_usd, 0.0, math.log1p(state.count)
        dt_s = max(0.0, (ts - state.last_ts) / 1000.0)
        km = haversine_km(state.last_lat, state.last_lon, lat, lon)
        kmh = km / max(dt_s / 3600.0, _MIN_TRAVEL_H)
        _prune(state.recent, ts)
        n60 = len(state.recent)
        n10 = sum(1 for t in state.recent if ts - t <= _WINDOW_10MIN_MS)
    hour = local_hour(ts, lon)
    angle = 2.0 * math.pi * hour / 24.0
    group = MCC_RISK.get(mcc, "unknown")
    return [
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


def _advance(state: _CardState, ts: int, lat: float, lon: float, log_usd: float) -> None:
    """A known card's state after a transaction, but for its count and timestamps."""
    alpha = max(1.0 / (state.count + 1), 0.1)
    state.mean_log_usd += alpha * (log_usd - state.mean_log_usd)
    state.last_ts = max(state.last_ts, ts)
    state.last_lat, state.last_lon = lat, lon


_CARD_V1 = struct.Struct("<qdddqH")  # then H int64 timestamps (one struct value each)
_CARD_V2 = struct.Struct("<Bqdddq")  # version 2, then the timestamps' int64 array bytes
_V2 = 2
_SWAP = sys.byteorder != "little"  # the bytes are little-endian on every machine


class CardStateCodec:
    """A card's state as bytes and back, bit for bit (a ``streamfer.streams.state`` codec).

    Version 2 (written): ``2 (u8) | last_ts, lat, lon, mean, count | timestamps``, the
    timestamps as the int64 array's own bytes (one copy, no per-item packing), so its
    length is 1 mod 8. Version 1 (read, for changelogs written before): no version byte,
    ``last_ts, lat, lon, mean, count, n (u16) | n timestamps``, 2 mod 8 bytes long.
    """

    def encode(self, state: _CardState) -> bytes:
        head = _CARD_V2.pack(_V2, state.last_ts, state.last_lat, state.last_lon,
                             state.mean_log_usd, state.count)  # fmt: skip
        recent = state.recent
        if _SWAP:
            recent = array("q", recent)
            recent.byteswap()
        return head + recent.tobytes()

    def decode(self, payload: bytes) -> _CardState:
        size = len(payload)
        if size % 8 == 1 and payload[0] == _V2:
            _, last_ts, lat, lon, mean, count = _CARD_V2.unpack_from(payload)
            recent = array("q")
            recent.frombytes(payload[_CARD_V2.size :])
            if _SWAP:
                recent.byteswap()
            return _CardState(last_ts, lat, lon, mean, count, recent)
        if size % 8 == 2 and size >= _CARD_V1.size:
            last_ts, lat, lon, mean, count, n = _CARD_V1.unpack_from(payload)
            recent = array("q", struct.unpack_from(f"<{n}q", payload, _CARD_V1.size))
            return _CardState(last_ts, lat, lon, mean, count, recent)
        raise StateError(
            f"card state | {size} bytes starting {payload[:1].hex() or 'empty'} are no card "
            f"state. Note: expected version {_V2} (1 mod 8 bytes) or version 1 (2 mod 8 bytes)"
        )

    def seen_ms(self, state: _CardState) -> int:
        """The card's last transaction time: a card unseen for the TTL is forgotten."""
        return state.last_ts


CARD_CODEC = CardStateCodec()


class CardMemory(Protocol):
    """Where card state lives between batches (the featurizer's own LRU by default)."""

    def get_many(self, card_ids: Sequence[str], now_ms: Sequence[int]) -> list[Any]:
        """Each card's state (None: never seen, or forgotten by ``now_ms[i]``); the
        objects returned are changed in place."""
        ...

    def remember(self, card_ids: Sequence[str], states: Sequence[Any],
                 fresh: Sequence[bool]) -> None:  # fmt: skip
        """After a round (no card twice): ``fresh[i]`` states are new, the rest were
        read by ``get_many`` and changed in place."""
        ...


class _LruCards:
    """The featurizer's in-process memory as a :class:`CardMemory` (LRU of ``max_cards``)."""

    __slots__ = ("cards", "max_cards")

    def __init__(self, cards: OrderedDict[str, _CardState], max_cards: int) -> None:
        self.cards = cards
        self.max_cards = max_cards

    def get_many(self, card_ids: Sequence[str], now_ms: Sequence[int]) -> list[Any]:
        get = self.cards.get
        return [get(c) for c in card_ids]

    def remember(self, card_ids: Sequence[str], states: Sequence[Any],
                 fresh: Sequence[bool]) -> None:  # fmt: skip
        cards, max_cards = self.cards, self.max_cards
        for card_id, state, new in zip(card_ids, states, fresh, strict=True):
            if new:  # first seen: remembered, the oldest card forgotten if full
                cards[card_id] = state
                if len(cards) > max_cards:
                    cards.popitem(last=False)
            else:
                cards.move_to_end(card_id)


def _rounds(card_ids: list[str]) -> list[list[int]]:
    """Row indices by round: a card's first transaction in the batch, its second, ..."""
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for i, card_id in enumerate(card_ids):
        k = seen.get(card_id, 0)
        seen[card_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds


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

    def card(self, card_id: str) -> _CardState | None:
        """The card's state in this featurizer's own memory (None: not remembered)."""
        return self._cards.get(card_id)

    def transform(self, tx: Mapping[str, Any]) -> np.ndarray:
        """Features of ``tx`` given its card's history, then remember ``tx``."""
        card_id = str(tx["card_id"])
        ts = int(tx["ts"])
        lat = float(tx["lat"])
        lon = float(tx["lon"])
        usd = float(tx["amount"]) * USD_PER_UNIT.get(str(tx["currency"]), 1.0)
        log_usd = math.log1p(max(usd, 0.0))
        state = self._cards.get(card_id)
        if state is not None:
            self._cards.move_to_end(card_id)
        values = _row_features(state, ts, lat, lon, log_usd, str(tx["mcc"]), str(tx["channel"]))
        if state is None:
            self._cards[card_id] = state = _CardState(ts, lat, lon, log_usd)
            if len(self._cards) > self.max_cards:
                self._cards.popitem(last=False)
        else:
            _advance(state, ts, lat, lon, log_usd)
        state.count += 1
        _push(state.recent, ts)
        return np.asarray(values, dtype=np.float32)

    def transform_many(self, txs: list[Mapping[str, Any]]) -> np.ndarray:
        """``float32 [len(txs), F]``, rows in order (state advances row by row)."""
        out = np.empty((len(txs), len(FEATURE_NAMES)), dtype=np.float32)
        for i, tx in enumerate(txs):
            out[i] = self.transform(tx)
        return out

    def transform_columns(self, cols: TxColumns, memory: CardMemory | None = None) -> np.ndarray:
        """``float32 [n, F]`` for a batch given column-wise; equal to ``transform`` row by row.

        Rows are taken in rounds: round k holds each card's k-th transaction in the
        batch, so within a round no card repeats and everything but the card's short
        list of recent timestamps is computed on whole arrays; the state then advances
        round by round, which is the order ``transform`` would see the rows in. A batch of
        at most ``_ROW_BY_ROW`` rows (a poll at a low rate) is computed row by row as
        ``transform`` does: numpy's fixed cost per call would be most of its time.

        ``memory``: where card state is read and written (default: this featurizer's
        own LRU of ``max_cards``). A memory that forgets nothing mid-batch gives the
        features the default gives while no card has been forgotten.
        """
        n = len(cols.card_id)
        out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
        if not n:
            return out
        if memory is None:
            if len(self._cards) + n > self.max_cards:  # forgetting cards mid-batch: the order
                return self._one_by_one(cols, out)  # in which they are seen decides who goes
            memory = _LruCards(self._cards, self.max_cards)
        log1p = math.log1p
        rates = USD_PER_UNIT
        # exactly as transform computes it: the card's running mean is built from it
        log_usd = [
            log1p(max(a * rates.get(c, 1.0), 0.0))
            for a, c in zip(cols.amount, cols.currency, strict=True)
        ]
        if n <= _ROW_BY_ROW:
            for rows in _rounds(cols.card_id):
                _round_by_row(memory, rows, cols, log_usd, out)
            return out
        ts = np.asarray(cols.ts, dtype=np.int64)
        lat = np.asarray(cols.lat, dtype=np.float64)
        lon = np.asarray(cols.lon, dtype=np.float64)
        history = np.zeros((n, 8), dtype=np.float64)  # rel, first, count, dt, km, kmh, n10, n60
        history[:, 1] = 1.0
        history[:, 3] = _NEVER_S
        lists = (cols.ts, cols.lat, cols.lon)
        for rows in _rounds(cols.card_id):
            _round(memory, rows, cols.card_id, ts, lat, lon, lists, log_usd, history)
        hour = (((ts / 3_600_000.0) % 24.0) + lon / 15.0) % 24.0  # as catalog.local_hour
        angle = 2.0 * math.pi * hour / 24.0
        km, kmh = history[:, 4], history[:, 5]
        out[:, 0] = log_usd
        out[:, 1:4] = history[:, 0:3]
        out[:, 3] = np.log1p(history[:, 2])
        out[:, 4] = np.log1p(history[:, 3])
        out[:, 5] = np.log1p(km)
        out[:, 6] = np.log1p(kmh)
        out[:, 7] = (kmh > _IMPOSSIBLE_KMH) & (km > 100.0)
        out[:, 8] = np.log1p(history[:, 6])
        out[:, 9] = np.log1p(history[:, 7])
        out[:, 10] = np.sin(angle)
        out[:, 11] = np.cos(angle)
        out[:, 12] = hour < 5.0
        group = np.asarray([MCC_RISK.get(m, "unknown") for m in cols.mcc])
        for j, g in enumerate((*_MCC_GROUPS, "unknown")):
            out[:, 13 + j] = group == g
        channel = np.asarray(cols.channel)
        for j, c in enumerate(_CHANNELS):
            out[:, 17 + j] = channel == c
        return out

    def _one_by_one(self, cols: TxColumns, out: np.ndarray) -> np.ndarray:
        for i, row in enumerate(
            zip(
                cols.card_id,
                cols.ts,
                cols.lat,
                cols.lon,
                cols.amount,
                cols.currency,
                cols.mcc,
                cols.channel,
                strict=True,
            )
        ):
            tx = dict(zip(_TX_FIELDS, row, strict=True))
            out[i] = self.transform(tx)
        return out


def _round_by_row(
    memory: CardMemory, rows: list[int], cols: TxColumns, log_usd: list[float], out: np.ndarray
) -> None:
    """One round (no card twice) row by row, as ``transform`` computes each row."""
    ids = [cols.card_id[i] for i in rows]
    ts_l, lat_l, lon_l = cols.ts, cols.lat, cols.lon
    states = memory.get_many(ids, [ts_l[i] for i in rows])
    fresh = [s is None for s in states]
    for j, i in enumerate(rows):
        t, lat, lon, lu = ts_l[i], lat_l[i], lon_l[i], log_usd[i]
        state = states[j]
        out[i] = _row_features(state, t, lat, lon, lu, cols.mcc[i], cols.channel[i])
        if state is None:
            state = states[j] = _CardState(t, lat, lon, lu)
        else:
            _advance(state, t, lat, lon, lu)
        state.count += 1
        _push(state.recent, t)
    memory.remember(ids, states, fresh)


def _round(
    memory: CardMemory,
    rows: list[int],
    card_ids: list[str],
    ts: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    lists: tuple[list[int], list[float], list[float]],
    log_usd: list[float],
    history: np.ndarray,
) -> None:
    """One round (no card twice): read the cards' state, fill ``history``, advance it."""
    ts_l, lat_l, lon_l = lists
    ids = [card_ids[i] for i in rows]
    states = memory.get_many(ids, [ts_l[i] for i in rows])
    known = [j for j, s in enumerate(states) if s is not None]
    updated: dict[int, tuple[float, int]] = {}  # row -> (new mean, new last_ts)
    if known:
        idx = np.asarray([rows[j] for j in known], dtype=np.intp)
        old: list[_CardState] = [states[j] for j in known]
        last_ts = np.asarray([s.last_ts for s in old], dtype=np.int64)
        count = np.asarray([s.count for s in old], dtype=np.float64)
        mean = np.asarray([s.mean_log_usd for s in old])
        lu = np.asarray([log_usd[i] for i in idx.tolist()])
        dt = np.maximum(0.0, (ts[idx] - last_ts) / 1000.0)
        km = haversine_km_array(
            np.asarray([s.last_lat for s in old]),
            np.asarray([s.last_lon for s in old]),
            lat[idx],
            lon[idx],
        )
        history[idx, 0] = lu - mean
        history[idx, 1] = 0.0
        history[idx, 2] = count
        history[idx, 3] = dt
        history[idx, 4] = km
        history[idx, 5] = km / np.maximum(dt / 3600.0, _MIN_TRAVEL_H)
        # the state's next mean and last time, as _advance computes them
        alpha = np.maximum(1.0 / (count + 1), 0.1)
        new_mean = (mean + alpha * (lu - mean)).tolist()
        new_last = np.maximum(last_ts, ts[idx]).tolist()
        n10, n60 = [], []
        for k, (i, s) in enumerate(zip(idx.tolist(), old, strict=True)):
            recent, t = s.recent, ts_l[i]
            _prune(recent, t)
            n60.append(len(recent))
            n10.append(sum(1 for x in recent if t - x <= _WINDOW_10MIN_MS) if recent else 0)
            updated[i] = (new_mean[k], new_last[k])
        history[idx, 6] = n10
        history[idx, 7] = n60
    fresh = [s is None for s in states]
    for j, (i, state) in enumerate(zip(rows, states, strict=True)):
        t = ts_l[i]
        if state is None:
            state = states[j] = _CardState(last_ts=t, last_lat=lat_l[i], last_lon=lon_l[i],
                                           mean_log_usd=log_usd[i])  # fmt: skip
        else:
            state.mean_log_usd, state.last_ts = updated[i]
            state.last_lat, state.last_lon = lat_l[i], lon_l[i]
        state.count += 1
        _push(state.recent, t)
    memory.remember(ids, states, fresh)
