"""The kafka-python producer: ``ProducerClient`` over ``kafka.KafkaProducer``
(thread-safe ``send``; delivery callbacks run on the client's own I/O thread)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamfer.errors import StreamError
from streamfer.streams.client import DeliveryCallback, Headers, ProducerOptions, TopicPartition
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.kafka_python.common import (
    RECONNECT_BACKOFF_MAX_MS,
    connect,
    guard,
    offsets_of,
)
from streamfer.streams.kafka_python.workarounds import summarise_library_logs, workaround
from streamfer.streams.settings import KafkaSettings

_COMPRESSION = {"none": None, "gzip": "gzip", "lz4": "lz4", "zstd": "zstd"}


class KafkaPythonProducer:
    """``ProducerClient`` over ``kafka.KafkaProducer`` (thread-safe send; delivery callbacks
    run on the client's own I/O thread, so nothing needs to poll)."""

    needs_polling = False

    def __init__(
        self, producer: KafkaProducer, settings: KafkaSettings, monitor: ConnectionMonitor
    ) -> None:
        self._p = producer
        self._settings = settings
        self.monitor = monitor

    def _on_ok(self, cb: DeliveryCallback, md: Any) -> None:
        self.monitor.ok()
        cb(None, md)

    def _on_err(self, cb: DeliveryCallback, exc: Exception) -> None:
        cb(exc, None)

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        on_delivery: DeliveryCallback | None,
        partition: int | None = None,
    ) -> None:
        try:
            fut = self._p.send(
                topic, value=value, key=key, headers=list(headers), partition=partition
            )
        except KafkaError as exc:
            raise StreamError(
                f"{topic} | send to {self._settings.describe()} failed: {exc!r}"
            ) from exc
        if on_delivery is not None:
            fut.add_callback(self._on_ok, on_delivery)
            fut.add_errback(self._on_err, on_delivery)

    def send_many(
        self,
        topic: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None],
        on_delivery: DeliveryCallback,
        partition: int | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> None:
        every = headers if headers is not None else [()] * len(values)
        for value, key, hdrs in zip(values, keys, every, strict=True):
            self.send(topic, value, key, hdrs, on_delivery, partition)  # type: ignore[arg-type]

    def poll(self, timeout_s: float) -> None:
        """Nothing to serve: callbacks run on the client's I/O thread."""

    def flush(self, timeout_s: float) -> None:
        guard("flush", self._settings, lambda: self._p.flush(timeout=timeout_s))

    def init_transactions(self) -> None:
        guard("init_transactions", self._settings, self._p.init_transactions)

    def begin_transaction(self) -> None:
        guard("begin_transaction", self._settings, self._p.begin_transaction)

    def send_offsets_to_transaction(
        self, positions: Mapping[TopicPartition, int], group_metadata: object
    ) -> None:
        offsets = offsets_of(positions)
        guard(
            "send_offsets_to_transaction",
            self._settings,
            lambda: self._p.send_offsets_to_transaction(offsets, group_metadata),
        )

    def commit_transaction(self) -> None:
        guard("commit_transaction", self._settings, self._p.commit_transaction)

    def abort_transaction(self) -> None:
        guard("abort_transaction", self._settings, self._p.abort_transaction)

    def close(self, timeout_s: float) -> None:
        self._p.close(timeout=timeout_s)


def open_producer(settings: KafkaSettings, options: ProducerOptions) -> KafkaPythonProducer:
    summarise_library_logs()
    idempotence: dict[str, Any] = {"enable_idempotence": True}
    if options.transactional_id is None and workaround("producer-idempotence"):
        idempotence = {"enable_idempotence": False, "max_in_flight_requests_per_connection": 1}
    # kafka-python refuses a delivery timeout below linger + request timeout
    request_timeout_ms = min(
        options.request_timeout_ms, max(1, options.delivery_timeout_ms - options.linger_ms)
    )

    def make() -> KafkaProducer:
        return KafkaProducer(
            **settings.producer_kwargs(),
            **idempotence,
            acks="all",
            linger_ms=options.linger_ms,
            batch_size=options.batch_size,
            compression_type=_COMPRESSION[options.compression],
            max_request_size=options.max_request_size,
            delivery_timeout_ms=options.delivery_timeout_ms,
            request_timeout_ms=request_timeout_ms,
            max_block_ms=options.max_block_ms,
            bootstrap_timeout_ms=options.max_block_ms,
            transactional_id=options.transactional_id,
            transaction_timeout_ms=options.transaction_timeout_ms,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )

    producer = connect("producer start", settings, options.max_block_ms, make)
    return KafkaPythonProducer(producer, settings, ConnectionMonitor(settings.describe()))
