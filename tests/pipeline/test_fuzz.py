"""Property tests: whatever a record holds, it ends accepted or rejected with a documented reason.

Arbitrary keys, values and headers (null, empty, huge, binary, header names
and values that are not UTF-8 or not what they claim) go through every
built-in processor's ``prepare`` and through the outlet's decision encoding.
A processor must never raise on input (an exception is a bug, dead-lettered
as ``internal_error`` only as a last resort): every row is either accepted,
with finite model inputs, or rejected with a reason from
``streamfer.streams.reasons.DEAD_LETTER_REASONS`` and a message
``topic[partition]@offset | problem. Note: expectation``.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_outlet import TIMING, Harness

from streamfer.errors import CodecError
from streamfer.models.generators.transactions import TransactionGenerator
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.processors.base import Output, Prepared
from streamfer.pipeline.processors.camera import CameraProcessor
from streamfer.pipeline.processors.sample import SampleProcessor
from streamfer.pipeline.processors.sensor import SensorProcessor
from streamfer.pipeline.processors.transaction import TransactionProcessor
from streamfer.streams.codecs import (
    CodecLimits,
    decode_transaction,
    encode_sensor,
    encode_transaction,
)
from streamfer.streams.codecs.sample import encode_sample
from streamfer.streams.reasons import DEAD_LETTER_REASONS, DROP_REASONS
from streamfer.streams.records import RecordBatch

# a warning (numpy's overflow in a cast, Pillow's) would reach stderr: none may be raised
pytestmark = pytest.mark.filterwarnings("error")
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
LABELS = ["normal", "hard_brake", "swerve", "impact"]
SIZE = 32  # detector input: small, so a fuzzed frame costs little


def stream(kind: str, **extra: Any) -> StreamConfig:
    return StreamConfig.model_validate(
        {"name": "s", "kind": kind, "input_topic": "in", "output_topic": "out",
         "model": "m", **extra}
    )  # fmt: skip


# -- what a record may hold ---------------------------------------------------------------

HEADER_NAMES = st.one_of(
    st.sampled_from(["content-type", "Content-Type", "capture-ts-ns", "frame-seq", "FRAME-SEQ"]),
    st.text(max_size=12),
)
HEADER_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=24),
    st.sampled_from(
        [b"image/jpeg", b"image/png", b"image/gif", b"application/json", b"\xff\xfe",
         b"application/x-raw;shape=4,5,3;dtype=uint8",
         b"application/x-raw;shape=100,6;dtype=float32",
         b"application/x-raw;shape=0,-1;dtype=uint8",
         b"application/x-raw;shape=a,b;dtype=float32",
         b"application/x-raw;shape=65536,65536,3;dtype=uint8", b"application/x-raw",
         b"123", b"-5", b"1e9", b"99999999999999999999999999", b" 7 ", b""]
    ),
)  # fmt: skip
HEADERS = st.one_of(st.none(), st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))
KEYS = st.one_of(st.none(), st.binary(max_size=40), st.integers(0, 300_000).map(lambda n: b"k" * n))


def huge(n: int) -> bytes:
    return b"\x00" * n


COMMON = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(max_size=64),
    st.integers(60_000, 20_000_000).map(huge),  # beyond the JSON limit, or every limit
)

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ODD_JSON = st.sampled_from(
    [b"[" * 5000, b'{"a":' * 3000, b"1e400", b"-1e400", b"9" * 500, b"NaN", b"Infinity",
     b'"\\ud800"', b"\xff\xfe{}", b"{}", b"[]", b"null", b"[[]]", b'{"window": 5}',
     b"[" + b",".join([b"[" + b",".join([b"1e39"] * 6) + b"]"] * 100) + b"]"]
)  # fmt: skip


def _tx_docs() -> list[dict[str, Any]]:
    gen = TransactionGenerator(seed=5)
    return [gen.next()[0] for _ in range(20)]


TX_DOCS = _tx_docs()


@st.composite
def transactions(draw: st.DrawFn) -> bytes | None:
    """A valid transaction, one with a field replaced or removed, JSON of any shape, odd bytes."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(COMMON)
    if choice == 1:
        return draw(ODD_JSON)
    doc = dict(draw(st.sampled_from(TX_DOCS)))
    if choice == 2:
        return encode_transaction(doc)
    field = draw(st.sampled_from(sorted(doc)))
    if choice == 3:
        doc.pop(field)
        return json.dumps(doc).encode()
    doc[field] = "\x00marker"
    # any JSON value in its place, or raw bytes inside its string (not UTF-8, say)
    raw = draw(st.one_of(JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                         st.binary(max_size=8).map(lambda b: b'"' + b + b'"')))  # fmt: skip
    return json.dumps(doc).encode().replace(b'"\\u0000marker"', raw)


