"""KafkaSource + KafkaSink on the real broker: commits, backpressure, transactions, DLQ."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kafkakit import (
    committed,
    fast_options,
    is_pending,
    produce,
    read_all,
    records,
    resolve,
    resolve_many,
    resolve_on_delivery,
    unused_port,
)

from streamfer.errors import CodecError, StreamError
from streamfer.streams.client import ClientFactory, Outgoing, ProducerOptions
from streamfer.streams.dlq import DeadLetterWriter
from streamfer.streams.records import Record
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource, SourceOptions

pytestmark = pytest.mark.integration


def poll_until(source: KafkaSource, n: int, timeout_s: float = 30) -> list[Record]:
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        assert time.monotonic() < deadline, f"only {len(out)} of {n} records within {timeout_s} s"
        out.extend(records(source.poll(0.2)))
    return out


def commit_settled(source: KafkaSource, timeout_s: float = 10) -> dict[tuple[str, int], int]:
    """``commit()``, polling while a rebalance (a fresh group settling) refuses it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return source.commit()
        except StreamError:
            assert time.monotonic() < deadline, "commit still refused"
            assert source.poll(0.1) == []  # everything was consumed already


def test_a_discarding_close_commits_nothing(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    factory: ClientFactory,
) -> None:
    """A deleted input topic's offsets must not be committed: they would apply to a topic
    created again under the same name (skipping its first records)."""
    topic, group = unique_topic(1), unique_group()
    produce(kafka_bootstrap, topic, 10)
    options = SourceOptions(commit_interval_s=3600)
    src = KafkaSource(KafkaSettings(kafka_bootstrap), [topic], fast_options(group), options,
                      factory).start()  # fmt: skip
    assert resolve_many(src, poll_until(src, 10)) == 10
    src.close(discard=True)
    assert not src.started and src.tracker.in_flight() == 0
    assert committed(kafka_bootstrap, group, topic) == {0: None}


def test_out_of_order_resolution_commits_only_the_resolved_prefix(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    factory: ClientFactory,
) -> None:
    topic, group = unique_topic(1), unique_group()
    produce(kafka_bootstrap, topic, 20)
    options = SourceOptions(commit_interval_s=3600)
    settings = KafkaSettings(kafka_bootstrap)
    with KafkaSource(settings, [topic], fast_options(group), options, factory) as src:
        polled = poll_until(src, 20)
        assert [r.offset for r in polled] == list(range(20))
        # one span per poll: resolve the records of the first poll last
        first = [r for r in polled if r.span is polled[0].span]
        rest = [r for r in polled if r.span is not polled[0].span]
        for r in rest + first[1:]:
            assert resolve(src, r)
        assert commit_settled(src) == {}
        assert resolve(src, first[0])
        assert commit_settled(src) == {(topic, 0): 20}
        assert not resolve(src, first[0])
    assert committed(kafka_bootstrap, group, topic) == {0: 20}


