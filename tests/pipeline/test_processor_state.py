"""The transaction processor's card state through a partition's state view."""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamfer.errors import StateError
from streamfer.models.features import CARD_CODEC, FraudFeaturizer, TxColumns, _CardState
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
    assert isinstance(back.recent, array) and back.recent.typecode == "q"
    assert len(back.recent) == 64 and CARD_CODEC.encode(back) == CARD_CODEC.encode(state)


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


def test_card_codec_writes_the_history_as_one_array_and_round_trips_bit_for_bit() -> None:
    recent = array("q", [-(2**63), -1, 0, 1_700_000_000_123, 2**63 - 1])
    state = _CardState(2**62 + 1, -0.0, math.nextafter(180.0, 0.0), 5e-324, 2**40, recent)
    raw = CARD_CODEC.encode(state)
    assert raw[0] == 2 and len(raw) == 41 + 8 * len(recent)
    assert raw[41:] == struct.pack("<5q", *recent)  # the array's bytes, little-endian
    back = CARD_CODEC.decode(raw)
    assert CARD_CODEC.encode(back) == raw and back == state
    assert math.copysign(1.0, back.last_lat) == -1.0  # -0.0 stays -0.0


def test_card_codec_reads_version_1_entries() -> None:
    """Changelogs written before version 2: ``<qdddqH`` then one ``q`` per timestamp."""
    stamps = [1_000, 2_000, 3_500]
    v1 = struct.pack("<qdddqH", 3_500, 40.25, -70.5, 2.75, 3, 3) + struct.pack("<3q", *stamps)
    state = CARD_CODEC.decode(v1)
    assert state == _CardState(3_500, 40.25, -70.5, 2.75, 3, array("q", stamps))
    empty = struct.pack("<qdddqH", 1, 0.0, 0.0, 0.0, 0, 0)
    assert CARD_CODEC.decode(empty).recent == array("q")
    with pytest.raises(StateError, match=r"card state \| 7 bytes"):
        CARD_CODEC.decode(b"\x02" * 7)
