"""A revocation hook that waits for in-flight records leaves the client's heartbeats running."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import pytest
from kafkakit import fast_options, produce

from streams.client import TopicPartition
from streams.records import Record
from streams.settings import KafkaSettings
from streams.source import KafkaSource, SourceOptions

pytestmark = pytest.mark.integration
HOLD_S = 4.0  # how long the revoked partition's records stay in flight (heartbeat: 0.5 s)


def test_heartbeats_continue_while_the_revocation_waits_for_in_flight_records(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: Callable[[], str]
) -> None:
    topic, group = unique_topic(2), unique_group()
    produce(kafka_bootstrap, topic, 40)
    settings = KafkaSettings(kafka_bootstrap)
    options = SourceOptions(revoke_timeout_s=20, commit_interval_s=0.2)
    a = KafkaSource(settings, [topic], fast_options(group), options)
    hook = a._on_revoke
    heartbeats: list[float] = []  # last heartbeat sent, sampled when the hook ends
    waits: list[float] = []

    def on_revoke(tps: list[TopicPartition], lost: bool) -> Mapping[TopicPartition, int]:
        start = time.monotonic()
        out = hook(tps, lost)
        if time.monotonic() - start > 1:  # the wait for the held records
            waits.append(time.monotonic() - start)
            heartbeats.append(a.client._c._coordinator.heartbeat.last_send - start)  # type: ignore[attr-defined]
        return out

    a._on_revoke = on_revoke  # type: ignore[method-assign]
    a.start()
    held: list[Record] = []
    deadline = time.monotonic() + 60
    while len({r.partition for r in held}) < 2 and time.monotonic() < deadline:
        held += a.poll(0.1)
    assert {r.partition for r in held} == {0, 1}  # both partitions' records unresolved

    b = KafkaSource(settings, [topic], fast_options(group), options)
    stop = threading.Event()

    def run_b() -> None:
        with b:
            while not stop.is_set():
                b.resolve_many(b.poll(0.1))

    b_thread = threading.Thread(target=run_b, daemon=True)
    b_thread.start()
    # as in the pipeline, records resolve on other threads (acks) while the hook waits
    timer = threading.Timer(HOLD_S, a.resolve_many, args=(held,))
    try:
        timer.start()
        while not waits or len(a.assigned) != 1 or len(b.assigned) != 1:
            assert time.monotonic() < deadline, f"no stable split: {a.assigned} / {b.assigned}"
            a.resolve_many(a.poll(0.1))
    finally:
        timer.cancel()
        stop.set()
        b_thread.join(30)
        a.close()
    assert waits and waits[0] < options.revoke_timeout_s  # it ended when the records resolved
    assert heartbeats[0] > 1.0  # heartbeats went on during the wait, not just before it
