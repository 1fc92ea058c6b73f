"""The confluent-kafka producer: ``ProducerClient`` over ``confluent_kafka.Producer``.

``produce`` only enqueues; delivery reports are served by ``poll``/``flush``
(``KafkaSink`` keeps a thread polling). A full local queue is backpressure:
``send_many`` serves delivery reports and retries for up to ``max_block_ms``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import KafkaException, Producer

from streamfer.errors import StreamError
from streamfer.streams.client import (
    Headers,
    Outgoing,
    ProducerOptions,
    TopicPartition,
)
from streamfer.streams.confluent.common import (
    RECONNECT_BACKOFF_MAX_MS,
    check_reachable,
    error_of,
    guard,
    positions_of,
)
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.security import LOGIN_CHECK_TIMEOUT_S, check_login
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.transactions import TransactionalProducer

T = TypeVar("T")

_BUFFER_WAIT_S = 0.05  # a full local queue: serve delivery reports, then retry
_COMPRESSION = {"none": "none", "gzip": "gzip", "lz4": "lz4", "zstd": "zstd"}


class ConfluentProducer(TransactionalProducer):
    """``ProducerClient`` over ``confluent_kafka.Producer``."""

    needs_polling = True

    def __init__(
        self,
        producer: Producer,
        settings: KafkaSettings,
        options: ProducerOptions,
        monitor: ConnectionMonitor,
    ) -> None:
        self._p = producer
        self._settings = settings
        self._max_block_s = options.max_block_ms / 1000
        txn_timeout_s = options.transaction_timeout_ms / 1000
        self._txn_args = (txn_timeout_s,)
        self._init_args = (self._max_block_s + txn_timeout_s,)
        self.monitor = monitor

    def send_many(self, out: Outgoing) -> None:
        """One ``produce`` a message, no extras on the fast path (no headers); a full local
        queue falls back to ``_produce_waiting``."""
        topic, on_delivery, partition = out.topic, out.on_delivery, out.partition
        if out.headers is not None:
            for value, key, headers in zip(out.values, out.keys, out.headers, strict=True):
                self._produce_waiting(out, value, key, headers)
            return
        produce = self._p.produce
        where: dict[str, Any] = {} if partition is None else {"partition": partition}
        for value, key in zip(out.values, out.keys, strict=True):
            try:
                produce(topic, value, key, on_delivery=on_delivery, **where)
            except BufferError:  # full: the slow path waits for room, or fails clearly
                self._produce_waiting(out, value, key, ())
            except KafkaException as exc:
                raise self._failed(topic, exc) from exc

    def _produce_waiting(
        self, out: Outgoing, value: bytes | None, key: bytes | None, headers: Headers
    ) -> None:
        """``produce`` one message of ``out``; a full local queue is backpressure, not
        failure: serve delivery reports and retry, for up to ``max_block_ms``."""
        kwargs: dict[str, Any] = {"on_delivery": out.on_delivery}
        if headers:
            kwargs["headers"] = list(headers)
        if out.partition is not None:
            kwargs["partition"] = out.partition
        deadline = 0.0
        while True:
            try:
                self._p.produce(out.topic, value, key, **kwargs)
                return
            except BufferError:
                now = time.monotonic()
                deadline = deadline or now + self._max_block_s
                if now >= deadline:
                    raise StreamError(
                        f"{out.topic} | the producer queue stayed full for "
                        f"{self._max_block_s:g} s. "
                        f"Note: is {self._settings.describe()} accepting writes?"
                    ) from None
                self._p.poll(_BUFFER_WAIT_S)
            except KafkaException as exc:
                raise self._failed(out.topic, exc) from exc

    def _failed(self, topic: str, exc: KafkaException) -> StreamError:
        return StreamError(f"{topic} | send to {self._settings.describe()} failed: {error_of(exc)}")

    def poll(self, timeout_s: float) -> None:
        self._p.poll(timeout_s)

    def flush(self, timeout_s: float) -> None:
        left = self._p.flush(timeout_s)
        if left:
            raise StreamError(
                f"{self._settings.describe()} | flush: {left} messages still unacknowledged "
                f"after {timeout_s:g} s. Note: is the cluster reachable?"
            )

    def _guard(self, what: str, call: Callable[[], T]) -> T:
        return guard(what, self._settings, call)

    def _offsets(self, positions: Mapping[TopicPartition, int]) -> object:
        return positions_of(positions)

    def close(self, timeout_s: float) -> None:
        self._p.flush(timeout_s)


def open_producer(settings: KafkaSettings, options: ProducerOptions) -> ConfluentProducer:
    check_login(settings, min(options.max_block_ms / 1000, LOGIN_CHECK_TIMEOUT_S))
    monitor = ConnectionMonitor(settings.describe())
    conf: dict[str, Any] = {
        **settings.librdkafka_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": options.linger_ms,
        "batch.size": options.batch_size,
        "compression.type": _COMPRESSION[options.compression],
        "message.max.bytes": options.max_request_size,
        "delivery.timeout.ms": options.delivery_timeout_ms,
        "request.timeout.ms": options.request_timeout_ms,
        "queue.buffering.max.messages": options.queue_max_messages,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "error_cb": monitor.on_error,
        "stats_cb": monitor.on_stats,
        "statistics.interval.ms": options.stats_interval_ms,
        "logger": monitor,
    }
    if options.transactional_id is not None:
        conf["transactional.id"] = options.transactional_id
        conf["transaction.timeout.ms"] = options.transaction_timeout_ms
        # librdkafka: a message may not outlive the transaction it belongs to
        conf["delivery.timeout.ms"] = min(
            options.delivery_timeout_ms, options.transaction_timeout_ms
        )
    producer = Producer(conf)
    check_reachable(producer, "producer start", settings, options.max_block_ms / 1000, monitor)
    return ConfluentProducer(producer, settings, options, monitor)
