"""kafka-python workarounds: each is needed exactly where it is active.

``streamfer.streams.kafka_python`` works around four kafka-python 3.0.x behaviours and
turns each workaround on only for that release line. Every test here
reproduces one behaviour with plain kafka-python (no streamfer code in the
way) on the installed version, and fails when the workaround and the library
disagree: the library fixed it (the workaround can go) or a version the
workaround skips still has it (the workaround must follow).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import kafka
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError

from streamfer.streams.admin import create_topics
from streamfer.streams.client import ClientFactory, ConsumerOptions, ProducerOptions
from streamfer.streams.factory import client_factory
from streamfer.streams.kafka_python.workarounds import workaround
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink

pytestmark = pytest.mark.integration
VERSION = kafka.__version__


def verdict(name: str, still_there: bool, what: str) -> None:
    if workaround(name):
        assert still_there, (
            f"kafka-python {VERSION} no longer {what}: the {name} workaround in "
            "streams/kafka_python/workarounds.py is not needed any more; remove it"
        )
    else:
        assert not still_there, (
            f"kafka-python {VERSION} still {what}, but the {name} workaround is off for this "
            "version; extend streams.kafka_python.WORKAROUNDS_FOR"
        )


def test_parked_records_of_a_resumed_partition(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(100):
        producer.send(topic, b"v%d" % i, partition=i % 2)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=20,
    )  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        first = consumer.poll(timeout_ms=5000, max_records=1)  # the rest of its fetch waits
        (paused,) = first
        consumer.pause(paused)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # the paused partition's records get parked
            consumer.poll(timeout_ms=100, max_records=500)
        consumer.resume(paused)
        got = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and got < 49:
            polled = consumer.poll(timeout_ms=100, max_records=500)
            got += len(polled.get(paused, []))
    finally:
        consumer.close()
    verdict("parked-records", got == 0, "stalls a resumed partition that had parked records")


class SleepingListener(AsyncConsumerRebalanceListener):
    """Waits in on_partitions_assigned the only public way there is: asyncio's sleep."""

    def __init__(self) -> None:
        self.outcome: str | None = None

    async def on_partitions_revoked(self, revoked: object) -> None:
        pass

    async def on_partitions_assigned(self, assigned: object) -> None:
        try:
            await asyncio.sleep(0.01)  # whether sleeping works here is the test: not a wait
            self.outcome = "slept"
        except RuntimeError as exc:  # not asyncio's loop: nothing to sleep on
            self.outcome = f"{type(exc).__name__}: {exc}"


def test_a_consumer_subscribing_to_a_missing_topic_creates_it(kafka_bootstrap: str) -> None:
    """``allow_auto_create_topics=False`` does not reach the consumer's metadata requests."""
    from streamfer.streams.admin import topic_partitions

    topic = f"t-auto-create-{uuid.uuid4().hex[:10]}"
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=f"g-{uuid.uuid4().hex[:12]}",
        enable_auto_commit=False, allow_auto_create_topics=False,
    )  # fmt: skip
    try:
        consumer.subscribe([topic])
        consumer.topics()  # one metadata request, as the factory makes after subscribing
        deadline = time.monotonic() + 5
        created = False
        while not created and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
            created = topic in topic_partitions(kafka_bootstrap, [topic])
    finally:
        consumer.close()
    verdict("no-auto-create", created, "creates the topics a consumer subscribes to")


def test_a_rebalance_listener_has_no_public_way_to_wait(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: Callable[[], str]
) -> None:
    topic = unique_topic(1)
    listener = SleepingListener()
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=unique_group(), fetch_max_wait_ms=20
    )
    try:
        consumer.subscribe([topic], listener=listener)
        deadline = time.monotonic() + 30
        while listener.outcome is None and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
    finally:
        consumer.close()
    assert listener.outcome is not None, "never assigned"
    verdict("listener-sleep", listener.outcome != "slept", "lacks a loop a listener can wait on")
    if workaround("listener-sleep"):  # and the private sleep it uses instead is still there
        adapter = client_factory("kafka-python").consumer(
            KafkaSettings(kafka_bootstrap), [topic], ConsumerOptions(group_id=unique_group()),
            lambda tps, lost: {}, lambda tps: None,
        )  # fmt: skip
        try:
            assert adapter.heartbeats_during_revoke  # type: ignore[attr-defined]
        finally:
            adapter.close()


def test_a_refused_batch_and_the_idempotent_producer(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    compacted, plain = f"t-compacted-{uuid.uuid4().hex[:10]}", unique_topic(1)
    create_topics(kafka_bootstrap, {compacted: 1}, config={"cleanup.policy": "compact"})
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    try:
        refused = producer.send(compacted, b"v", key=None)  # compacted topics need keys
        with pytest.raises(KafkaError):
            refused.get(timeout=10)
        try:
            producer.send(plain, b"v", key=b"k").get(timeout=10)
            later_sends_fail = False
        except KafkaError:
            later_sends_fail = True
    finally:
        producer.close(timeout=5)
    verdict(
        "producer-idempotence", later_sends_fail, "fails every send after one refused batch"
    )


def test_a_refused_record_fails_alone(
    kafka_bootstrap: str, unique_topic: Callable[..., str], factory: ClientFactory
) -> None:
    """The contract the workaround keeps, on every client: the next send still works."""
    compacted, plain = f"t-compacted-{uuid.uuid4().hex[:10]}", unique_topic(1)
    create_topics(kafka_bootstrap, {compacted: 1}, config={"cleanup.policy": "compact"})
    outcomes: dict[str, object] = {}

    def note(name: str) -> Callable[[object | None, object], None]:
        return lambda error, _message: outcomes.setdefault(name, error)

    with KafkaSink(KafkaSettings(kafka_bootstrap), ProducerOptions(), factory) as sink:
        sink.send(compacted, b"v", None, (), note("refused"))
        sink.flush(10)
        sink.send(plain, b"v", b"k", (), note("next"))
        sink.flush(10)
    refused = str(outcomes["refused"])
    assert "INVALID_RECORD" in refused or "InvalidRecord" in refused, refused
    assert outcomes["next"] is None


def test_an_active_workaround_says_so_once() -> None:
    script = (
        "import logging\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from streamfer.streams.kafka_python.workarounds import workaround\n"
        "for _ in range(3):\n"
        "    workaround('parked-records')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if "workaround" in line]
    if workaround("parked-records"):
        assert lines == [
            f"kafka-python {VERSION}: workaround parked-records active: records parked for a "
            "paused partition are handed back on resume"
        ]
    else:
        assert lines == []
