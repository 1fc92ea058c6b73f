"""Payment transactions: one JSON object per record, validated field by field."""

from __future__ import annotations

import json
import math
from typing import Any

from streams.codecs.limits import CodecLimits, check_size, fail, json_failure
from streams.records import Record

CHANNELS = frozenset({"pos", "ecom", "atm"})
_STRING_FIELDS = ("tx_id", "card_id", "merchant_id")
_MAX_ID_CHARS = 128


def decode_transaction(record: Record, limits: CodecLimits) -> dict[str, Any]:
    """The validated transaction dict (extra fields kept); CodecError otherwise."""
    value = check_size(record, limits.max_json_bytes, "a JSON transaction")
    try:
        tx = json.loads(value)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise json_failure(record, exc, "one JSON object") from None
    if not isinstance(tx, dict):
        raise fail(record, f"JSON {type(tx).__name__}", "bad_json", "expected one JSON object")
    try:
        _validate(tx)
    except _Bad as bad:
        raise fail(record, bad.problem, bad.reason, bad.note) from None
    return tx


class _Bad(Exception):
    def __init__(self, problem: str, reason: str, note: str) -> None:
        self.problem, self.reason, self.note = problem, reason, note


def _number(tx: dict[str, Any], name: str, low: float, high: float) -> float:
    value = _field(tx, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{name}={value!r}", "bad_field", "expected a number")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond float range
        raise _Bad(
            f"{name} has {len(str(value))} digits", "number_out_of_range", "expected a float"
        ) from None
    if not finite:
        raise _Bad(f"{name}={value!r}", "non_finite", "expected a finite number")
    if not low <= value <= high:
        raise _Bad(f"{name}={value!r}", "bad_field", f"expected {low} <= {name} <= {high}")
    return float(value)


def _field(tx: dict[str, Any], name: str) -> Any:
    try:
        return tx[name]
    except KeyError:
        raise _Bad(f"no {name!r}", "missing_field", f"fields: {sorted(tx)[:12]}") from None


def _validate(tx: dict[str, Any]) -> None:
    for name in _STRING_FIELDS:
        value = _field(tx, name)
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID_CHARS:
            raise _Bad(
                f"{name}={value!r}", "bad_field", f"expected a string of 1..{_MAX_ID_CHARS} chars"
            )
    tx["amount"] = _number(tx, "amount", 0.0, 1e12)
    currency = _field(tx, "currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        raise _Bad(f"currency={currency!r}", "bad_field", "expected 3 letters (ISO 4217)")
    mcc = _field(tx, "mcc")
    if not (isinstance(mcc, str) and len(mcc) == 4 and mcc.isdigit() and mcc.isascii()):
        raise _Bad(f"mcc={mcc!r}", "bad_field", "expected 4 digits as a string")
    ts = _field(tx, "ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0:
        raise _Bad(f"ts={ts!r}", "bad_field", "expected epoch milliseconds as an integer")
    tx["lat"] = _number(tx, "lat", -90.0, 90.0)
    tx["lon"] = _number(tx, "lon", -180.0, 180.0)
    channel = _field(tx, "channel")
    if not isinstance(channel, str) or channel not in CHANNELS:
        raise _Bad(f"channel={channel!r}", "bad_field", f"expected one of {sorted(CHANNELS)}")


def encode_transaction(tx: dict[str, Any]) -> bytes:
    """Compact JSON bytes for one transaction dict."""
    return json.dumps(tx, separators=(",", ":")).encode()
