"""The confluent-kafka producer: ``ProducerClient`` over ``confluent_kafka.Producer``.

``produce`` only enqueues; delivery reports are served by ``poll``/``flush``
(``KafkaSink`` keeps a thread polling). A full local queue is backpressure:
``send`` serves delivery reports and retries for up to ``max_block_ms``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from streamfer.errors import StreamError
from streamfer.streams.client import DeliveryCallback, Headers, ProducerOptions, TopicPartition
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

_BUFFER_WAIT_S = 0.05  # a full local queue: serve delivery reports, then retry
_COMPRESSION = {"none": "none", "gzip": "gzip", "lz4": "lz4", "zstd": "zstd"}


class ConfluentProducer:
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
        self._txn_timeout_s = options.transaction_timeout_ms / 1000
        self.monitor = monitor

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        on_delivery: DeliveryCallback | None,
        partition: int | None = None,
    ) -> None:
        produce = self._p.produce
        kwargs: dict[str, Any] = {"on_delivery": on_delivery}
        if headers:
            kwargs["headers"] = list(headers)
        if partition is not None:
            kwargs["partition"] = partition
        deadline = 0.0
        while True:
            try:
                produce(topic, value, key, **kwargs)
                return
            except BufferError:  # the local queue is full: backpressure, not failure
                now = time.monotonic()
                deadline = deadline or now + self._max_block_s
                if now >= deadline:
                    raise StreamError(
                        f"{topic} | the producer queue stayed full for {self._max_block_s:g} s. "
                        f"Note: is {self._settings.describe()} accepting writes?"
                    ) from None
                self._p.poll(_BUFFER_WAIT_S)
            except KafkaException as exc:
                raise StreamError(
                    f"{topic} | send to {self._settings.describe()} failed: {error_of(exc)}"
                ) from exc

    def send_many(
        self,
        topic: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None],
        on_delivery: DeliveryCallback,
        partition: int | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> None:
        """``send`` for many messages (decisions, state changelog entries): one call each,
        no extras on the fast path (no headers)."""
        if headers is not None:
            for value, key, hdrs in zip(values, keys, headers, strict=True):
                self.send(topic, value, key, hdrs, on_delivery, partition)  # type: ignore[arg-type]
            return
        produce = self._p.produce
        where: dict[str, Any] = {} if partition is None else {"partition": partition}
        for value, key in zip(values, keys, strict=True):
            try:
                produce(topic, value, key, on_delivery=on_delivery, **where)
            except BufferError:  # full: the slow path waits for room, or fails clearly
                self.send(topic, value, key, (), on_delivery, partition)  # type: ignore[arg-type]
            except KafkaException as exc:
                raise StreamError(
                    f"{topic} | send to {self._settings.describe()} failed: {error_of(exc)}"
                ) from exc

    def poll(self, timeout_s: float) -> None:
        self._p.poll(timeout_s)

    def flush(self, timeout_s: float) -> None:
        left = self._p.flush(timeout_s)
        if left:
            raise StreamError(
                f"{self._settings.describe()} | flush: {left} messages still unacknowledged "
                f"after {timeout_s:g} s. Note: is the cluster reachable?"
            )

    def init_transactions(self) -> None:
        guard(
            "init_transactions",
            self._settings,
            lambda: self._p.init_transactions(self._max_block_s + self._txn_timeout_s),
        )

    def begin_transaction(self) -> None:
        guard("begin_transaction", self._settings, self._p.begin_transaction)

    def send_offsets_to_transaction(
        self, positions: Mapping[TopicPartition, int], group_metadata: object
    ) -> None:
        offsets = positions_of(positions)
        guard(
            "send_offsets_to_transaction",
            self._settings,
            lambda: self._p.send_offsets_to_transaction(
                offsets, group_metadata, self._txn_timeout_s
            ),
        )

    def commit_transaction(self) -> None:
        guard(
            "commit_transaction",
            self._settings,
            lambda: self._p.commit_transaction(self._txn_timeout_s),
        )

    def abort_transaction(self) -> None:
        guard(
            "abort_transaction",
            self._settings,
            lambda: self._p.abort_transaction(self._txn_timeout_s),
        )

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
