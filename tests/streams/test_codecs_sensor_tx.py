"""Sensor and transaction codecs: round trips and rejections with reasons."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from recordkit import make_record

from streamfer.errors import CodecError
from streamfer.streams.codecs import (
    REASONS,
    CodecLimits,
    decode_sensor,
    decode_transaction,
    encode_sensor,
    encode_transaction,
)

LIMITS = CodecLimits()
RAW = "application/x-raw;shape={};dtype=float32"


def sensor_reason(value: bytes | None, headers: list[tuple[str, bytes]]) -> str:
    with pytest.raises(CodecError) as err:
        decode_sensor(make_record(value, headers), LIMITS)
    assert err.value.reason in REASONS
    return err.value.reason


windows = arrays(np.float32, (100, 6), elements=st.floats(-1e6, 1e6, allow_nan=False, width=32))


@given(windows, st.sampled_from(["raw", "json"]))
@settings(max_examples=30, deadline=None)
def test_sensor_round_trip(window: np.ndarray, fmt: str) -> None:
    value, headers = encode_sensor(window, fmt=fmt, extra={"vehicle_id": "v1"})
    out = decode_sensor(make_record(value, headers), LIMITS)
    assert out.dtype == np.float32 and out.shape == (100, 6)
    assert np.array_equal(out, window)


def test_sensor_json_without_content_type_and_bare_array() -> None:
    rows = np.ones((100, 6)).tolist()
    assert decode_sensor(make_record(json.dumps(rows).encode()), LIMITS).sum() == 600


@pytest.mark.parametrize(
    ("value", "ctype", "reason"),
    [
        (np.zeros((100, 6), "<f4").tobytes()[:-4], RAW.format("100,6"), "bad_shape"),
        (np.zeros((50, 12), "<f4").tobytes(), RAW.format("50,12"), "bad_shape"),
        (
            np.zeros((100, 6), "<f4").tobytes(),
            "application/x-raw;shape=100,6;dtype=f8",
            "bad_content_type",
        ),
        (np.full((100, 6), np.nan, "<f4").tobytes(), RAW.format("100,6"), "non_finite"),
        (b"[[1,2]]", "application/json", "bad_shape"),
        (b'[["a"]]', "application/json", "bad_shape"),
        (b"{not json", "application/json", "bad_json"),
        (b'"str"', "application/json", "bad_json"),
        (b"1,2,3", "text/csv", "bad_content_type"),
        (b"", "application/json", "empty"),
    ],
)
def test_sensor_rejects(value: bytes, ctype: str, reason: str) -> None:
    assert sensor_reason(value, [("content-type", ctype.encode())]) == reason


def test_sensor_json_size_is_checked_before_parsing() -> None:
    big = b"[" + b" " * (LIMITS.max_json_bytes + 1) + b"]"
    assert sensor_reason(big, []) == "too_large"


def valid_tx() -> dict[str, Any]:
    return {
        "tx_id": "tx-1",
        "card_id": "card-9",
        "amount": 12.5,
        "currency": "EUR",
        "merchant_id": "m-3",
        "mcc": "5411",
        "ts": 1_760_000_000_000,
        "lat": 48.1,
        "lon": 11.5,
        "channel": "ecom",
    }


transactions = st.fixed_dictionaries(
    {
        "tx_id": st.text(min_size=1, max_size=40),
        "card_id": st.text(min_size=1, max_size=40),
        "amount": st.floats(0, 1e9) | st.integers(0, 10**9),
        "currency": st.sampled_from(["EUR", "USD", "JPY"]),
        "merchant_id": st.text(min_size=1, max_size=40),
        "mcc": st.from_regex(r"\A[0-9]{4}\Z"),
        "ts": st.integers(1, 2**53),
        "lat": st.floats(-90, 90),
        "lon": st.floats(-180, 180),
        "channel": st.sampled_from(["pos", "ecom", "atm"]),
    },
    optional={"extra": st.integers()},
)


@given(transactions)
@settings(max_examples=100, deadline=None)
def test_transaction_round_trip(tx: dict[str, Any]) -> None:
    out = decode_transaction(make_record(encode_transaction(tx)), LIMITS)
    tx.pop("extra", None)  # fields beyond the contract are ignored
    assert out == {**tx, "amount": float(tx["amount"])}
    assert isinstance(out["amount"], float)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": -1}, "bad_field"),
        ({"amount": "12"}, "bad_field"),
        ({"amount": True}, "bad_field"),
        ({"currency": "EURO"}, "bad_field"),
        ({"mcc": 5411}, "bad_field"),
        ({"mcc": "54a1"}, "bad_field"),
        ({"mcc": "\u0665\u0664\u0661\u0661"}, "bad_field"),  # digits, but not ASCII ones
        ({"mcc": "541"}, "bad_field"),
        ({"currency": "EU1"}, "bad_field"),
        ({"currency": "\u00c9UR"}, "bad_field"),  # a letter, but not an ASCII one
        ({"currency": "US\n"}, "bad_field"),
        ({"ts": 1.5}, "bad_field"),
        ({"lat": 91.0}, "bad_field"),
        ({"lon": None}, "bad_field"),
        ({"channel": "phone"}, "bad_field"),
        ({"channel": ["pos"]}, "bad_field"),
        ({"tx_id": ""}, "bad_field"),
        ({"card_id": 7}, "bad_field"),
        ({"merchant_id": None}, "bad_field"),
    ],
)
def test_transaction_field_rejections(change: dict[str, Any], reason: str) -> None:
    tx = {**valid_tx(), **change}
    with pytest.raises(CodecError) as err:
        decode_transaction(make_record(json.dumps(tx).encode()), LIMITS)
    assert err.value.reason == reason
    assert next(iter(change)) in str(err.value)


@pytest.mark.parametrize("name", sorted(valid_tx()))
def test_every_field_is_required(name: str) -> None:
    tx = valid_tx()
    del tx[name]
    with pytest.raises(CodecError) as err:
        decode_transaction(make_record(json.dumps(tx).encode()), LIMITS)
    assert err.value.reason == "missing_field"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (b"{", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'{"amount": NaN}', "bad_json"),  # JSON has no NaN
    ],
)
def test_transaction_bad_payloads(value: bytes, reason: str) -> None:
    with pytest.raises(CodecError) as err:
        decode_transaction(make_record(value), LIMITS)
    assert err.value.reason == reason


def test_transaction_non_finite_and_oversized() -> None:
    tx = json.dumps({**valid_tx(), "amount": float("inf")}).encode()  # writes Infinity
    with pytest.raises(CodecError) as err:
        decode_transaction(make_record(tx), LIMITS)
    assert err.value.reason == "bad_json"  # not JSON
    tx = json.dumps({**valid_tx(), "amount": 1}).replace('"amount": 1', '"amount": 1e999')
    with pytest.raises(CodecError) as err:
        decode_transaction(make_record(tx.encode()), LIMITS)
    assert err.value.reason == "number_out_of_range"
    big = json.dumps({**valid_tx(), "note": "x" * 2000}).encode()
    with pytest.raises(CodecError) as err:
        decode_transaction(make_record(big), CodecLimits(max_json_bytes=1000))
    assert err.value.reason == "too_large"


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_only_ever_raise_codec_error(data: bytes) -> None:
    for decode in (decode_transaction, decode_sensor):
        try:
            decode(make_record(data), LIMITS)
        except CodecError as exc:
            assert exc.reason in REASONS


def _tx_reason(value: bytes | None) -> str:
    with pytest.raises(CodecError) as err:
        decode_transaction(make_record(value), LIMITS)
    assert err.value.reason in REASONS
    return err.value.reason


def test_poison_values_get_their_own_documented_reasons() -> None:
    tx = valid_tx()
    assert _tx_reason(None) == "null_value"
    assert sensor_reason(None, []) == "null_value"
    assert _tx_reason(b'{"note": ' + b"[" * 10_000 + b"]" * 10_000 + b"}") == "too_deep"
    assert _tx_reason(b"[" * 10_000 + b"]" * 10_000) == "bad_json"  # not an object at all
    assert sensor_reason(b"[" * 10_000 + b"]" * 10_000, []) == "too_deep"
    huge = json.dumps({**tx, "amount": 10**400}).encode()
    assert _tx_reason(huge) == "number_out_of_range"
    rows = json.dumps([[10**400, 0, 0, 0, 0, 0]] + [[0] * 6] * 99).encode()
    assert sensor_reason(rows, []) == "number_out_of_range"


def test_a_json_sample_beyond_float32_is_out_of_range_without_a_warning() -> None:
    rows = [[1.0] * 6 for _ in range(100)]
    rows[7][2] = 1e39  # finite as a double, infinity as a float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's cast would warn on stderr
        assert sensor_reason(json.dumps(rows).encode(), []) == "number_out_of_range"
