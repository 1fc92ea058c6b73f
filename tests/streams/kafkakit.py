"""Helpers for integration tests on the real local broker (plain module: tests/ is no package)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streamfer.streams.client import ConsumerOptions, DeliveryCallback
from streamfer.streams.records import Record, RecordBatch
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource


def produce(bootstrap: str, topic: str, n: int, keys: int = 16) -> None:
    """``n`` records ``b"v<i>"`` keyed ``k<i % keys>``, all acknowledged on return."""
    errors: list[Exception] = []
    with KafkaSink(KafkaSettings(bootstrap)) as sink:
        for i in range(n):
            sink.send(
                topic,
                b"v%d" % i,
                b"k%d" % (i % keys),
                on_delivery=lambda err, _msg: err and errors.append(err),
            )
        sink.flush(30)
    assert not errors


def read_all(
    bootstrap: str, topic: str, isolation: str = "read_committed", timeout_s: float = 20
) -> list[Any]:
    """Every record of ``topic`` visible at ``isolation``, read up to the end offsets."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: not read to the end in {timeout_s} s"
            for msgs in consumer.poll(timeout_ms=200).values():
                out.extend(msgs)
        return out
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = sorted(consumer.partitions_for_topic(topic))
        return {p: consumer.committed(TopicPartition(topic, p)) for p in parts}
    finally:
        consumer.close()


def records(batches: list[RecordBatch]) -> list[Record]:
    """The records of a poll, as one list."""
    return [r for b in batches for r in b]


def fast_options(group: str, **kw: Any) -> ConsumerOptions:
    """Short session/heartbeat so rebalances in tests take a second, not many."""
    base: dict[str, Any] = {
        "group_id": group,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "max_poll_records": 200,
    }
    return ConsumerOptions(**{**base, **kw})


def unused_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resolve(source: KafkaSource, record: Record) -> bool:
    """Mark one record's outcome final through the source's tracker, as the pipeline's
    outlet does; False if it was not in flight."""
    return record.span is not None and source.tracker.resolve(record.span, record.row)


def resolve_many(source: KafkaSource, records: Iterable[Record]) -> int:
    return sum(resolve(source, r) for r in records)


def is_pending(source: KafkaSource, record: Record) -> bool:
    """False once a record was resolved, or abandoned by a revocation or an abort."""
    return record.span is not None and source.tracker.is_pending(record.span, record.row)


def resolve_on_delivery(source: KafkaSource, record: Record) -> DeliveryCallback:
    """A sink ``on_delivery`` that resolves ``record`` once its output is acknowledged
    (a failed delivery leaves it unresolved)."""

    def on_delivery(error: object | None, _message: object) -> None:
        if error is None:
            resolve(source, record)

    return on_delivery
