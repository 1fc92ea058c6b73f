"""The small Kafka client interface streamfer's sources and sinks are written against.

Everything Kafka-library specific lives behind these Protocols. Two clients
implement them: librdkafka through confluent-kafka (``streamfer.streams.confluent``, the
default) and kafka-python (``streamfer.streams.kafka_python``), each a package with one
module per role (consumer, producer, reader, admin). ``streamfer.streams.factory``
``client_factory(name)`` returns either; both pass the same contract tests. The adapters
import only this module (and the shared settings, records and security helpers), never
each other nor the factory.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from streamfer.errors import StreamError
from streamfer.streams.records import RecordBatch
from streamfer.streams.settings import KafkaSettings

TopicPartition = tuple[str, int]
Headers = Sequence[tuple[str, bytes]]

Compression = Literal["none", "gzip", "lz4", "zstd"]  # snappy needs an extra we do not ship
OffsetReset = Literal["earliest", "latest"]
Isolation = Literal["read_uncommitted", "read_committed"]


ClientName = Literal["confluent-kafka", "kafka-python"]
CLIENTS: tuple[ClientName, ...] = ("confluent-kafka", "kafka-python")
DEFAULT_CLIENT: ClientName = "confluent-kafka"

# Called once per message when its fate is known: ``(None, message)`` once acknowledged,
# ``(error, message)`` when it failed (``str(error)`` says why; ``message`` is the
# client's own object, or None). It runs in whichever thread serves the client's
# delivery reports, possibly two threads at once (a flush and the poller): keep it
# short and thread-safe.
DeliveryCallback = Callable[[object | None, object], None]
# an asynchronous commit's outcome: the positions sent, and None or what went wrong
CommitDone = Callable[[Mapping[TopicPartition, int], str | None], None]

# Revocation hook: (partitions, lost) -> positions to commit before the rebalance
# completes (empty when the partitions are abandoned or were lost).
RevokeHook = Callable[[list[TopicPartition], bool], Mapping[TopicPartition, int]]
AssignHook = Callable[[list[TopicPartition]], None]


@dataclass(frozen=True)
class ConsumerOptions:
    """Consumer tuning. These defaults are the ones ``streamfer run`` uses: the pipeline
    config takes each of its consumer defaults from here (written once), except the fetch
    waits (``fetch_max_wait_ms``, ``fetch_min_bytes``), which come from each stream's latency
    profile (``streamfer.pipeline.latency``)."""

    group_id: str
    max_poll_records: int = 500
    fetch_max_wait_ms: int = 20
    fetch_min_bytes: int = 1
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    queued_max_kbytes: int = 16 * 1024  # librdkafka prefetch per partition (frames add up)
    queued_min_messages: int = 20_000  # librdkafka: prefetch at least this many per partition
    fetch_queue_backoff_ms: int = 10  # librdkafka: wait after a full prefetch queue
    auto_offset_reset: OffsetReset = "earliest"
    isolation_level: Isolation = "read_uncommitted"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 2_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    stats_interval_ms: int = 1_000  # librdkafka statistics: broker liveness for readiness


@dataclass(frozen=True)
class ProducerOptions:
    """Producer tuning: idempotent, acks=all; linger/batch/compression for throughput.
    The pipeline config takes each of its producer defaults from here (written once), except
    ``linger_ms``, which comes from each stream's latency profile (streamfer.pipeline.latency)."""

    linger_ms: int = 1  # librdkafka batches what queues while a request is out anyway
    batch_size: int = 256 * 1024
    compression: Compression = "none"
    max_request_size: int = 8 * 1024 * 1024
    delivery_timeout_ms: int = 120_000
    request_timeout_ms: int = 30_000
    max_block_ms: int = 10_000  # also bounds start() against a broker that is down
    queue_max_messages: int = 500_000  # librdkafka's local queue; full means backpressure
    transactional_id: str | None = None
    transaction_timeout_ms: int = 60_000
    stats_interval_ms: int = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """The messages of one ``send_many`` call (one value a call, never one a message: this
    is the hot path of every decision and changelog entry). A None value is a tombstone;
    ``partition`` None: each key's partition; ``headers``: one sequence per message, or
    None when no message has any (the fast path)."""

    topic: str
    values: Sequence[bytes | None]
    keys: Sequence[bytes | None]
    on_delivery: DeliveryCallback | None
    partition: int | None = None
    headers: Sequence[Headers] | None = None


