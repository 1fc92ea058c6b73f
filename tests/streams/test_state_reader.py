"""The partition reader both clients offer (state restore), on the real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from streamfer.errors import StateError, StreamError
from streamfer.streams.admin import create_topics, delete_topics, topic_exists
from streamfer.streams.client import (
    ClientFactory,
    ClientName,
    Outgoing,
    ProducerOptions,
    ReaderOptions,
)
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.state import LocalStore
from streamfer.streams.state.restore import MISSING_GRACE_S, restore

pytestmark = pytest.mark.integration


def test_reader_skips_aborted_entries_and_ends_past_the_markers(
    kafka_bootstrap: str, unique_topic: Callable[..., str], factory: ClientFactory
) -> None:
    topic = unique_topic(2)
    settings = KafkaSettings(kafka_bootstrap, client_id="reader-test")
    acked: list[object] = []

    def on_delivery(error: object | None, _message: object) -> None:
        acked.append(error)

    def to_partition_1(values: list[bytes | None], keys: list[bytes | None]) -> Outgoing:
        return Outgoing(topic=topic, values=values, keys=keys, on_delivery=on_delivery, partition=1)

    with KafkaSink(settings, ProducerOptions(transactional_id=f"txn-{topic}"), factory) as sink:
        sink.send_many(to_partition_1([b"1", b"2"], [b"a", b"b"]))
        sink.commit_transaction({}, None)
        sink.send_many(to_partition_1([b"lost"], [b"a"]))
        sink.flush(10)
        sink.abort_transaction()
        sink.send_many(to_partition_1([b"3", None], [b"c", b"b"]))
        sink.commit_transaction({}, None)
    assert acked == [None] * 5
    reader = factory.reader(settings, ReaderOptions())
    try:
        first, end = reader.offsets((topic, 1), 10)
        assert first == 0 and end >= 5 + 3  # five entries, three transaction markers
        assert reader.offsets((topic, 0), 10) == (0, 0)
        reader.assign((topic, 1), first)
        got: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 30
        while reader.position((topic, 1)) < end:
            assert time.monotonic() < deadline, f"stuck at {reader.position((topic, 1))} of {end}"
            for batch in reader.poll(0.1, 100):
                assert batch.tp == (topic, 1)
                got += zip(batch.keys, batch.values, strict=True)
    finally:
        reader.close()
    assert got == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"b", None)]


def test_reader_finds_a_topic_created_after_it_first_talked_to_the_cluster(
    kafka_bootstrap: str, factory: ClientFactory
) -> None:
    """A changelog created when a stream's input appears is read at once: the reader's
    metadata does not know it yet (librdkafka answered _UNKNOWN_PARTITION and the stream
    stopped), so offsets looks it up and waits for it within its timeout."""
    settings = KafkaSettings(kafka_bootstrap, client_id="reader-test")
    topic = f"t-reader-late-{uuid.uuid4().hex[:10]}"
    reader = factory.reader(settings, ReaderOptions())
    try:
        with pytest.raises(StreamError):
            reader.offsets((topic, 0), 1.0)  # not there at all: fails within the timeout
        create_topics(kafka_bootstrap, {topic: 2})
        assert reader.offsets((topic, 1), 10) == (0, 0)
    finally:
        reader.close()


def test_a_deleted_changelog_fails_the_restore_within_the_grace_not_the_timeout(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    factory: ClientFactory,
    client_name: ClientName,
    tmp_path: Path,
) -> None:
    """Both clients' readers say they cannot find the topic, and the admin says it is not
    there: the restore names the topic and the fix well before its 300 s timeout."""
    settings = KafkaSettings(kafka_bootstrap, client_id="reader-test")
    topic = unique_topic(1)
    delete_topics(kafka_bootstrap, [topic])
    deadline = time.monotonic() + 30
    while topic_exists(settings, topic, client=client_name) is not False:
        assert time.monotonic() < deadline, f"{topic} still listed 30 s after its deletion"
    reader = factory.reader(settings, ReaderOptions())
    store = LocalStore(tmp_path / "p0", 16 * 1024 * 1024).open()
    started = time.monotonic()
    try:
        with pytest.raises(StateError) as err:
            restore(store, reader, (topic, 0), 0, timeout_s=300,
                    exists=partial(topic_exists, settings, client=client_name))  # fmt: skip
    finally:
        store.close()
        reader.close()
    assert time.monotonic() - started < MISSING_GRACE_S + 30
    assert f"the state changelog topic {topic!r} does not exist" in str(err.value)
