"""Kafka plumbing shared by the benchmarks: topics, bulk produce, read-back, drain rate.

Output topics are created with ``message.timestamp.type=LogAppendTime`` so the
broker stamps every output record when it lands. Throughput is then measured
the same way for every system under test, from outside it: records on the
output topic divided by the span of their append times. Start-up (group join,
engine load) falls outside that span for all of them alike. Records appended
in one produce request share one append time, so the first request's records
count but their processing time does not: a bias of one producer batch (a few
hundred records, under 1 % at the default sizes) in every system's favour.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from streamfer.errors import StreamError
from streamfer.streams.admin import create_topics

log = logging.getLogger(__name__)

LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class OutRecord:
    """What the benchmarks need of a record read back."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    read_ns: int  # time.monotonic_ns() when this process got it


# More partitions than this on the broker and its GC pauses set the latency tail (a broker
# left with 10,114 partitions by test runs paused every second; see bench/RESULTS.md).
BUSY_BROKER_PARTITIONS = 1_000


def broker_topics(bootstrap: str) -> dict[str, int]:
    """Every topic the cluster holds, internal ones included, with its partition count (one
    metadata call)."""
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
    return {name: len(t.partitions) for name, t in meta.topics.items()}


def broker_partitions(bootstrap: str) -> int:
    """How many partitions the cluster holds, internal topics included."""
    return sum(broker_topics(bootstrap).values())


def run_id() -> str:
    """A short id that keeps one run's topics and groups apart from every other run."""
    return f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"


def wait_visible(bootstrap: str, names: list[str], timeout_s: float = 30.0) -> None:
    """Until a fresh client's metadata lists every topic in ``names`` with its partitions.

    A consumer that subscribes before the broker's metadata shows a new topic
    gets no partitions until its next metadata refresh (minutes), so every
    benchmark waits for this before it starts the system under test.
    """
    consumer = _probe(bootstrap)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            known = consumer.topics()  # a metadata request for all topics each call
            if all(n in known and consumer.partitions_for_topic(n) for n in names):
                return
            if time.monotonic() > deadline:
                raise StreamError(f"{names} | topics not in the metadata after {timeout_s:g} s")
            time.sleep(0.1)  # poll interval
    finally:
        consumer.close()


