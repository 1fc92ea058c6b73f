"""Payment transactions: typed JSON decode per record, features per batch, fraud actions.

Decoding and validation happen in one C pass per record, with the codec's own
decoder and reason codes (``streams.codecs.transaction``). Features come from
the stateful :class:`~models.features.FraudFeaturizer` (card history), in
consume order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.features import FraudFeaturizer, TxColumns
from pipeline.config import StreamConfig
from pipeline.postprocess import FraudPostprocessor
from pipeline.processors.base import Postprocessor, Prepared, Reject, Result, accepted, reject
from streams.codecs.transaction import (
    DECODE_ERRORS,
    Transaction,
    decode_value,
    transaction_error,
)
from streams.records import RecordBatch


class TransactionProcessor:
    """``kind: transaction``: JSON transactions in, fraud score and action out."""

    def __init__(
        self,
        stream: StreamConfig,
        input_name: str = "features",
        output_name: str | None = "score",
        post: Postprocessor | None = None,
    ) -> None:
        self.stream = stream
        self.input_name = input_name
        self.max_bytes = stream.limits.max_json_bytes
        self.featurizer = FraudFeaturizer()
        self.post: Postprocessor = post or FraudPostprocessor(stream.fraud, output_name)
        self._decode = decode_value

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
            except DECODE_ERRORS as exc:
                err = transaction_error(batch.coords(i), exc)
                rejects.append(Reject(i, err.reason, err))
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

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> Sequence[Result | BaseException]:
        return self.post.results(outputs, metas)


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
