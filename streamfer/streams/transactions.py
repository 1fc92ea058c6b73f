"""The transaction methods of ``ProducerClient``, written once for both adapters.

Each is one library call, run through the adapter's ``_guard`` (library errors become
StreamError naming the cluster). The libraries differ only in what their calls take after
their own arguments: confluent-kafka a timeout, kafka-python nothing (``_txn_args``,
``_init_args``), and in how they spell offsets (``_offsets``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from streamfer.streams.client import TopicPartition

T = TypeVar("T")


class TransactionalProducer:
    """Base of the producer adapters: ``init/begin/commit/abort_transaction`` and
    ``send_offsets_to_transaction`` over the library producer ``_p``."""

    _p: Any
    _init_args: tuple[float, ...] = ()
    _txn_args: tuple[float, ...] = ()

    def _guard(self, what: str, call: Callable[[], T]) -> T:
        raise NotImplementedError

    def _offsets(self, positions: Mapping[TopicPartition, int]) -> object:
        raise NotImplementedError

    def init_transactions(self) -> None:
        self._guard("init_transactions", lambda: self._p.init_transactions(*self._init_args))

    def begin_transaction(self) -> None:
        self._guard("begin_transaction", self._p.begin_transaction)

    def send_offsets_to_transaction(
        self, positions: Mapping[TopicPartition, int], group_metadata: object
    ) -> None:
        offsets = self._offsets(positions)
        self._guard(
            "send_offsets_to_transaction",
            lambda: self._p.send_offsets_to_transaction(offsets, group_metadata, *self._txn_args),
        )

    def commit_transaction(self) -> None:
        self._guard("commit_transaction", lambda: self._p.commit_transaction(*self._txn_args))

    def abort_transaction(self) -> None:
        self._guard("abort_transaction", lambda: self._p.abort_transaction(*self._txn_args))