class TopicSet:
    """Topics one benchmark creates and deletes again (best effort) when done."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.names: list[str] = []

    def input(self, name: str, partitions: int = 1) -> str:
        create_topics(self.bootstrap, {name: partitions})
        self.names.append(name)
        wait_visible(self.bootstrap, [name])
        return name

    def output(self, name: str, partitions: int = 1) -> str:
        create_topics(self.bootstrap, {name: partitions}, config=LOG_APPEND_TIME)
        self.names.append(name)
        wait_visible(self.bootstrap, [name])
        return name

    def track(self, name: str) -> None:
        """Delete ``name`` too at the end (a topic someone else created, e.g. a DLQ)."""
        self.names.append(name)

    def delete_all(self) -> None:
        if not self.names:
            return
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="streamfer-bench")
        except (KafkaError, OSError) as exc:
            log.warning("bench | cannot delete topics %s: %s", self.names, exc)
            return
        try:
            existing = set(admin.list_topics())
            doomed = [n for n in dict.fromkeys(self.names) if n in existing]
            if doomed:
                admin.delete_topics(doomed, timeout_ms=30_000)
        except KafkaError as exc:
            log.warning("bench | deleting topics %s failed: %s", self.names, exc)
        finally:
            admin.close()
        self.names.clear()


@contextmanager
def topic_set(bootstrap: str, keep: bool = False) -> Iterator[TopicSet]:
    """Topics that live for one benchmark run (kept when ``keep`` for inspection)."""
    topics = TopicSet(bootstrap)
    try:
        yield topics
    finally:
        if not keep:
            topics.delete_all()


def bulk_producer(bootstrap: str, **overrides: object) -> KafkaProducer:
    """A producer tuned for loading a topic fast (the load is not what is measured)."""
    kwargs: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "client_id": "streamfer-bench-loader",
        "linger_ms": 10,
        "batch_size": 512 * 1024,
        "max_request_size": 16 * 1024 * 1024,
    }
    kwargs.update(overrides)
    return KafkaProducer(**kwargs)


def produce_all(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes, Headers]]
) -> int:
    """Write every (key, value, headers) to ``topic`` and wait for all acks; returns the count."""
    producer = bulk_producer(bootstrap)
    n = 0
    try:
        for key, value, headers in records:
            producer.send(topic, key=key, value=value, headers=headers or None)
            n += 1
        producer.flush(timeout=120)
    except KafkaError as exc:
        raise StreamError(f"{topic} | loading benchmark records failed: {exc!r}") from exc
    finally:
        producer.close(timeout=30)
    return n


def reader(bootstrap: str, topic: str, partitions: int = 1, **overrides: object) -> KafkaConsumer:
    """A group-less consumer assigned to every partition of ``topic`` from the beginning."""
    kwargs: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "client_id": "streamfer-bench-reader",
        "enable_auto_commit": False,
        "fetch_max_wait_ms": 5,
        "max_poll_records": 5000,
        "max_partition_fetch_bytes": 16 * 1024 * 1024,
        "fetch_max_bytes": 64 * 1024 * 1024,
    }
    kwargs.update(overrides)
    consumer = KafkaConsumer(**kwargs)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer


def read_n(
    bootstrap: str, topic: str, expected: int, timeout_s: float, partitions: int = 1
) -> list[OutRecord]:
    """Read ``topic`` from the start until ``expected`` records or ``timeout_s`` passes."""
    consumer = reader(bootstrap, topic, partitions)
    out: list[OutRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                now = time.monotonic_ns()
                out += [
                    OutRecord(r.partition, r.offset, r.timestamp, r.key, r.value, now) for r in recs
                ]
    finally:
        consumer.close()
    return out


def _probe(bootstrap: str) -> KafkaConsumer:  # group-less: no commits, no auto-commit
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="streamfer-bench-probe",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_wait_ms=5,
    )


def end_offsets_total(bootstrap: str, topic: str, partitions: int = 1) -> int:
    """How many records ``topic`` holds now (sum of end offsets; fresh topics start at 0)."""
    consumer = _probe(bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return int(sum(ends.values()))
    finally:
        consumer.close()


class OffsetProbe:
    """Counts the records of a topic (sum of end offsets) with one long-lived client."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 1) -> None:
        self.bootstrap = bootstrap
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer: KafkaConsumer | None = None

    def count(self) -> int:
        if self._consumer is None:
            self._consumer = _probe(self.bootstrap)
        return int(sum(self._consumer.end_offsets(self.tps).values()))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> OffsetProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GroupLag:
    """Records of ``topic`` the consumer ``group`` has not committed yet (admin API, so the
    group itself is never disturbed). The pipeline commits a record once it is decided,
    dropped or dead-lettered, so zero lag means nothing of it is left in flight."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self._admin: KafkaAdminClient | None = None
        self._probe = OffsetProbe(bootstrap, topic)

    def lag(self) -> int:
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap,
                                           client_id="streamfer-bench-lag")  # fmt: skip
        offsets = self._admin.list_group_offsets(self.group).get(self.group, {})
        done = sum(om.offset for tp, om in offsets.items() if tp.topic == self.topic)
        return max(0, self._probe.count() - done)

    def close(self) -> None:
        self._probe.close()
        if self._admin is not None:
            self._admin.close()
            self._admin = None


def wait_for_count(
    bootstrap: str, topic: str, expected: int, timeout_s: float, partitions: int = 1
) -> int:
    """Poll the end offsets of ``topic`` until they reach ``expected``; returns the last count."""
    deadline = time.monotonic() + timeout_s
    with OffsetProbe(bootstrap, topic, partitions) as probe:
        count = probe.count()
        while count < expected and time.monotonic() < deadline:
            time.sleep(0.1)  # poll interval
            count = probe.count()
    return count


def _timestamp_at(consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> int:
    consumer.seek(tp, offset)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=200, max_records=1).values():
            return int(recs[0].timestamp)
    raise StreamError(f"{tp.topic}[{tp.partition}]@{offset} | record not readable within 10 s")


@dataclass(frozen=True)
class Span:
    """Count and first/last append time of a topic (LogAppendTime topics)."""

    count: int
    first_ms: int
    last_ms: int

    @property
    def seconds(self) -> float:
        return (self.last_ms - self.first_ms) / 1000.0

    @property
    def rate(self) -> float:
        """Records per second over the append-time span."""
        if self.count < 2 or self.seconds <= 0:
            return float("nan")  # all in one append (a tiny run): no rate to tell
        return (self.count - 1) / self.seconds


def topic_span(bootstrap: str, topic: str, partitions: int = 1) -> Span:
    """Records in ``topic`` and the append times of its first and last record."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = _probe(bootstrap)
    try:
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        firsts, lasts = [], []
        for tp in tps:
            if ends[tp] > starts[tp]:
                firsts.append(_timestamp_at(consumer, tp, starts[tp]))
                lasts.append(_timestamp_at(consumer, tp, ends[tp] - 1))
        count = int(sum(ends[tp] - starts[tp] for tp in tps))
    finally:
        consumer.close()
    if not firsts:
        return Span(0, 0, 0)
    return Span(count, min(firsts), max(lasts))


def append_span_rate(records: list[OutRecord]) -> tuple[float, float]:
    """(records/s, span in s) from the broker append times of ``records``."""
    if len(records) < 2:
        return float("nan"), 0.0
    stamps = [r.timestamp_ms for r in records]
    span_s = (max(stamps) - min(stamps)) / 1000.0
    if span_s <= 0:
        return float("nan"), span_s
    return (len(records) - 1) / span_s, span_s
