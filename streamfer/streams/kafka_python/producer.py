"""The kafka-python producer: ``ProducerClient`` over ``kafka.KafkaProducer``
(thread-safe ``send``; delivery callbacks run on the client's own I/O thread)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamfer.errors import StreamError
from streamfer.streams.client import (
    DeliveryCallback,
    Outgoing,
    ProducerOptions,
    TopicPartition,
)
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.kafka_python.common import (
    RECONNECT_BACKOFF_MAX_MS,
    connect,
    guard,
    offsets_of,
)
from streamfer.streams.kafka_python.workarounds import summarise_library_logs, workaround
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.transactions import TransactionalProducer

T = TypeVar("T")

_COMPRESSION = {"none": None, "gzip": "gzip", "lz4": "lz4", "zstd": "zstd"}


class KafkaPythonProducer(TransactionalProducer):
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

    def send_many(self, out: Outgoing) -> None:
        send, topic, on_delivery = self._p.send, out.topic, out.on_delivery
        every = out.headers if out.headers is not None else [()] * len(out.values)
        for value, key, headers in zip(out.values, out.keys, every, strict=True):
            try:
                fut = send(topic, value=value, key=key, headers=[*headers], partition=out.partition)
            except KafkaError as exc:
                raise StreamError(
                    f"{topic} | send to {self._settings.describe()} failed: {exc!r}"
                ) from exc
            if on_delivery is not None:
                fut.add_callback(self._on_ok, on_delivery)
                fut.add_errback(self._on_err, on_delivery)

    def poll(self, timeout_s: float) -> None:
        """Nothing to serve: callbacks run on the client's I/O thread."""

    def flush(self, timeout_s: float) -> None:
        guard("flush", self._settings, lambda: self._p.flush(timeout=timeout_s))

    def _guard(self, what: str, call: Callable[[], T]) -> T:
        return guard(what, self._settings, call)

    def _offsets(self, positions: Mapping[TopicPartition, int]) -> object:
        return offsets_of(positions)

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