def not_started(who: str) -> StreamError:
    """The error of a source or sink used before ``start()`` (``who``: ``<where> | <class>``)."""
    return StreamError(
        f"{who} used before start(). Note: call start() or use it as a context manager"
    )


class ConsumerClient(Protocol):
    """A group member with manual commits; used from one thread (its owner's)."""

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]:
        """At most ``max_records`` records, one batch per partition, each in offset order."""
        ...

    def commit(self, positions: Mapping[TopicPartition, int], timeout_s: float) -> None:
        """Commit and return once the group's offsets say so (StreamError otherwise)."""
        ...

    def commit_async(self, positions: Mapping[TopicPartition, int], done: CommitDone) -> None:
        """Send a commit and return at once; ``done(positions, error)`` follows from a later
        ``poll`` (error None: the group's offsets say so). No wait on this thread."""
        ...

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
    """An idempotent producer; ``send_many`` may be called from many threads.

    ``needs_polling``: delivery callbacks run only inside ``poll``/``flush``
    (librdkafka), so the sink keeps a thread polling; False when the client runs
    them on its own I/O thread (kafka-python).
    """

    needs_polling: bool

    def send_many(self, out: Outgoing) -> None:
        """Queue each message of ``out`` (StreamError if one cannot even be queued)."""
        ...

    def poll(self, timeout_s: float) -> None:
        """Serve delivery callbacks for up to ``timeout_s`` (no-op where not needed)."""
        ...

    def flush(self, timeout_s: float) -> None: ...

    def init_transactions(self) -> None: ...

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(
        self, positions: Mapping[TopicPartition, int], group_metadata: object
    ) -> None: ...

    def commit_transaction(self) -> None: ...

    def abort_transaction(self) -> None: ...

    def close(self, timeout_s: float) -> None: ...


@dataclass(frozen=True)
class ReaderOptions:
    """A reader of whole partitions outside any group (state restore): read_committed,
    so aborted transactions never show, and a partition ends at its last stable offset."""

    client_id_suffix: str = "reader"
    max_poll_records: int = 10_000
    fetch_max_wait_ms: int = 100
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    request_timeout_ms: int = 30_000


class ReaderClient(Protocol):
    """Reads one assigned partition from a given offset; no group, no commits."""

    def offsets(self, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
        """``(first, end)``: the first offset kept and the end a read_committed reader
        reaches (the last stable offset: an open transaction ends it early)."""
        ...

    def assign(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` on (replaces any earlier assignment)."""
        ...

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]: ...

    def position(self, tp: TopicPartition) -> int:
        """The next offset the reader will return (past transaction markers)."""
        ...

    def close(self) -> None: ...


class TopicAdmin(Protocol):
    """Topic administration on one cluster; ``close`` after use. Failures raise
    StreamError naming the cluster."""

    def ping(self) -> None:
        """One metadata request: StreamError when no broker answers."""
        ...

    def partitions(self, topics: Sequence[str]) -> dict[str, int]:
        """Partition count of each of ``topics`` the cluster knows (and lets this client
        see); never creates a topic."""
        ...

    def create(
        self, topics: Mapping[str, int], config: Mapping[str, str], replication_factor: int
    ) -> None:
        """Create each topic (``replication_factor`` -1: the broker's default); existing
        topics count as created. Returns once every partition has a leader."""
        ...

    def max_message_bytes(self, topics: Sequence[str]) -> dict[str, int]:
        """Each known topic's ``max.message.bytes``."""
        ...

    def delete(self, topics: Sequence[str]) -> None:
        """Delete the topics; ones already gone count as deleted."""
        ...

    def close(self) -> None: ...


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

    def reader(self, settings: KafkaSettings, options: ReaderOptions) -> ReaderClient: ...

    def admin(self, settings: KafkaSettings, timeout_s: float) -> TopicAdmin: ...


@dataclass(frozen=True)
class AdapterFactory:
    """A ``ClientFactory`` made of one opening function per client role (each client
    library's package has a module per role)."""

    consumer: Callable[
        [KafkaSettings, Sequence[str], ConsumerOptions, RevokeHook, AssignHook], ConsumerClient
    ]
    producer: Callable[[KafkaSettings, ProducerOptions], ProducerClient]
    reader: Callable[[KafkaSettings, ReaderOptions], ReaderClient]
    admin: Callable[[KafkaSettings, float], TopicAdmin]
