"""The transaction processor's card state through a partition's state view."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamfer.models.features import CARD_CODEC, FraudFeaturizer, TxColumns
from streamfer.models.generators.transactions import TransactionGenerator
from streamfer.pipeline.processors.transaction import StoredCards
from streamfer.streams.state import LocalStore, StateView

FIELDS = ("card_id", "ts", "lat", "lon", "amount", "currency", "mcc", "channel")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "p0") as s:
        yield s


def columns(txs: list[dict[str, Any]]) -> TxColumns:
    return TxColumns(*([t[f] for t in txs] for f in FIELDS))


def test_card_codec_is_exact(store: LocalStore) -> None:
    v = StateView("in[0]", store, CARD_CODEC, ttl_ms=None, cache_keys=10, next_offset=0)
    txs = [{"card_id": "c", "ts": 1_000 + i * 7_919, "lat": 40.1 + i / 3, "lon": -70.3,
            "amount": 12.345 * i, "currency": "EUR", "mcc": "5411", "channel": "pos"}
           for i in range(70)]  # fmt: skip  (more than the 64 remembered timestamps)
    for tx in txs:
        FraudFeaturizer().transform_columns(columns([tx]), memory=StoredCards(v))
    (state,) = v.get_many(["c"])
    back = CARD_CODEC.decode(CARD_CODEC.encode(state))
    assert back == state and state.count == 70
    assert isinstance(back.recent, deque) and back.recent.maxlen == state.recent.maxlen == 64


def test_features_through_a_view_equal_the_in_memory_ones(store: LocalStore) -> None:
    gen = TransactionGenerator(seed=3, n_cards=25)
    txs = [gen.next()[0] for _ in range(600)]
    memory, stored = FraudFeaturizer(), FraudFeaturizer()
    v = StateView("in[0]", store, CARD_CODEC, ttl_ms=None, cache_keys=10, next_offset=0)
    for start in range(0, 600, 64):  # a small cache: most cards come back from the store
        chunk = txs[start : start + 64]
        cols = columns(chunk)
        want = memory.transform_columns(cols)
        got = stored.transform_columns(cols, memory=StoredCards(v))
        v.updated(cols.card_id, list(range(start, start + len(chunk))))
        v.flush(start + len(chunk))
        assert (got == want).all()


def test_a_card_unseen_for_the_ttl_starts_afresh(store: LocalStore) -> None:
    day = 86_400_000
    v = StateView("in[0]", store, CARD_CODEC, ttl_ms=30 * day, cache_keys=10, next_offset=0)
    tx = {"card_id": "c", "ts": day, "lat": 1.0, "lon": 2.0, "amount": 5.0, "currency": "USD",
          "mcc": "5411", "channel": "pos"}  # fmt: skip
    feat = FraudFeaturizer()
    first = feat.transform_columns(columns([tx]), memory=StoredCards(v))
    soon = feat.transform_columns(columns([{**tx, "ts": 29 * day}]), memory=StoredCards(v))
    late = feat.transform_columns(columns([{**tx, "ts": 60 * day}]), memory=StoredCards(v))
    first_seen = 2  # FEATURE_NAMES.index("first_seen")
    assert (first[0, first_seen], soon[0, first_seen], late[0, first_seen]) == (1.0, 0.0, 1.0)
