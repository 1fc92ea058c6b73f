"""The confluent-kafka adapter's send path over a stand-in ``confluent_kafka.Producer``:
a full local queue is backpressure (serve delivery reports, retry), bounded by
``max_block_ms``."""

from __future__ import annotations

from typing import Any

import pytest

from streamfer.errors import StreamError
from streamfer.streams.client import Outgoing, ProducerOptions
from streamfer.streams.confluent.producer import ConfluentProducer
from streamfer.streams.connection import ConnectionMonitor
from streamfer.streams.settings import KafkaSettings


class FullQueue:
    """``produce`` refuses the first ``full`` calls with BufferError; ``poll`` serves."""

    def __init__(self, full: int) -> None:
        self.full = full
        self.produced: list[tuple[bytes | None, bytes | None, dict[str, Any]]] = []
        self.polls = 0

    def produce(self, topic: str, value: bytes | None, key: bytes | None, **kw: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((value, key, kw))

    def poll(self, timeout_s: float) -> int:
        self.polls += 1
        return 0


def adapter(library: FullQueue, max_block_ms: int = 10_000) -> ConfluentProducer:
    settings = KafkaSettings("127.0.0.1:1")
    options = ProducerOptions(max_block_ms=max_block_ms)
    return ConfluentProducer(library, settings, options, ConnectionMonitor("test"))  # type: ignore[arg-type]


def ack(_error: object | None, _message: object) -> None:
    pass


def test_a_full_queue_is_served_and_retried_until_every_message_is_queued() -> None:
    library = FullQueue(full=3)
    out = Outgoing(topic="t", values=[b"a", b"b", None], keys=[b"k", None, b"k"], on_delivery=ack)
    adapter(library).send_many(out)
    assert [(v, k) for v, k, _ in library.produced] == [(b"a", b"k"), (b"b", None), (None, b"k")]
    assert library.polls == 2  # the first refusal falls back, the next two wait


def test_headers_and_partition_reach_each_message_and_the_fast_path_sends_no_headers() -> None:
    library = FullQueue(full=0)
    producer = adapter(library)
    producer.send_many(Outgoing(topic="t", values=[b"a"], keys=[None], on_delivery=ack))
    headers = [[("h", b"1")], []]
    producer.send_many(
        Outgoing(topic="t", values=[b"b", b"c"], keys=[None, None], on_delivery=ack,
                 partition=2, headers=headers)
    )  # fmt: skip
    assert [kw for _, _, kw in library.produced] == [
        {"on_delivery": ack},
        {"on_delivery": ack, "headers": [("h", b"1")], "partition": 2},
        {"on_delivery": ack, "partition": 2},
    ]


def test_a_queue_that_stays_full_fails_clearly_after_max_block_ms() -> None:
    library = FullQueue(full=10**9)
    out = Outgoing(topic="t", values=[b"a"], keys=[None], on_delivery=ack)
    with pytest.raises(StreamError, match=r"t \| the producer queue stayed full for 0.05 s"):
        adapter(library, max_block_ms=50).send_many(out)
    assert library.polls > 0
