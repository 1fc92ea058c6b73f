"""Payment transactions: typed JSON decode per record, features per batch, fraud actions.

Decoding and validation happen in one C pass per record (msgspec with the
field constraints of ``streams.codecs.transaction``), its errors mapped to
the same reason codes the codec uses. Features come from the stateful
:class:`~models.features.FraudFeaturizer` (card history), in consume order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from models.features import FraudFeaturizer, TxColumns
from pipeline.config import StreamConfig
from pipeline.postprocess import FraudPostprocessor
from pipeline.processors.base import Prepared, Reject, Result, accepted, reject
from streams.records import RecordBatch

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Transaction(msgspec.Struct, forbid_unknown_fields=False):
    """The fields a transaction must carry (contract v1); other fields are ignored."""

    tx_id: _Id
    card_id: _Id
    merchant_id: _Id
    amount: Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Za-z]{3}$")]
    mcc: Annotated[str, msgspec.Meta(pattern="^[0-9]{4}$")]
    ts: Annotated[int, msgspec.Meta(gt=0)]
    lat: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    lon: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    channel: Literal["pos", "ecom", "atm"]


_EXPECT = {
    "tx_id": "a string of 1..128 chars",
    "card_id": "a string of 1..128 chars",
    "merchant_id": "a string of 1..128 chars",
    "amount": "a number 0 <= amount <= 1e12",
    "currency": "3 letters (ISO 4217)",
    "mcc": "4 digits as a string",
    "ts": "epoch milliseconds as a positive integer",
    "lat": "a number -90 <= lat <= 90",
    "lon": "a number -180 <= lon <= 180",
    "channel": "one of ['atm', 'ecom', 'pos']",
}
_MISSING = re.compile(r"missing required field `(\w+)`")
_AT = re.compile(r" - at `\$\.(\w+)`")


def decode_error(batch: RecordBatch, row: int, exc: Exception) -> Reject:
    """The Reject for a msgspec decode/validation error, with the codec's reason codes."""
    text = str(exc)
    if isinstance(exc, RecursionError):
        return reject(batch, row, "JSON nested too deeply", "too_deep", "expected one JSON object")
    if isinstance(exc, UnicodeDecodeError):  # msgspec: a string that is not UTF-8
        return reject(
            batch, row, f"a JSON string is not UTF-8 ({exc.reason})",
            "bad_json", "expected UTF-8 JSON",
        )  # fmt: skip
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return reject(batch, row, f"invalid JSON ({text})", "bad_json", "expected one JSON object")
    missing = _MISSING.search(text)
    if missing:
        return reject(
            batch,
            row,
            f"no {missing.group(1)!r}",
            "missing_field",
            f"required: {', '.join(_EXPECT)}",
        )
    at = _AT.search(text)
    if at is None:  # the top level is not an object
        return reject(
            batch, row, f"JSON is not an object ({text})", "bad_json", "expected one JSON object"
        )
    name = at.group(1)
    reason = "number_out_of_range" if text.startswith("Number out of range") else "bad_field"
    return reject(
        batch,
        row,
        f"{name}: {text[: at.start()]}",
        reason,
        f"expected {_EXPECT.get(name, 'a valid value')}",
    )


class TransactionProcessor:
    """``kind: transaction``: JSON transactions in, fraud score and action out."""

    def __init__(
        self, stream: StreamConfig, input_name: str = "features", output_name: str | None = "score"
    ) -> None:
        self.stream = stream
        self.input_name = input_name
        self.max_bytes = stream.limits.max_json_bytes
        self.featurizer = FraudFeaturizer()
        self.post = FraudPostprocessor(stream.fraud, output_name)
        self._decode = msgspec.json.Decoder(Transaction).decode

    def prepare(self, batch: RecordBatch) -> Prepared:
        rows: list[int] = []
        txs: list[Transaction] = []
        rejects: list[Reject] = []
        decode, limit = self._decode, self.max_bytes
        for i, value in enumerate(batch.values):
            if not value or len(value) > limit:
                rejects.append(self._size_reject(batch, i, value))
                continue
            try:
                txs.append(decode(value))
            except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
                rejects.append(decode_error(batch, i, exc))
                continue
            rows.append(i)
        feats = self.featurizer.transform_columns(columns(txs))
        return Prepared(batch, accepted(rows), {self.input_name: feats}, rejects=rejects)

    def _size_reject(self, batch: RecordBatch, row: int, value: bytes | None) -> Reject:
        what = "a JSON transaction"
        if value is None:
            return reject(batch, row, "null value (a tombstone)", "null_value", f"expected {what}")
        if not value:
            return reject(batch, row, "empty value", "empty", f"expected {what}")
        return reject(
            batch,
            row,
            f"value is {len(value)} bytes",
            "too_large",
            f"{what} is limited to {self.max_bytes} bytes",
        )

    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        return self.post.results(outputs, metas)  # type: ignore[return-value]


def columns(txs: Sequence[Transaction]) -> TxColumns:
    return TxColumns(
        [t.card_id for t in txs],
        [t.ts for t in txs],
        [t.lat for t in txs],
        [t.lon for t in txs],
        [t.amount for t in txs],
        [t.currency for t in txs],
        [t.mcc for t in txs],
        [t.channel for t in txs],
    )