@st.composite
def sensor_values(draw: st.DrawFn) -> bytes | None:
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(COMMON)
    if choice == 1:
        return draw(ODD_JSON)
    rows = draw(st.sampled_from([100, 99, 1, 0]))
    cols = draw(st.sampled_from([6, 5]))
    window = np.full((rows, cols), draw(st.floats(width=32)), dtype=np.float32)
    if choice == 2:
        return encode_sensor(window, fmt="raw")[0] + draw(st.binary(max_size=3))
    if choice == 3:
        return encode_sensor(window, fmt="json")[0]
    return json.dumps({"window": draw(JSON_VALUES)}).encode()


def _frames() -> list[bytes]:
    rng = np.random.default_rng(9)
    img = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    return [
        cv2.imencode(".jpg", img)[1].tobytes(),
        cv2.imencode(".png", img)[1].tobytes(),
        cv2.imencode(".jpg", np.zeros((8000, 9, 3), np.uint8))[1].tobytes(),  # tall: reduced
        img[:4, :5].tobytes(),  # raw pixels of shape=4,5,3
    ]


FRAMES = _frames()


@st.composite
def camera_values(draw: st.DrawFn) -> bytes | None:
    """Real JPEG/PNG frames, intact, cut short, with bytes overwritten, or any bytes."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(COMMON)
    frame = bytearray(draw(st.sampled_from(FRAMES)))
    if choice == 1:
        return bytes(frame)
    if choice == 2:
        return bytes(frame[: draw(st.integers(0, len(frame)))])
    for _ in range(draw(st.integers(1, 6))):
        frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    return bytes(frame)


def batches(values: st.SearchStrategy[bytes | None]) -> st.SearchStrategy[RecordBatch]:
    row = st.tuples(KEYS, values, HEADERS)
    return st.lists(row, min_size=1, max_size=6).map(
        lambda rows: RecordBatch(
            "in", 3, list(range(40, 40 + len(rows))), [r[0] for r in rows],
            [r[1] for r in rows], [r[2] for r in rows], [1_700_000_000_000] * len(rows), 0,
        )
    )  # fmt: skip


# -- the property ---------------------------------------------------------------------------


def check_every_row_resolved(batch: RecordBatch, prepared: Prepared) -> None:
    rows = prepared.rows.tolist()
    rejected = [r.row for r in prepared.rejects]
    absorbed = [] if prepared.absorbed is None else prepared.absorbed.tolist()
    dropped = [r for d in (prepared.dropped or {}).values() for r in d.tolist()]
    assert set(prepared.dropped or ()) <= set(DROP_REASONS)
    # a record completing several windows appears once per window in ``rows``
    ended = sorted(set(rows)) + rejected + absorbed + dropped
    assert sorted(ended) == list(range(len(batch))), (rows, rejected, absorbed, dropped)
    for name, feed in prepared.feeds.items():
        assert len(feed) == len(rows), name
        assert np.isfinite(feed).all(), f"{name}: accepted records with non-finite inputs"
    for rej in prepared.rejects:
        assert rej.reason in DEAD_LETTER_REASONS, rej
        assert getattr(rej.error, "reason", None) == rej.reason
        message = str(rej.error)
        assert message.startswith(f"{batch.coords(rej.row)} | ") and ". Note: " in message, message


@given(batches(transactions()))
@FUZZ
def test_any_transaction_record_is_accepted_or_rejected_with_a_reason(batch: RecordBatch) -> None:
    check_every_row_resolved(batch, TransactionProcessor(stream("transaction")).prepare(batch))


CODES = st.text(st.sampled_from("AZaz09\u00c9\u0665\n -"), min_size=2, max_size=5)


@st.composite
def coded_transactions(draw: st.DrawFn) -> bytes:
    """A valid transaction whose currency and mcc may hold any characters."""
    doc = dict(draw(st.sampled_from(TX_DOCS)))
    doc["currency"] = draw(st.sampled_from(["USD", "eur"]) | CODES)
    doc["mcc"] = draw(st.sampled_from(["5411", "0000"]) | CODES)
    return json.dumps(doc).encode()


@given(batches(coded_transactions() | transactions()))
@FUZZ
def test_a_batch_rejects_exactly_the_records_a_single_decode_rejects(batch: RecordBatch) -> None:
    # the processor checks currency and mcc once per batch; a record decoded alone is
    # checked on its own: both must refuse the same records, with the same messages
    processor = TransactionProcessor(stream("transaction"))
    prepared = processor.prepare(batch)
    limits = CodecLimits(max_json_bytes=processor.max_bytes)
    alone = {}
    for i in range(len(batch)):
        try:
            decode_transaction(batch.record(i), limits)
        except CodecError as exc:
            alone[i] = (exc.reason, str(exc))
    assert {r.row: (r.reason, str(r.error)) for r in prepared.rejects} == alone
    assert [r.row for r in prepared.rejects] == sorted(alone)
    assert prepared.rows.tolist() == [i for i in range(len(batch)) if i not in alone]


@given(batches(sensor_values()))
@FUZZ
def test_any_sensor_record_is_accepted_or_rejected_with_a_reason(batch: RecordBatch) -> None:
    processor = SensorProcessor(stream("sensor"), LABELS)
    check_every_row_resolved(batch, processor.prepare(batch))


@st.composite
def sample_values(draw: st.DrawFn) -> bytes | None:
    """A 6-channel sample (finite or not), one of the wrong length, or any bytes."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(COMMON)
    sample = np.full(6, draw(st.floats(width=32)), dtype=np.float32)
    value = encode_sample(sample, 0)[0]
    return value if choice == 1 else value[: draw(st.integers(0, 23))] + draw(st.binary(max_size=8))


