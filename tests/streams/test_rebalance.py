"""Two members of one group, a rebalance mid-stream: no record lost, none resolved twice."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from kafkakit import committed, fast_options, produce, read_all, records, resolve

from streamfer.streams.client import ClientFactory, ProducerOptions
from streamfer.streams.records import Record
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource, SourceOptions

pytestmark = pytest.mark.integration
N = 3000


class Ledger:
    """Counts every successful resolve per record, across members."""

    def __init__(self, total: int) -> None:
        self.counts: Counter[tuple[int, int]] = Counter()
        self.lock = threading.Lock()
        self.total = total
        self.all_done = threading.Event()

    def resolved(self, record: Record) -> None:
        with self.lock:
            self.counts[(record.partition, record.offset)] += 1
            if len(self.counts) >= self.total:
                self.all_done.set()


class Member:
    """A consumer thread feeding a worker thread that publishes and resolves on ack."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        out: str,
        group: str,
        ledger: Ledger,
        exactly_once: bool,
        gate: threading.Event,
        factory: ClientFactory,
        hold_after: int = N,
    ) -> None:
        settings = KafkaSettings(bootstrap)
        txn_id = f"{group}-{id(self)}" if exactly_once else None
        self.sink = KafkaSink(settings, ProducerOptions(transactional_id=txn_id), factory)
        isolation = "read_committed" if exactly_once else "read_uncommitted"
        self.source = KafkaSource(
            settings,
            [topic],
            fast_options(group, max_poll_records=50, isolation_level=isolation),
            # the in-flight limit pauses fetching, so the consumer thread keeps polling
            # (and takes part in the rebalance) while the worker is held at the gate;
            # exactly-once commits only at the revocation and at close (barriers)
            SourceOptions(
                max_in_flight_per_partition=200,
                commit_interval_s=3600 if exactly_once else 0.2,
                revoke_timeout_s=10,
            ),
            factory,
        )
        if exactly_once:
            self.source.use_transactions(self.sink)
        self.gate, self.hold_after, self.processed = gate, hold_after, 0
        self.out, self.ledger = out, ledger
        self.work: queue.Queue[Record | None] = queue.Queue()
        self.stop = threading.Event()
        self.polled = 0
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._consume, daemon=True),
            threading.Thread(target=self._process, daemon=True),
        ]

    def start(self) -> None:
        self.sink.start()
        for t in self.threads:
            t.start()

    def _consume(self) -> None:
        try:
            with self.source:
                while not self.stop.is_set():
                    for record in records(self.source.poll(0.1)):
                        self.polled += 1
                        self.work.put(record)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self.work.put(None)

    def _process(self) -> None:
        while (record := self.work.get()) is not None:
            if self.processed >= self.hold_after:
                self.gate.wait(60)
            self.processed += 1

            def on_delivery(err: object | None, _msg: object, record: Record = record) -> None:
                if err is None and resolve(self.source, record):
                    self.ledger.resolved(record)

            self.sink.send(self.out, record.value, record.key, (), on_delivery)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive()
        self.sink.close()
        assert not self.errors


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_rebalance_mid_stream_loses_nothing_and_resolves_nothing_twice(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    exactly_once: bool,
    factory: ClientFactory,
) -> None:
    topic, out, group = unique_topic(4), unique_topic(1), unique_group()
    produce(kafka_bootstrap, topic, N, keys=64)
    ledger = Ledger(N)
    gate = threading.Event()
    # everything the first member polls stays in flight until the gate opens
    first = Member(kafka_bootstrap, topic, out, group, ledger, exactly_once, gate, factory, 0)
    first.start()
    deadline = time.monotonic() + 30
    while first.source.tracker.in_flight() < 400:  # mid-stream, with records in flight
        assert time.monotonic() < deadline and not first.errors, first.source.tracker.in_flight()
        ledger.all_done.wait(0.01)
    second = Member(kafka_bootstrap, topic, out, group, ledger, exactly_once, gate, factory)
    second.start()
    deadline = time.monotonic() + 30
    while len(first.source.assigned) == 4:  # until the revocation hook is running
        assert time.monotonic() < deadline, (
            f"no revocation: first {sorted(first.source.assigned)} {first.errors}, "
            f"second {sorted(second.source.assigned)} {second.errors} polled {second.polled}"
        )
        ledger.all_done.wait(0.005)
    assert first.source.tracker.in_flight() >= 400  # revoked with records in flight ...
    gate.set()  # ... which resolve while the hook waits, then get committed
    assert ledger.all_done.wait(60), f"{len(ledger.counts)} of {N} resolved"
    # both members took part, and the partitions were split between them
    deadline = time.monotonic() + 30
    while not (first.source.assigned and second.source.assigned):
        assert time.monotonic() < deadline, "the group never split the partitions"
        ledger.all_done.wait(0.05)
    first.join()
    second.join()
    assert first.polled > N // 5 and second.polled > 0
    assert len(ledger.counts) == N
    twice = {k: v for k, v in ledger.counts.items() if v > 1}
    assert not twice, f"resolved more than once: {sorted(twice)[:10]}"
    everything = {b"v%d" % i for i in range(N)}
    visible = Counter(m.value for m in read_all(kafka_bootstrap, out))
    assert max(visible.values()) == 1, "a decision visible twice"
    if exactly_once and set(visible) != everything:
        # The two members closed at once: a final commit can lose the race with the
        # other member's leave (its generation is gone, IllegalGeneration). That
        # transaction aborts, its offsets stay uncommitted, its output invisible ...
        inputs = {(m.partition, m.offset): m.value for m in read_all(kafka_bootstrap, topic)}
        offsets = committed(kafka_bootstrap, group, topic)
        below = {v for (p, o), v in inputs.items() if o < (offsets[p] or 0)}
        assert set(visible) == below, "visible output and committed offsets disagree"
        # ... and the group's next member decides exactly the rest.
        rest = Ledger(N - len(below))
        finisher = Member(kafka_bootstrap, topic, out, group, rest, exactly_once, gate, factory)
        finisher.start()
        assert rest.all_done.wait(60), f"{len(rest.counts)} of {rest.total} reprocessed"
        finisher.join()
        visible = Counter(m.value for m in read_all(kafka_bootstrap, out))
        assert max(visible.values()) == 1, "a reprocessed decision visible twice"
    # every decision visible to read_committed readers exactly once
    assert set(visible) == everything
