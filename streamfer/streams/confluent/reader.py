"""The confluent-kafka state reader: ``ReaderClient`` over a ``confluent_kafka.Consumer``
that assigns partitions and never joins its group (read_committed)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as CTP

from streamfer.errors import StreamError
from streamfer.streams.client import ReaderOptions, TopicPartition
from streamfer.streams.confluent.common import EOF, error_of, guard, to_batches
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.records import RecordBatch
from streamfer.streams.security import LOGIN_CHECK_TIMEOUT_S, check_login
from streamfer.streams.settings import KafkaSettings

_NOT_KNOWN_YET = (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART)
_METADATA_RETRY_S = 0.1


class ConfluentReader:
    """``ReaderClient`` over a ``confluent_kafka.Consumer`` that never joins its group."""

    def __init__(self, consumer: Consumer, watermarks: Consumer, settings: KafkaSettings) -> None:
        self._c = consumer  # read_committed
        self._w = watermarks  # read_uncommitted: its high watermark is the end of every write
        self._settings = settings

    def offsets(self, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
        # A topic created a moment ago (a changelog made when a stream's input appeared) is
        # not in this client's metadata yet: librdkafka answers _UNKNOWN_PARTITION at once
        # and does not look it up. Ask for the topic's metadata and try again, until timeout.
        deadline = time.monotonic() + timeout_s
        while True:
            left = max(0.1, deadline - time.monotonic())
            try:
                low, high = self._w.get_watermark_offsets(CTP(*tp), timeout=left, cached=False)
                return int(low), int(high)
            except KafkaException as exc:
                code = getattr(error_of(exc), "code", lambda: None)()
                if code not in _NOT_KNOWN_YET or time.monotonic() >= deadline:
                    raise StreamError(
                        f"{self._settings.describe()} | offsets of {tp[0]}[{tp[1]}] failed: "
                        f"{error_of(exc)}"
                    ) from exc
            with contextlib.suppress(KafkaException):  # a failed look-up: the loop tries again
                self._w.list_topics(tp[0], timeout=left)
            time.sleep(_METADATA_RETRY_S)  # a retry's backoff

    def assign(self, tp: TopicPartition, offset: int) -> None:
        guard(f"assign {tp[0]}[{tp[1]}]", self._settings,
               lambda: self._c.assign([CTP(*tp, offset)]))  # fmt: skip

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]:
        msgs: list[Any] = self._c.consume(max_records, timeout_s)
        now = time.monotonic_ns()
        groups: dict[TopicPartition, list[Any]] = {}
        for m in msgs:
            err = m.error()
            if err is None:
                groups.setdefault((m.topic(), m.partition()), []).append(m)
            elif err.code() != EOF:
                raise StreamError(f"{self._settings.describe()} | reading failed: {err}")
        return to_batches(groups, now)

    def position(self, tp: TopicPartition) -> int:
        (got,) = guard(f"position of {tp[0]}[{tp[1]}]", self._settings,
                        lambda: self._c.position([CTP(*tp)]))  # fmt: skip
        return int(got.offset)

    def close(self) -> None:
        self._c.close()
        self._w.close()


def open_reader(settings: KafkaSettings, options: ReaderOptions) -> ConfluentReader:
    check_login(settings, min(options.request_timeout_ms / 1000, LOGIN_CHECK_TIMEOUT_S))
    conf: dict[str, Any] = {
        **settings.librdkafka_config(),
        # librdkafka wants a group id; a reader that only assigns never joins the group
        "group.id": f"{settings.client_id}-{options.client_id_suffix}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": options.fetch_max_wait_ms,
        "max.partition.fetch.bytes": options.max_partition_fetch_bytes,
        "socket.timeout.ms": options.request_timeout_ms,
        "logger": ConnectionMonitor(settings.describe()),
    }
    uncommitted = {**conf, "isolation.level": "read_uncommitted"}
    return ConfluentReader(Consumer(conf), Consumer(uncommitted), settings)
