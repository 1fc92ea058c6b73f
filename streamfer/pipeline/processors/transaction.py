"""Payment transactions: typed JSON decode per record, features per batch, fraud actions.

Decoding and validation happen in one C pass per record, with the codec's own
decoder and reason codes (``streamfer.streams.codecs.transaction``), and one check
of the currency and mcc characters for the whole batch. Features come from
the stateful :class:`~models.features.FraudFeaturizer` (card history), in
consume order: in memory, or, with ``state.enabled``, through the partition's
state store (each card's entry written with the offset of its last transaction
in the batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamfer.models.features import CARD_CODEC, FraudFeaturizer, TxColumns
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.postprocess import FraudPostprocessor
from streamfer.pipeline.processors.base import (
    Postprocessor,
    Prepared,
    Reject,
    Result,
    StateCodec,
    StateView,
    accepted,
)
from streamfer.streams.codecs.limits import size_error
from streamfer.streams.codecs.transaction import (
    DECODE_ERRORS,
    Transaction,
    code_error,
    codes_valid,
    decode_struct,
    transaction_error,
)
from streamfer.streams.records import RecordBatch


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

    def prepare(self, batch: RecordBatch) -> Prepared:
        rows, txs, rejects = self._decode_all(batch)
        feats = self.featurizer.transform_columns(columns(txs))
        return Prepared(batch, accepted(rows), {self.input_name: feats}, rejects=rejects)

    def state_codec(self) -> StateCodec[Any]:
        return CARD_CODEC

    def prepare_with_state(self, batch: RecordBatch, state: StateView[Any]) -> Prepared:
        rows, txs, rejects = self._decode_all(batch)
        cols = columns(txs)
        feats = self.featurizer.transform_columns(cols, memory=StoredCards(state))
        offsets = batch.offsets
        state.updated(cols.card_id, [offsets[r] for r in rows])
        return Prepared(batch, accepted(rows), {self.input_name: feats}, rejects=rejects)

    def _decode_all(self, batch: RecordBatch) -> tuple[list[int], list[Transaction], list[Reject]]:
        rows: list[int] = []
        txs: list[Transaction] = []
        rejects: list[Reject] = []
        decode, limit = decode_struct, self.max_bytes
        for i, value in enumerate(batch.values):
            if not value or len(value) > limit:
                err = size_error(batch.coords(i), value, limit, "a JSON transaction")
                rejects.append(Reject(i, err.reason, err))
                continue
            try:
                txs.append(decode(value))
            except DECODE_ERRORS as exc:
                err = transaction_error(batch.coords(i), exc)
                rejects.append(Reject(i, err.reason, err))
                continue
            rows.append(i)
        if not codes_valid(txs):
            return _reject_codes(batch, rows, txs, rejects)
        return rows, txs, rejects

    def results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]
    ) -> Sequence[Result | BaseException]:
        return self.post.results(outputs, metas)


def _reject_codes(
    batch: RecordBatch, rows: list[int], txs: list[Transaction], rejects: list[Reject]
) -> tuple[list[int], list[Transaction], list[Reject]]:
    """The batch's parsed transactions without those whose currency or mcc holds the wrong
    characters, which join the rejects (in row order, as the rest)."""
    kept_rows: list[int] = []
    kept: list[Transaction] = []
    for i, tx in zip(rows, txs, strict=True):
        exc = code_error(tx)
        if exc is None:
            kept_rows.append(i)
            kept.append(tx)
        else:
            err = transaction_error(batch.coords(i), exc)
            rejects.append(Reject(i, err.reason, err))
    rejects.sort(key=lambda r: r.row)
    return kept_rows, kept, rejects


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


class StoredCards:
    """A partition's state view as the featurizer's card memory (``models.features.CardMemory``)."""

    __slots__ = ("view",)

    def __init__(self, view: StateView[Any]) -> None:
        self.view = view

    def get_many(self, card_ids: Sequence[str], now_ms: Sequence[int]) -> list[Any]:
        return self.view.get_many(card_ids, now_ms)

    def remember(self, card_ids: Sequence[str], states: Sequence[Any],
                 fresh: Sequence[bool]) -> None:  # fmt: skip
        put = self.view.put
        for card_id, state, new in zip(card_ids, states, fresh, strict=True):
            if new:
                put(card_id, state)
