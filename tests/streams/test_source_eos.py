"""KafkaSource rules the broker cannot force: abandoned work after an abort, close, pause."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping

from kafkakit import is_pending, resolve

from streamfer.streams.client import (
    ConsumerOptions,
    DeliveryCallback,
    Headers,
    ProducerOptions,
    RevokeHook,
    TopicPartition,
)
from streamfer.streams.records import Record, RecordBatch
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource, SourceOptions

TP = ("in", 0)
SETTINGS = KafkaSettings("127.0.0.1:1")


class FakeConsumer:
    """One partition; each poll returns the next two offsets; rewind goes to the commit."""

    def __init__(self, on_revoke: RevokeHook, on_assign: Callable[[list[TopicPartition]], None]
                 ) -> None:  # fmt: skip
        self.pos = 0
        self.on_revoke = on_revoke
        self.on_assign = on_assign
        self.assigned: set[TopicPartition] = set()
        self.paused_: set[TopicPartition] = set()
        self.rewinds = 0
        self.assign(TP)

    def assign(self, tp: TopicPartition) -> None:
        """A rebalance hands over ``tp`` (the hook runs inside poll, as with a real client)."""
        self.assigned.add(tp)
        self.on_assign([tp])

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]:
        recs = [Record("in", 0, o, None, b"x", (), 0, 0) for o in (self.pos, self.pos + 1)]
        self.pos += 2
        return [RecordBatch.of(recs)]

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def rewind(self, tps: Collection[TopicPartition], timeout_s: float) -> None:
        self.pos = 0  # nothing committed yet
        self.rewinds += 1

    def group_metadata(self) -> object:
        return "group"

    def pause(self, tps: Collection[TopicPartition]) -> None:
        assert set(tps) <= self.assigned, f"pausing {tps} not assigned"
        self.paused_ |= set(tps)

    def resume(self, tps: Collection[TopicPartition]) -> None:
        assert set(tps) <= self.paused_, f"resuming {tps} not paused"
        self.paused_ -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_)

    def close(self) -> None:
        self.on_revoke([TP], False)


class FakeProducer:
    """Keeps what each transaction held; flush acknowledges everything sent."""

    needs_polling = False

    def __init__(self) -> None:
        self.open: list[bytes] = []
        self.committed: list[list[bytes]] = []
        self.aborted: list[list[bytes]] = []
        self.offsets: list[Mapping[TopicPartition, int]] = []
        self.unacked: list[DeliveryCallback] = []

    def init_transactions(self) -> None:
        pass

    def begin_transaction(self) -> None:
        self.open = []

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        on_delivery: DeliveryCallback | None,
        partition: int | None = None,
    ) -> None:
        self.open.append(value)
        if on_delivery is not None:
            self.unacked.append(on_delivery)

    def poll(self, timeout_s: float) -> None:
        raise AssertionError("a client that needs no polling is never polled")

    def flush(self, timeout_s: float) -> None:
        for cb in self.unacked:
            cb(None, "message")
        self.unacked = []

    def send_offsets_to_transaction(
        self, positions: Mapping[TopicPartition, int], group_metadata: object
    ) -> None:
        self.offsets.append(dict(positions))

    def commit_transaction(self) -> None:
        self.committed.append(self.open)

    def abort_transaction(self) -> None:
        self.aborted.append(self.open)
        self.unacked = []

    def close(self, timeout_s: float) -> None:
        pass


class FakeFactory:
    def consumer(
        self,
        settings: KafkaSettings,
        topics: object,
        options: ConsumerOptions,
        on_revoke: RevokeHook,
        on_assign: object,
    ) -> FakeConsumer:
        self.consumer_client = FakeConsumer(on_revoke, on_assign)
        return self.consumer_client

    def producer(self, settings: KafkaSettings, options: ProducerOptions) -> FakeProducer:
        self.producer_client = FakeProducer()
        return self.producer_client


def start(
    commit_timeout_s: float = 0.01, factory: FakeFactory | None = None
) -> tuple[KafkaSource, KafkaSink, FakeProducer]:
    factory = factory or FakeFactory()
    sink = KafkaSink(SETTINGS, ProducerOptions(transactional_id="t"), factory=factory).start()
    options = SourceOptions(
        commit_interval_s=1e9, commit_timeout_s=commit_timeout_s, revoke_timeout_s=0.01
    )
    src = KafkaSource(SETTINGS, ["in"], ConsumerOptions("g"), options, factory=factory).start()
    src.use_transactions(sink)
    return src, sink, factory.producer_client


def records(batches: list[RecordBatch]) -> list[Record]:
    return [r for b in batches for r in b]


def publish(src: KafkaSource, sink: KafkaSink, r: Record) -> bool:
    """What StreamRuntime.publish does: send only while the record is pending."""

    def acked(_err: object | None, _message: object) -> None:
        resolve(src, r)

    return sink.send(
        "out",
        f"decision@{r.offset}".encode(),
        on_delivery=acked,
        only_if=lambda: is_pending(src, r),
    )


def test_output_of_a_record_abandoned_by_an_abort_never_joins_the_next_transaction() -> None:
    src, sink, producer = start()
    first = records(src.poll())  # offsets 0, 1 go to the engine
    src.abort_transaction()  # e.g. a barrier timeout: abort and rewind
    again = records(src.poll())  # 0, 1 polled again: a new span
    assert [r.offset for r in again] == [0, 1]
    assert not is_pending(src, first[0]) and is_pending(src, again[0])
    assert not resolve(src, first[0])  # the stale copy does not resolve the new one
    assert is_pending(src, again[0])
    assert not publish(src, sink, first[0])  # the engine finishes the stale copy: not sent
    assert publish(src, sink, again[0]) and publish(src, sink, again[1])
    sink.flush()
    assert src.commit() == {TP: 2}
    assert producer.committed == [[b"decision@0", b"decision@1"]]


def test_an_open_transaction_without_resolved_records_is_aborted_not_committed() -> None:
    src, sink, producer = start()
    src.poll()
    src.abort_transaction()
    # output that got past the check just before the abort opened a new transaction
    sink.send("out", b"orphan", on_delivery=lambda _err, _message: None)
    sink.flush()
    src.close(timeout_s=0)  # the revocation hook on close must not commit it
    assert producer.committed == []
    assert producer.aborted[-1] == [b"orphan"]
    assert not sink.in_transaction


def test_a_publish_racing_an_abort_waits_for_it_and_then_sends_nothing() -> None:
    src, sink, producer = start()
    polled = records(src.poll())
    assert publish(src, sink, polled[0])
    in_abort, release = threading.Event(), threading.Event()
    real_abort = producer.abort_transaction

    def slow_abort() -> None:
        in_abort.set()
        release.wait(10)
        real_abort()

    producer.abort_transaction = slow_abort  # type: ignore[method-assign]
    aborter = threading.Thread(target=src.abort_transaction)
    aborter.start()
    assert in_abort.wait(10)
    sent: list[bool] = []
    publisher = threading.Thread(target=lambda: sent.append(publish(src, sink, polled[1])))
    publisher.start()
    publisher.join(0.2)
    assert publisher.is_alive()  # blocked on the transaction lock the abort holds
    release.set()
    aborter.join(10)
    publisher.join(10)
    assert sent == [False]  # it saw the record abandoned: nothing opened a new transaction
    assert not sink.in_transaction and producer.aborted == [[b"decision@0"]]


def test_close_without_waiting_aborts_at_once_instead_of_a_barrier_and_a_rewind() -> None:
    factory = FakeFactory()
    src, sink, producer = start(commit_timeout_s=30.0, factory=factory)
    polled = records(src.poll())
    assert publish(src, sink, polled[0])  # output sent, record still unresolved (no ack)
    done = threading.Event()

    def close() -> None:
        src.close(timeout_s=0)
        done.set()

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    assert done.wait(10), "close(timeout_s=0) waited for the commit barrier"
    assert producer.committed == [] and producer.aborted == [[b"decision@0"]]
    assert factory.consumer_client.rewinds == 0


def test_partitions_assigned_while_paused_are_paused_too() -> None:
    factory = FakeFactory()
    src, _sink, _producer = start(factory=factory)
    consumer = factory.consumer_client
    src.pause()
    assert consumer.paused_ == {TP}
    consumer.assign(("in", 1))  # a rebalance hands over another partition
    src.poll()
    assert consumer.paused_ == {TP, ("in", 1)}
    src.resume()
    assert consumer.paused_ == set()


def resolved_output(src: KafkaSource, sink: KafkaSink) -> list[Record]:
    """Poll offsets 0 and 1, send their decisions into the open transaction, ack them."""
    polled = records(src.poll())
    assert all(publish(src, sink, r) for r in polled)
    sink.flush()
    assert not is_pending(src, polled[0]) and not is_pending(src, polled[1])
    return polled


def test_a_lost_partition_aborts_the_open_transaction_and_commits_nothing() -> None:
    """Lost, not revoked: another member owns the partition already, so the output in the
    open transaction must never commit, even though its records were all resolved."""
    factory = FakeFactory()
    src, sink, producer = start(factory=factory)
    consumer = factory.consumer_client
    resolved_output(src, sink)
    assert consumer.on_revoke([TP], True) == {}  # what the client does inside a poll
    assert producer.committed == [] and producer.offsets == []
    src.poll()  # the next poll aborts before it fetches
    assert producer.aborted == [[b"decision@0", b"decision@1"]]
    assert producer.committed == [] and producer.offsets == []
    assert consumer.rewinds == 1 and not sink.in_transaction


def test_a_revoked_partition_commits_its_resolved_output_with_its_offsets() -> None:
    """The counterpart of the lost case: a revocation commits the same transaction."""
    factory = FakeFactory()
    src, sink, producer = start(factory=factory)
    resolved_output(src, sink)
    assert factory.consumer_client.on_revoke([TP], False) == {}  # committed in the transaction
    assert producer.committed == [[b"decision@0", b"decision@1"]]
    assert producer.offsets == [{TP: 2}] and producer.aborted == []


def test_at_least_once_commits_a_revoked_partition_but_not_a_lost_one() -> None:
    for lost, expected in ((False, {TP: 2}), (True, {})):
        factory = FakeFactory()
        options = SourceOptions(commit_interval_s=1e9, revoke_timeout_s=0.01)
        src = KafkaSource(SETTINGS, ["in"], ConsumerOptions("g"), options, factory=factory)
        src.start()
        for r in records(src.poll()):
            resolve(src, r)
        # the positions the hook returns are what the client commits before the handover
        assert factory.consumer_client.on_revoke([TP], lost) == expected, lost