def test_the_periodic_commit_lands_from_later_polls_without_a_blocking_commit(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    factory: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The at-least-once periodic commit is sent asynchronously: the group's offsets reach
    what is resolved while the consumer only polls, and no blocking commit is made."""
    topic, group = unique_topic(1), unique_group()
    produce(kafka_bootstrap, topic, 12)
    options = SourceOptions(commit_interval_s=0.05)
    with KafkaSource(KafkaSettings(kafka_bootstrap), [topic], fast_options(group), options,
                     factory) as src:  # fmt: skip
        resolve_many(src, poll_until(src, 12))

        def no_blocking_commit(*_: object) -> None:
            raise AssertionError("the periodic commit waited for the coordinator")

        monkeypatch.setattr(src.client, "commit", no_blocking_commit)
        deadline = time.monotonic() + 30
        while src.tracker.positions():  # confirmed: nothing left to commit
            assert time.monotonic() < deadline, f"not confirmed: {src.tracker.positions()}"
            assert src.poll(0.05) == []
        assert committed(kafka_bootstrap, group, topic) == {0: 12}
        monkeypatch.undo()


def test_unresolved_records_are_redelivered_to_the_next_member(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    factory: ClientFactory,
) -> None:
    topic, group = unique_topic(1), unique_group()
    produce(kafka_bootstrap, topic, 10)
    settings = KafkaSettings(kafka_bootstrap)
    options = SourceOptions(revoke_timeout_s=0.2)
    consumer = fast_options(group, max_poll_records=4)  # polls of at most 4 records
    with KafkaSource(settings, [topic], consumer, options, factory) as src:
        polled = poll_until(src, 10)
        # the poll holding offset 4 is left partly unresolved
        held = {r.offset for r in polled if r.span is polled[4].span}
        for r in polled:
            if r.offset != 4:
                resolve(src, r)
    # close committed up to the poll holding 4 and abandoned that poll's records
    start = min(held)
    assert committed(kafka_bootstrap, group, topic) == {0: start}
    with KafkaSource(settings, [topic], fast_options(group), factory=factory) as src:
        again = poll_until(src, 10 - start)
        assert [r.offset for r in again] == list(range(start, 10))
        resolve_many(src, again)


def test_backpressure_pauses_a_partition_until_records_resolve(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    factory: ClientFactory,
) -> None:
    topic, group = unique_topic(1), unique_group()
    produce(kafka_bootstrap, topic, 100)
    options = SourceOptions(max_in_flight_per_partition=30)
    consumer = fast_options(group, max_poll_records=30)
    settings = KafkaSettings(kafka_bootstrap)
    with KafkaSource(settings, [topic], consumer, options, factory) as src:
        first = poll_until(src, 30)
        assert src.client.paused() == {(topic, 0)}
        assert src.poll(0.3) == []
        assert src.tracker.in_flight() == 30
        assert src.lag() == {(topic, 0): 70}  # paused: the lag stays where it is
        resolve_many(src, first[:15])  # down to half the limit: fetching resumes
        rest: list[Record] = []
        deadline = time.monotonic() + 30
        while len(rest) < 70:
            assert time.monotonic() < deadline, f"only {len(rest)} of 70 after resuming"
            batch = records(src.poll(0.2))
            assert src.tracker.in_flight() <= 30 + 30  # never more than the limit plus one poll
            resolve_many(src, batch)
            rest.extend(batch)
        assert [r.offset for r in first + rest] == list(range(100))
        resolve_many(src, first[15:])


def test_transactions_commit_decisions_and_offsets_atomically(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    factory: ClientFactory,
) -> None:
    src_topic, out_topic, group = unique_topic(2), unique_topic(1), unique_group()
    produce(kafka_bootstrap, src_topic, 40)
    settings = KafkaSettings(kafka_bootstrap)
    sink = KafkaSink(settings, ProducerOptions(transactional_id=f"txn-{group}"), factory)
    consumer = fast_options(group, isolation_level="read_committed")
    options = SourceOptions(commit_interval_s=3600)
    with sink, KafkaSource(settings, [src_topic], consumer, options, factory) as src:
        src.use_transactions(sink)

        def transform(records: list[Record]) -> None:
            for r in records:
                sink.send(out_topic, b"decision " + r.value, r.key, (), resolve_on_delivery(src, r))
            sink.flush()

        first = poll_until(src, 40)
        transform(first[:30])
        assert is_pending(src, first[35]) and not is_pending(src, first[0])
        src.abort_transaction()
        assert not is_pending(src, first[35])  # abandoned: it will be polled again
        assert read_all(kafka_bootstrap, out_topic) == []
        assert len(read_all(kafka_bootstrap, out_topic, "read_uncommitted")) == 30
        assert set(committed(kafka_bootstrap, group, src_topic).values()) == {None}

        again = poll_until(src, 40)  # rewound: the same records once more
        assert sorted(r.value for r in again) == sorted(b"v%d" % i for i in range(40))
        transform(again)
        positions = src.commit()
        assert sum(positions.values()) == 40
    visible = read_all(kafka_bootstrap, out_topic)
    assert sorted(m.value for m in visible) == sorted(b"decision v%d" % i for i in range(40))
    assert sum(v or 0 for v in committed(kafka_bootstrap, group, src_topic).values()) == 40


def test_dead_letters_carry_original_bytes_and_error_headers(
    kafka_bootstrap: str, unique_topic: Callable[..., str], factory: ClientFactory
) -> None:
    topic = unique_topic(1)
    from streamfer.streams.admin import create_topics

    create_topics(kafka_bootstrap, {topic + ".dlq": 1})
    record = Record(topic, 0, 41, b"card-1", b"{broken", (("content-type", b"x/y"),), 0, 0)
    acked: list[object | None] = []
    with KafkaSink(KafkaSettings(kafka_bootstrap), factory=factory) as sink:
        writer = DeadLetterWriter(sink)
        error = CodecError(f"{record.coords} | invalid JSON. Note: expected JSON", "bad_json")
        writer.write(record, error, lambda err, _msg: acked.append(err))
        sink.flush()
    assert acked == [None]
    (dead,) = read_all(kafka_bootstrap, topic + ".dlq")
    assert (dead.key, dead.value) == (b"card-1", b"{broken")
    assert dict(dead.headers) == {
        "content-type": b"x/y",
        "error-class": b"CodecError",
        "error-reason": b"bad_json",
        "error-message": str(error).encode(),
        "source-topic": topic.encode(),
        "source-partition": b"0",
        "source-offset": b"41",
    }


def test_sink_fails_fast_and_clearly_when_the_broker_is_down(factory: ClientFactory) -> None:
    address = f"127.0.0.1:{unused_port()}"
    sink = KafkaSink(KafkaSettings(address), ProducerOptions(max_block_ms=1500), factory)
    started = time.monotonic()
    with pytest.raises(StreamError, match=address):
        sink.start()
    assert time.monotonic() - started < 10


def test_send_many_carries_headers_per_message_or_none_at_all(
    kafka_bootstrap: str, unique_topic: Callable[..., str], factory: ClientFactory
) -> None:
    topic = unique_topic(1)
    acks: list[object] = []
    with KafkaSink(KafkaSettings(kafka_bootstrap), factory=factory) as sink:
        acks_to = lambda err, _msg: acks.append(err)  # noqa: E731
        plain = Outgoing(topic=topic, values=[b"a", b"b"], keys=[b"k", None], on_delivery=acks_to)
        assert sink.send_many(plain)
        headers = [[("severity", b"high"), ("n", b"1")], []]
        keyed = [b"k2", b"k3"]
        with_headers = Outgoing(
            topic=topic, values=[b"c", b"d"], keys=keyed, on_delivery=acks_to, headers=headers
        )
        assert sink.send_many(with_headers)
        sink.flush(30)
    assert acks == [None] * 4
    got = [(m.value, m.key, list(m.headers or [])) for m in read_all(kafka_bootstrap, topic)]
    assert got == [
        (b"a", b"k", []),
        (b"b", None, []),
        (b"c", b"k2", [("severity", b"high"), ("n", b"1")]),
        (b"d", b"k3", []),
    ]
