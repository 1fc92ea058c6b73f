"""The kafka-python consumer's idle probe: a topic being deleted is missing, not fatal."""

from __future__ import annotations

from typing import Any

from kafka.errors import UnknownTopicOrPartitionError

from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.kafka_python.consumer import KafkaPythonConsumer
from streamfer.streams.settings import KafkaSettings


class DeletedTopicConsumer:
    """Answers the probe's questions as kafka-python 3 does while ``topic`` is deleted."""

    def __init__(self, topic: str, raises: bool) -> None:
        self.topic = topic
        self.raises = raises
        self.asked: list[str] = []

    def subscription(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        self.asked.append(topic)
        if self.raises:
            raise UnknownTopicOrPartitionError(topic)
        return None

    def metrics(self) -> dict[str, Any]:
        return {"consumer-metrics": {"connection-count": 1}}


def test_a_topic_that_errors_in_the_metadata_reads_as_missing_like_an_absent_one() -> None:
    for raises in (True, False):
        double = DeletedTopicConsumer("payments.tx", raises)
        monitor = ConnectionMonitor("test")
        consumer = KafkaPythonConsumer(
            double,  # type: ignore[arg-type]
            KafkaSettings("127.0.0.1:1"),
            "earliest",
            monitor=monitor,
        )
        consumer._probe()  # the stream goes on: no exception
        assert double.asked == ["payments.tx"]
        assert monitor.unknown_topic_within(60), f"raises={raises}: the topic reads as missing"
