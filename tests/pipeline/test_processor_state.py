"""The transaction processor's card state through a partition's state view."""

from __future__ import annotations

import json
import math
import struct
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamfer.engines.base import TensorSpec
from streamfer.errors import StateError
from streamfer.models.features import CARD_CODEC, FraudFeaturizer, TxColumns, _CardState
from streamfer.models.generators.transactions import TransactionGenerator
from streamfer.pipeline.processors import (
    Prepared,
    ProcessorContext,
    Record,
    RecordBatch,
    Result,
    StatefulProcessor,
    StatefulRecordProcessor,
    StateView,
)
from streamfer.pipeline.processors.transaction import StoredCards
from streamfer.streams.codecs import CodecLimits
from streamfer.streams.state import LocalStore
from streamfer.streams.state.entry import unpack_entry

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


@pytest.mark.parametrize("poll", [64, 5])  # the array path, and row by row
def test_features_through_a_view_equal_the_in_memory_ones(store: LocalStore, poll: int) -> None:
    gen = TransactionGenerator(seed=3, n_cards=25)
    txs = [gen.next()[0] for _ in range(600)]
    memory, stored = FraudFeaturizer(), FraudFeaturizer()
    v = StateView("in[0]", store, CARD_CODEC, ttl_ms=None, cache_keys=10, next_offset=0)
    for start in range(0, 600, poll):  # a small cache: most cards come back from the store
        chunk = txs[start : start + poll]
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


# -- StatefulRecordProcessor: a plug-in's per-key state -----------------------------------
class CountCodec:
    """A count and the event time of its last record, as 16 bytes."""

    def encode(self, value: tuple[int, int]) -> bytes:
        return struct.pack("<qq", *value)

    def decode(self, payload: bytes) -> tuple[int, int]:
        count, seen = struct.unpack("<qq", payload)
        return int(count), int(seen)

    def seen_ms(self, value: tuple[int, int]) -> int:
        return value[1]


class Counted(StatefulRecordProcessor[dict[str, Any], tuple[int, int]]):
    """Counts the records of each key; ``{"boom": true}`` fails in ``features``."""

    codec = CountCodec()

    def decode(self, record: Record) -> dict[str, Any]:
        return dict(json.loads(record.value or b""))

    def step(self, item: dict[str, Any], value: tuple[int, int] | None, record: Record
             ) -> tuple[dict[str, Any], tuple[int, int]]:  # fmt: skip
        n = (value[0] if value else 0) + 1
        return {**item, "n": n}, (n, record.timestamp_ms)

    def features(self, item: dict[str, Any]) -> np.ndarray:
        if item.get("boom"):
            raise ValueError("boom")
        return np.array([item["n"], 0, 0], dtype=np.float32)

    def result(self, item: dict[str, Any], outputs: Mapping[str, np.ndarray]) -> Result:
        return {"n": item["n"]}


def counted() -> Counted:
    x = TensorSpec("x", np.dtype(np.float32), (None, 3))
    y = TensorSpec("y", np.dtype(np.float32), (None, 1))
    return Counted(ProcessorContext(stream="s", kind="custom", model="m", config={},
                                    inputs=(x,), outputs=(y,), metadata={}, max_batch=32,
                                    limits=CodecLimits()))  # fmt: skip


def key_batch(offset: int, items: list[tuple[bytes, dict[str, Any], int]]) -> RecordBatch:
    n = len(items)
    return RecordBatch("in", 0, list(range(offset, offset + n)), [k for k, _, _ in items],
                       [json.dumps(v).encode() for _, v, _ in items], [None] * n,
                       [ts for _, _, ts in items], 0)  # fmt: skip


def counts(prepared: Prepared) -> list[int]:
    return [int(n) for n in prepared.feeds["x"][:, 0]] if len(prepared) else []


def test_a_stateful_record_processor_is_exported_and_keeps_a_value_per_key(
    store: LocalStore,
) -> None:
    proc = counted()
    assert isinstance(proc, StatefulProcessor) and proc.state_codec() is proc.codec
    view = StateView("in[0]", store, proc.codec, ttl_ms=None, cache_keys=10, next_offset=0)
    first = proc.prepare_with_state(key_batch(0, [
        (b"a", {}, 1_000), (b"a", {}, 1_001), (b"b", {}, 1_002),
        (b"a", {"boom": True}, 1_003), (None, {}, 1_004), (b"a", {}, 1_005),
    ]), view)  # fmt: skip
    # two records of a key in one batch chain; a refused record changes nothing
    assert counts(first) == [1, 2, 1, 3]
    rejects = [(r.row, r.reason) for r in first.rejects]
    assert rejects == [(3, "processor_error"), (4, "missing_key")]
    keys, entries = view.flush(6)
    heads = {k: unpack_entry(e, "t") for k, e in zip(keys, entries, strict=True) if e}
    assert {k: (h.offset, CountCodec().decode(h.payload)) for k, h in heads.items()} == {
        b"a": (5, (3, 1_005)), b"b": (2, (1, 1_002))}  # the last record's offset per key
    view.close(changelog_end=None)
    reopened = LocalStore(store.path).open()
    again = StateView("in[0]", reopened, proc.codec, ttl_ms=None, cache_keys=10, next_offset=6)
    assert counts(proc.prepare_with_state(key_batch(6, [(b"a", {}, 2_000)]), again)) == [4]
    again.close(changelog_end=None)


def test_a_stateful_record_processor_reads_an_expired_key_as_absent(store: LocalStore) -> None:
    proc = counted()
    view = StateView("in[0]", store, proc.codec, ttl_ms=1_000, cache_keys=10, next_offset=0)
    # within one batch too: expiry runs on each record's own time, not the batch's
    got = proc.prepare_with_state(key_batch(0, [
        (b"a", {}, 10_000), (b"a", {}, 10_999), (b"a", {}, 11_999), (b"a", {}, 12_000),
    ]), view)  # fmt: skip
    assert counts(got) == [1, 2, 1, 2]


def test_without_a_store_a_stateful_record_processor_counts_in_memory() -> None:
    proc = counted()
    items = [(b"a", {}, 1), (b"a", {}, 2), (b"b", {}, 3)]
    assert counts(proc.prepare(key_batch(0, items))) == [1, 2, 1]
    assert counts(proc.prepare(key_batch(3, items))) == [3, 4, 2]


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
