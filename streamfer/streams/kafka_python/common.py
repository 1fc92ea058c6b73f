"""What every kafka-python adapter shares: error translation, connecting, batches."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KTP

from streamfer.errors import StreamError
from streamfer.streams.client import TopicPartition
from streamfer.streams.records import RecordBatch
from streamfer.streams.security import LOGIN_CHECK_TIMEOUT_S, check_login
from streamfer.streams.settings import BOOTSTRAP_ENV, KafkaSettings

T = TypeVar("T")

# kafka-python backs off reconnecting up to 30 s, so a broker back after an outage was
# found up to 30 s late; the Java client waits at most 1 s, librdkafka 10 s
RECONNECT_BACKOFF_MAX_MS = 1000


def guard(what: str, settings: KafkaSettings, call: Callable[[], T]) -> T:
    """Run a client call; library errors become StreamError naming the broker."""
    try:
        return call()
    except KafkaError as exc:
        raise StreamError(f"{settings.describe()} | {what} failed: {exc!r}") from exc


def connect(what: str, settings: KafkaSettings, timeout_ms: int, call: Callable[[], T]) -> T:
    """Create a client; a broker that never answers gets a message saying so."""
    # a refused TLS/SASL login fails here, explained; kafka-python would retry it until
    # timeout_ms and then report only "Unable to bootstrap"
    check_login(settings, timeout_s=min(timeout_ms / 1000, LOGIN_CHECK_TIMEOUT_S))
    try:
        return call()
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        raise StreamError(
            f"{settings.describe()} | {what}: no broker answered within {timeout_ms / 1000:g} s "
            f"({exc}). Note: start one with `streamfer broker start` or point "
            f"{BOOTSTRAP_ENV} / --bootstrap at a running cluster"
        ) from exc
    except KafkaError as exc:
        raise StreamError(f"{settings.describe()} | {what} failed: {exc!r}") from exc


def offsets_of(positions: Mapping[TopicPartition, int]) -> dict[KTP, OffsetAndMetadata]:
    return {KTP(t, p): OffsetAndMetadata(pos, "", -1) for (t, p), pos in positions.items()}


def to_batches(records: Mapping[Any, list[Any]], now: int) -> list[RecordBatch]:
    """One RecordBatch per partition of kafka-python's ``{TopicPartition: [records]}``."""
    return [
        RecordBatch(
            tp.topic,
            tp.partition,
            [m.offset for m in msgs],
            [m.key for m in msgs],
            [m.value for m in msgs],
            [m.headers for m in msgs],
            [m.timestamp for m in msgs],
            now,
        )
        for tp, msgs in records.items()
    ]
