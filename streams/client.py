"""The small Kafka client interface streamfer's sources and sinks are written against.

Everything Kafka-library specific lives behind these Protocols (the kafka-python
implementation is ``streams.kafka_python``), so another client (librdkafka via
confluent-kafka, say) can be added by implementing them and a ``ClientFactory``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from streams.records import Record
from streams.settings import KafkaSettings

TopicPartition = tuple[str, int]
Headers = Sequence[tuple[str, bytes]]

Compression = Literal["none", "gzip", "lz4", "zstd"]  # snappy needs an extra we do not ship
OffsetReset = Literal["earliest", "latest"]
Isolation = Literal["read_uncommitted", "read_committed"]


@dataclass(frozen=True)
class Delivered:
    """Where an acknowledged message landed."""

    topic: str
    partition: int
    offset: int


# Called once per message, from the client's I/O thread: (metadata, None) or (None, error).
DeliveryCallback = Callable[[Delivered | None, Exception | None], None]

# Revocation hook: (partitions, lost) -> positions to commit before the rebalance
# completes (empty when the partitions are abandoned or were lost).
RevokeHook = Callable[[list[TopicPartition], bool], Mapping[TopicPartition, int]]
AssignHook = Callable[[list[TopicPartition]], None]


@dataclass(frozen=True)
class ConsumerOptions:
    """Consumer tuning; defaults favour latency with batched polls."""

    group_id: str
    max_poll_records: int = 1000
    fetch_max_wait_ms: int = 10
    fetch_min_bytes: int = 1
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    auto_offset_reset: OffsetReset = "earliest"
    isolation_level: Isolation = "read_uncommitted"
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000


@dataclass(frozen=True)
class ProducerOptions:
    """Producer tuning: idempotent, acks=all; linger/batch/compression for throughput."""

    linger_ms: int = 5
    batch_size: int = 256 * 1024
    compression: Compression = "none"
    max_request_size: int = 16 * 1024 * 1024
    delivery_timeout_ms: int = 120_000
    request_timeout_ms: int = 30_000
    max_block_ms: int = 10_000  # also bounds start() against a broker that is down
    transactional_id: str | None = None
    transaction_timeout_ms: int = 60_000


class ConsumerClient(Protocol):
    """A group member with manual commits; used from one thread (its owner's)."""

    def poll(self, timeout_s: float, max_records: int) -> Mapping[TopicPartition, list[Record]]:
        """Records by partition, in offset order."""
        ...

    def commit(self, positions: Mapping[TopicPartition, int], timeout_s: float) -> None: ...

    def committed(self, tp: TopicPartition, timeout_s: float) -> int | None: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def rewind(self, tps: Collection[TopicPartition], timeout_s: float) -> None:
        """Seek to the committed offsets, or per ``auto_offset_reset`` where none is."""
        ...

    def pause(self, tps: Collection[TopicPartition]) -> None: ...

    def resume(self, tps: Collection[TopicPartition]) -> None: ...

    def paused(self) -> set[TopicPartition]: ...

    def assignment(self) -> set[TopicPartition]: ...

    def lag(self) -> dict[TopicPartition, int]: ...

    def group_metadata(self) -> object: ...

    def close(self) -> None: ...


class ProducerClient(Protocol):
    """An idempotent producer; ``send`` may be called from many threads."""

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        on_delivery: DeliveryCallback | None,
        partition: int | None = None,
    ) -> None: ...

    def flush(self, timeout_s: float) -> None: ...

    def init_transactions(self) -> None: ...

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(
        self, positions: Mapping[TopicPartition, int], group_metadata: object
    ) -> None: ...

    def commit_transaction(self) -> None: ...

    def abort_transaction(self) -> None: ...

    def close(self, timeout_s: float) -> None: ...


class ClientFactory(Protocol):
    """Creates connected clients (this is where I/O starts)."""

    def consumer(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        options: ConsumerOptions,
        on_revoke: RevokeHook,
        on_assign: AssignHook,
    ) -> ConsumerClient: ...

    def producer(self, settings: KafkaSettings, options: ProducerOptions) -> ProducerClient: ...
