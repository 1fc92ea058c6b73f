"""The kafka-python consumer's idle probe: a topic being deleted is missing, not fatal;
another error of the metadata request is reported and the stream goes on."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.kafka_python.consumer import KafkaPythonConsumer
from streamfer.streams.settings import KafkaSettings


class DeletedTopicConsumer:
    """Answers the probe's questions as kafka-python 3 does while ``topic`` is deleted
    (``raises`` True: with UnknownTopicOrPartition, False: with nothing), or raises the
    exception ``raises`` is."""

    def __init__(self, topic: str, raises: bool | Exception) -> None:
        self.topic = topic
        self.raises = raises
        self.asked: list[str] = []

    def subscription(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        self.asked.append(topic)
        if isinstance(self.raises, Exception):
            raise self.raises
        if self.raises:
            raise UnknownTopicOrPartitionError(topic)
        return None

    def metrics(self) -> dict[str, Any]:
        return {"consumer-metrics": {"connection-count": 1}}


def probed(double: DeletedTopicConsumer) -> ConnectionMonitor:
    """One idle probe of a kafka-python consumer over ``double``; its connection monitor."""
    monitor = ConnectionMonitor("test")
    consumer = KafkaPythonConsumer(
        double,  # type: ignore[arg-type]
        KafkaSettings("127.0.0.1:1"),
        "earliest",
        monitor=monitor,
    )
    consumer._probe()  # the stream goes on: no exception
    assert double.asked == [double.topic]
    return monitor


def test_a_topic_that_errors_in_the_metadata_reads_as_missing_like_an_absent_one() -> None:
    for raises in (True, False):
        monitor = probed(DeletedTopicConsumer("payments.tx", raises))
        assert monitor.unknown_topic_within(60), f"raises={raises}: the topic reads as missing"


def test_another_metadata_error_is_reported_and_does_not_call_the_topic_missing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        monitor = probed(DeletedTopicConsumer("payments.tx", KafkaTimeoutError("no answer")))
    assert not monitor.unknown_topic_within(60), "a timeout says nothing of the topic"
    assert monitor.unreachable_s() == 0.0  # the connection count (1) speaks for the cluster
    assert "metadata of payments.tx: KafkaTimeoutError" in caplog.text
