"""A revocation hook that waits for in-flight records leaves the client's heartbeats running.

kafka-python: heartbeats are sent while the hook waits (read from its coordinator).
librdkafka: a wait longer than the session timeout does not cost the member its
membership (no partition is lost, the split holds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import pytest
from kafkakit import fast_options, produce, records, resolve_many

from streamfer.streams.client import ClientFactory, ClientName, TopicPartition
from streamfer.streams.records import Record
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.source import KafkaSource, SourceOptions

pytestmark = pytest.mark.integration
SESSION_S = 6.0  # fast_options: session timeout 6 s, heartbeats every 0.5 s
# how long the revoked partition's records stay in flight: kafka-python's heartbeats are
# watched directly; for librdkafka the wait outlasts the session timeout itself
HOLD_S = {"kafka-python": 4.0, "confluent-kafka": SESSION_S + 2}


def test_heartbeats_continue_while_the_revocation_waits_for_in_flight_records(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: ClientName,
    factory: ClientFactory,
) -> None:
    topic, group = unique_topic(2), unique_group()
    produce(kafka_bootstrap, topic, 40)
    settings = KafkaSettings(kafka_bootstrap)
    options = SourceOptions(revoke_timeout_s=20, commit_interval_s=0.2)
    a = KafkaSource(settings, [topic], fast_options(group), options, factory)
    hook = a._on_revoke
    heartbeats: list[float] = []  # last heartbeat sent, sampled when the hook ends
    waits: list[float] = []
    lost: list[list[TopicPartition]] = []

    def on_revoke(tps: list[TopicPartition], was_lost: bool) -> Mapping[TopicPartition, int]:
        start = time.monotonic()
        if was_lost:
            lost.append(tps)
        out = hook(tps, was_lost)
        if time.monotonic() - start > 1:  # the wait for the held records
            waits.append(time.monotonic() - start)
            if client_name == "kafka-python":
                coordinator = a.client._c._coordinator  # type: ignore[attr-defined]
                heartbeats.append(coordinator.heartbeat.last_send - start)
        return out

    a._on_revoke = on_revoke  # type: ignore[method-assign]
    a.start()
    held: list[Record] = []
    deadline = time.monotonic() + 60
    while len({r.partition for r in held}) < 2 and time.monotonic() < deadline:
        held += records(a.poll(0.1))
    assert {r.partition for r in held} == {0, 1}  # both partitions' records unresolved

    b = KafkaSource(settings, [topic], fast_options(group), options, factory)
    stop = threading.Event()

    def run_b() -> None:
        with b:
            while not stop.is_set():
                resolve_many(b, records(b.poll(0.1)))

    b_thread = threading.Thread(target=run_b, daemon=True)
    b_thread.start()
    # as in the pipeline, records resolve on other threads (acks) while the hook waits
    timer = threading.Timer(HOLD_S[client_name], resolve_many, args=(a, held))
    try:
        timer.start()
        while not waits or len(a.assigned) != 1 or len(b.assigned) != 1:
            assert time.monotonic() < deadline, f"no stable split: {a.assigned} / {b.assigned}"
            resolve_many(a, records(a.poll(0.1)))
    finally:
        timer.cancel()
        stop.set()
        b_thread.join(30)
        a.close()
    assert waits and waits[0] < options.revoke_timeout_s  # it ended when the records resolved
    assert not lost  # the member kept its membership through the wait
    if client_name == "kafka-python":
        assert heartbeats[0] > 1.0  # heartbeats went on during the wait, not just before it
    else:
        assert waits[0] > SESSION_S  # longer than the session timeout, and still a member
