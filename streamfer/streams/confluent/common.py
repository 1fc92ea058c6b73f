"""What every confluent-kafka adapter shares: error translation, offset lists, batches.

librdkafka reports failures as ``KafkaException``; ``guard`` turns them into
``StreamError`` naming the cluster. ``to_batches`` groups consumed messages into one
:class:`~streamfer.streams.records.RecordBatch` per partition.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as CTP

from streamfer.errors import StreamError
from streamfer.streams.client import TopicPartition
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.records import RecordBatch
from streamfer.streams.settings import BOOTSTRAP_ENV, KafkaSettings

T = TypeVar("T")

EOF = KafkaError._PARTITION_EOF
# librdkafka backs off reconnecting up to 10 s: a broker back after an outage was found
# up to 10 s late (the Java client waits at most 1 s)
RECONNECT_BACKOFF_MAX_MS = 1000


def error_of(exc: BaseException) -> Any:
    """The ``KafkaError`` inside a ``KafkaException`` (or the exception itself)."""
    return exc.args[0] if exc.args else exc


def guard(what: str, settings: KafkaSettings, call: Callable[[], T]) -> T:
    """Run a client call; library errors become StreamError naming the cluster."""
    try:
        return call()
    except KafkaException as exc:
        raise StreamError(f"{settings.describe()} | {what} failed: {error_of(exc)}") from exc


def positions_of(positions: Mapping[TopicPartition, int]) -> list[CTP]:
    return [CTP(t, p, off) for (t, p), off in positions.items()]


def tps_of(tps: Collection[TopicPartition]) -> list[CTP]:
    return [CTP(t, p) for t, p in tps]


def check_reachable(
    client: Consumer | Producer,
    what: str,
    settings: KafkaSettings,
    timeout_s: float,
    monitor: ConnectionMonitor,
) -> None:
    """One metadata request: a cluster that never answers fails the start, clearly."""
    try:
        client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        detail = monitor.last_error or str(error_of(exc))
        raise StreamError(
            f"{settings.describe()} | {what}: no broker answered within {timeout_s:g} s "
            f"({detail}). Note: start one with `streamfer broker start` or point "
            f"{BOOTSTRAP_ENV} / --bootstrap at a running cluster"
        ) from exc
    monitor.ok()


def to_batches(groups: dict[TopicPartition, list[Any]], now: int) -> list[RecordBatch]:
    """One RecordBatch per partition of messages grouped by ``(topic, partition)``."""
    return [
        RecordBatch(
            topic,
            partition,
            [m.offset() for m in group],
            [m.key() for m in group],
            [m.value() for m in group],
            [m.headers() for m in group],
            [m.timestamp()[1] for m in group],
            now,
        )
        for (topic, partition), group in groups.items()
    ]
