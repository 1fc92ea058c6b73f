"""Payment transactions: one JSON object per record, decoded and validated in one C pass.

:class:`Transaction` holds the fields a transaction must carry (contract v1)
with their constraints; msgspec checks them while it parses, and
:func:`transaction_error` turns its errors into the codec's reason codes
(``bad_json``, ``missing_field``, ``bad_field``, ``number_out_of_range``,
``too_deep``). Other fields of the object are ignored.

The characters of ``currency`` (3 ASCII letters) and ``mcc`` (4 ASCII digits)
are checked after the parse, not by a regex during it: a regex costs about a
microsecond a record, as much as the parse. :func:`decode_value` checks one
record; the pipeline's transaction processor parses a batch with
:data:`decode_struct` and checks the whole batch at once (:func:`codes_valid`),
looking at single records only when that fails (:func:`code_error`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec

from streamfer.errors import CodecError
from streamfer.streams.codecs.limits import CodecLimits, check_size
from streamfer.streams.records import Record

CHANNELS = frozenset({"pos", "ecom", "atm"})
_MAX_ID_CHARS = 128
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_ID_CHARS)]


class Transaction(msgspec.Struct, forbid_unknown_fields=False):
    """The fields a transaction must carry; other fields are ignored."""

    tx_id: _Id
    card_id: _Id
    merchant_id: _Id
    amount: Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]  # letters: code_error
    mcc: Annotated[str, msgspec.Meta(min_length=4, max_length=4)]  # digits: code_error
    ts: Annotated[int, msgspec.Meta(gt=0)]
    lat: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    lon: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    channel: Literal["pos", "ecom", "atm"]


decode_struct = msgspec.json.Decoder(Transaction).decode
"""``bytes -> Transaction`` with every constraint but the characters of currency and mcc
(see :func:`codes_valid`); raises msgspec.DecodeError/ValidationError or RecursionError."""


def _letters(text: str) -> bool:
    """Only ASCII letters (``str.isalpha`` alone takes any script's letters)."""
    return text.isascii() and text.isalpha()


def _digits(text: str) -> bool:
    """Only ASCII digits (``str.isdigit`` alone takes any script's digits)."""
    return text.isascii() and text.isdigit()


def code_error(tx: Transaction) -> msgspec.ValidationError | None:
    """The error of a parsed transaction whose currency or mcc holds the wrong characters
    (their lengths the parse checked), worded as msgspec words its own."""
    if not _letters(tx.currency):
        return msgspec.ValidationError("Expected 3 ASCII letters - at `$.currency`")
    if not _digits(tx.mcc):
        return msgspec.ValidationError("Expected 4 ASCII digits - at `$.mcc`")
    return None


def codes_valid(txs: Sequence[Transaction]) -> bool:
    """Whether :func:`code_error` finds nothing in any of ``txs`` (parsed by
    :data:`decode_struct`, so of the right lengths): the same rules, once each over the
    field's values joined for the batch."""
    if not txs:
        return True
    currencies = "".join([t.currency for t in txs])
    return _letters(currencies) and _digits("".join([t.mcc for t in txs]))


def decode_value(value: bytes) -> Transaction:
    """One record's ``Transaction``, every constraint checked; raises as
    :data:`decode_struct` does."""
    tx = decode_struct(value)
    err = code_error(tx)
    if err is not None:
        raise err
    return tx


# msgspec raises UnicodeDecodeError for a JSON string that is not UTF-8
DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)

_EXPECT = {
    "tx_id": f"a string of 1..{_MAX_ID_CHARS} chars",
    "card_id": f"a string of 1..{_MAX_ID_CHARS} chars",
    "merchant_id": f"a string of 1..{_MAX_ID_CHARS} chars",
    "amount": "a number 0 <= amount <= 1e12",
    "currency": "3 ASCII letters (ISO 4217)",
    "mcc": "4 ASCII digits as a string",
    "ts": "epoch milliseconds as a positive integer",
    "lat": "a number -90 <= lat <= 90",
    "lon": "a number -180 <= lon <= 180",
    "channel": f"one of {sorted(CHANNELS)}",
}
_MISSING = re.compile(r"missing required field `(\w+)`")
_AT = re.compile(r" - at `\$\.(\w+)`")


def _fail(where: str, problem: str, reason: str, note: str) -> CodecError:
    return CodecError(f"{where} | {problem}. Note: {note}", reason)


def transaction_error(where: str, exc: BaseException) -> CodecError:
    """The CodecError of a failed decode of the record ``where`` (``topic[p]@offset``)."""
    text = str(exc)
    if isinstance(exc, RecursionError):
        return _fail(where, "JSON nested too deeply", "too_deep", "expected one JSON object")
    if isinstance(exc, UnicodeDecodeError):
        problem = f"a JSON string is not UTF-8 ({exc.reason})"
        return _fail(where, problem, "bad_json", "expected UTF-8 JSON")
    if not isinstance(exc, msgspec.ValidationError):
        return _fail(where, f"invalid JSON ({text})", "bad_json", "expected one JSON object")
    missing = _MISSING.search(text)
    if missing:
        return _fail(
            where, f"no {missing.group(1)!r}", "missing_field", f"required: {', '.join(_EXPECT)}"
        )
    at = _AT.search(text)
    if at is None:  # the top level is not an object
        return _fail(
            where, f"JSON is not an object ({text})", "bad_json", "expected one JSON object"
        )
    name = at.group(1)
    reason = "number_out_of_range" if text.startswith("Number out of range") else "bad_field"
    return _fail(
        where,
        f"{name}: {text[: at.start()]}",
        reason,
        f"expected {_EXPECT.get(name, 'a valid value')}",
    )


def decode_transaction(record: Record, limits: CodecLimits) -> dict[str, Any]:
    """The validated transaction of one record as a dict of its fields; CodecError otherwise."""
    value = check_size(record, limits.max_json_bytes, "a JSON transaction")
    try:
        tx = decode_value(value)
    except DECODE_ERRORS as exc:
        raise transaction_error(record.coords, exc) from None
    return msgspec.structs.asdict(tx)


def encode_transaction(tx: dict[str, Any]) -> bytes:
    """Compact JSON bytes for one transaction dict."""
    return json.dumps(tx, separators=(",", ":")).encode()
