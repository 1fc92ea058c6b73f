"""Exactly-once when partitions are *lost* (the member was thrown out), not revoked.

Member A polls everything and puts part of its output into an open transaction,
then stops polling for longer than ``max.poll.interval.ms``: the group throws it
out, and member B takes the partitions over, decides every record and commits.
When A polls again it learns its partitions were lost: its open transaction must
be aborted and its in-flight records abandoned, so that a read_committed reader
sees every decision exactly once. (Committing that transaction after rejoining
would publish A's copies beside B's.)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
from kafkakit import (
    committed,
    fast_options,
    is_pending,
    produce,
    read_all,
    records,
    resolve_on_delivery,
)

from streamfer.streams.client import ClientFactory, ProducerOptions
from streamfer.streams.records import Record
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource, SourceOptions

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N = 40
MAX_POLL_MS = 6000  # librdkafka: at least the session timeout (6 s in fast_options)


def member(settings: KafkaSettings, topic: str, group: str, name: str,
           factory: ClientFactory) -> tuple[KafkaSource, KafkaSink]:  # fmt: skip
    sink = KafkaSink(settings, ProducerOptions(transactional_id=f"{group}-{name}"), factory)
    source = KafkaSource(
        settings,
        [topic],
        fast_options(group, isolation_level="read_committed", max_poll_interval_ms=MAX_POLL_MS),
        SourceOptions(commit_interval_s=3600, revoke_timeout_s=5),
        factory,
    )
    source.use_transactions(sink)
    return source, sink


def decide(source: KafkaSource, sink: KafkaSink, out: str, record: Record) -> bool:
    """As the outlet does: send only while the record is pending, resolve on the ack."""
    value = b"decision " + (record.value or b"")
    pending = lambda: is_pending(source, record)  # noqa: E731
    acked = resolve_on_delivery(source, record)
    return sink.send(out, value, record.key, (), acked, only_if=pending)


def poll_until(source: KafkaSource, n: int, timeout_s: float = 30) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"{len(got)} of {n} records"
        got += records(source.poll(0.2))
    return got


def test_a_lost_partition_aborts_the_open_transaction_and_nothing_is_visible_twice(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    factory: ClientFactory,
) -> None:
    topic, out, group = unique_topic(2), unique_topic(1), unique_group()
    produce(kafka_bootstrap, topic, N)
    settings = KafkaSettings(kafka_bootstrap)
    a_source, a_sink = member(settings, topic, group, "a", factory)
    with a_sink, a_source:
        held = poll_until(a_source, N)
        for record in held[: N // 2]:  # half decided into A's open transaction ...
            assert decide(a_source, a_sink, out, record)
        a_sink.flush()
        in_flight = a_source.tracker.in_flight()
        assert a_sink.in_transaction and in_flight == N // 2  # ... half in flight
        # A stalls past max.poll.interval.ms: the group throws it out, B takes over
        b_source, b_sink = member(settings, topic, group, "b", factory)
        with b_sink, b_source:
            b_records = poll_until(b_source, N, timeout_s=MAX_POLL_MS / 1000 + 40)
            for record in b_records:
                assert decide(b_source, b_sink, out, record)
            b_sink.flush()
            deadline = time.monotonic() + 30
            while sum(b_source.commit().values()) < N:
                assert time.monotonic() < deadline, "B never committed"
                b_source.poll(0.1)
            assert sum(v or 0 for v in committed(kafka_bootstrap, group, topic).values()) == N
            # A polls again: it learns its partitions were lost and rejoins the group
            deadline = time.monotonic() + 40
            while a_source.tracker.in_flight() or a_sink.in_transaction or not a_source.assigned:
                assert time.monotonic() < deadline, (
                    f"A kept {a_source.tracker.in_flight()} in flight, transaction open: "
                    f"{a_sink.in_transaction}, assigned {sorted(a_source.assigned)}"
                )
                for record in records(a_source.poll(0.2)):  # nothing new: B committed all
                    decide(a_source, a_sink, out, record)
                b_source.poll(0.05)  # B takes part in the rebalance that gives A a partition
            # its abandoned copies resolve nothing and open no transaction
            for record in held:
                assert not is_pending(a_source, record)
                assert not decide(a_source, a_sink, out, record)
            a_source.commit()
    visible = Counter(m.value for m in read_all(kafka_bootstrap, out))
    twice = [v for v, k in visible.items() if k > 1]
    assert not twice, f"visible twice: {twice[:5]}"
    assert set(visible) == {b"decision v%d" % i for i in range(N)}