@given(batches(sample_values()))
@FUZZ
def test_any_sensor_sample_is_accepted_absorbed_dropped_or_rejected(batch: RecordBatch) -> None:
    config = StreamConfig.model_validate(
        {"name": "s", "kind": "sensor-sample", "input_topic": "in", "output_topic": "out",
         "model": "m", "windows": {"size": 2, "hop": 1, "reorder_ms": 5}}
    )  # fmt: skip
    processor = SampleProcessor(config, LABELS, shape=(2, 6))
    check_every_row_resolved(batch, processor.prepare(batch))


@given(batches(camera_values()), st.sampled_from(["record_timestamp", "dead_letter"]))
@FUZZ
def test_any_camera_record_is_accepted_or_rejected_with_a_reason(
    batch: RecordBatch, missing_ts: str
) -> None:
    config = stream("camera", frames={"missing_capture_ts": missing_ts})
    processor = CameraProcessor(config, ["vehicle"], SIZE, threads=1)
    prepared = processor.prepare(batch)
    check_every_row_resolved(batch, prepared)
    if missing_ts == "dead_letter":
        assert all(m.capture_ts_ns is not None for m in prepared.metas or [])


# -- the outlet: any result is published as JSON or dead-lettered as bad_decision ------------

RESULT_VALUES = st.recursive(
    st.one_of(
        JSON_SCALARS,
        st.integers(min_value=2**63),
        st.sampled_from([float("nan"), float("inf"), -float("inf"), "\ud800", b"\x00"]),
        st.builds(object),
        st.builds(complex, st.floats(allow_nan=False), st.floats(allow_nan=False)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3),
        st.tuples(inner, inner),
        st.frozensets(st.integers(), max_size=2),
    ),
    max_leaves=8,
)
RESULTS = st.one_of(
    st.dictionaries(st.text(max_size=8), RESULT_VALUES, max_size=4),
    st.builds(
        Output,
        st.dictionaries(st.text(max_size=8), RESULT_VALUES, max_size=3),
        st.one_of(st.none(), st.dictionaries(st.text(max_size=8), RESULT_VALUES, max_size=2)),
        st.one_of(st.none(), st.binary(max_size=8)),
    ),
)


def non_finite(value: Any) -> bool:
    """NaN or infinity anywhere inside ``value`` (JSON has no such numbers)."""
    if isinstance(value, float):
        return not np.isfinite(value)
    if isinstance(value, Output):
        return non_finite(value.result) or non_finite(value.extra)
    if isinstance(value, dict):
        return any(non_finite(v) for v in value.values())
    if isinstance(value, list | tuple | frozenset):
        return any(non_finite(v) for v in value)
    return False


def no_constants(name: str) -> Any:
    raise AssertionError(f"a decision holds {name}, which is not JSON")


@given(st.lists(st.tuples(KEYS, RESULTS), min_size=1, max_size=6))
@FUZZ
def test_any_result_is_published_as_json_or_dead_lettered(rows: list[tuple[Any, Any]]) -> None:
    h = Harness()
    n = len(rows)
    b = h.batch(n)
    b.keys = [key for key, _ in rows]
    prepared = Prepared(b, np.arange(n), {})
    h.outlet.publish(prepared, np.arange(n), [r for _, r in rows], n, TIMING)
    published: dict[int, dict[str, Any]] = {}
    for value in h.sink.sent("out"):
        doc = json.loads(value, parse_constant=no_constants)
        published[doc["source"]["offset"]] = doc
    letters = {int(hd["source-offset"]): hd for t, _, _, hd, _ in h.sink.queued if t == "tx.dlq"}
    assert sorted([*published, *letters]) == b.offsets
    for offset in published:  # never a NaN written as null
        assert not non_finite(rows[offset - b.offsets[0]][1])
    for offset, headers in letters.items():
        assert headers["error-reason"] == b"bad_decision"
        assert headers["error-message"].startswith(b"tx[2]@%d | " % offset)
    h.sink.deliver()
    assert h.tracker.in_flight() == 0 and h.tracker.positions() == {("tx", 2): b.offsets[-1] + 1}
    assert h.fatal == []
