"""The kafka-python state reader: ``ReaderClient`` over a ``kafka.KafkaConsumer``
without a group (assign only, read_committed)."""

from __future__ import annotations

import time

from kafka import KafkaConsumer
from kafka.structs import TopicPartition as KTP

from streamfer.streams.client import ReaderOptions, TopicPartition
from streamfer.streams.kafka_python.common import connect, guard, to_batches
from streamfer.streams.kafka_python.workarounds import workaround
from streamfer.streams.records import RecordBatch
from streamfer.streams.settings import KafkaSettings


class KafkaPythonReader:
    """``ReaderClient`` over a ``kafka.KafkaConsumer`` without a group (assign only)."""

    def __init__(
        self, consumer: KafkaConsumer, watermarks: KafkaConsumer, settings: KafkaSettings
    ) -> None:
        self._c = consumer  # read_committed
        self._w = watermarks  # read_uncommitted: its end offset is the end of every write
        self._settings = settings

    def offsets(self, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
        ktp, timeout_ms = KTP(*tp), int(timeout_s * 1000)
        first = guard(
            "beginning offsets",
            self._settings,
            lambda: self._w.beginning_offsets([ktp], timeout_ms=timeout_ms),
        )
        end = guard("end offsets", self._settings,
                     lambda: self._w.end_offsets([ktp], timeout_ms=timeout_ms))  # fmt: skip
        return int(first[ktp]), int(end[ktp])

    def assign(self, tp: TopicPartition, offset: int) -> None:
        ktp = KTP(*tp)
        self._c.assign([ktp])
        self._c.seek(ktp, offset)

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]:
        got = guard(
            "poll",
            self._settings,
            lambda: self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records),
        )
        now = time.monotonic_ns()
        return to_batches(got, now)

    def position(self, tp: TopicPartition) -> int:
        got = guard("position", self._settings, lambda: self._c.position(KTP(*tp)))
        return int(got)

    def close(self) -> None:
        self._c.close(autocommit=False)
        self._w.close(autocommit=False)


def open_reader(settings: KafkaSettings, options: ReaderOptions) -> KafkaPythonReader:
    def make(isolation_level: str = "read_committed") -> KafkaConsumer:
        consumer = KafkaConsumer(
            **settings.consumer_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level=isolation_level,
            max_poll_records=options.max_poll_records,
            fetch_max_wait_ms=options.fetch_max_wait_ms,
            max_partition_fetch_bytes=options.max_partition_fetch_bytes,
            request_timeout_ms=options.request_timeout_ms,
            bootstrap_timeout_ms=options.request_timeout_ms,
            allow_auto_create_topics=False,  # asking a changelog's offsets never creates it
        )
        if workaround("no-auto-create"):
            consumer._cluster.config["allow_auto_create_topics"] = False
        return consumer

    reader = connect("state reader", settings, options.request_timeout_ms, make)
    watermarks = connect("state reader", settings, options.request_timeout_ms,
                          lambda: make("read_uncommitted"))  # fmt: skip
    return KafkaPythonReader(reader, watermarks, settings)
