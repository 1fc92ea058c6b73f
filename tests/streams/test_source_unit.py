"""KafkaSource and KafkaSink rules that need no broker (nothing here connects)."""

from __future__ import annotations

import pytest

from streamfer.errors import CodecError, EngineError, StreamError
from streamfer.streams.client import ConsumerOptions, ProducerOptions
from streamfer.streams.dlq import ERROR_REASON, VALUE_NULL, VALUE_TRUNCATED, DeadLetterWriter
from streamfer.streams.records import Record
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.source import KafkaSource

SETTINGS = KafkaSettings("127.0.0.1:1")


def record(offset: int, value: bytes | None = b"") -> Record:
    return Record("t", 0, offset, None, value, (), 0, 0)


def test_clients_used_before_start_or_in_the_wrong_mode_say_so() -> None:
    src = KafkaSource(SETTINGS, ["t"], ConsumerOptions("g"))
    with pytest.raises(StreamError, match="before start"):
        src.poll()
    sink = KafkaSink(SETTINGS)
    with pytest.raises(StreamError, match="before start"):
        sink.send("t", b"v")
    with pytest.raises(StreamError, match="transactional"):
        src.use_transactions(sink)
    with pytest.raises(StreamError, match="non-transactional"):
        sink.commit_transaction({}, None)
    src.close()  # never started: nothing to do
    sink.close()


class RecordingSink:
    """Keeps every dead letter as the cluster would get it; refuses what Kafka refuses."""

    options = ProducerOptions(max_request_size=64 * 1024)

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[str, bytes]]] = []

    def send(self, topic: str, value: bytes, key: object, headers: list, on_delivery: object,
             only_if: object = None) -> bool:  # fmt: skip
        assert isinstance(value, bytes), "Kafka needs a key or a value: never both null"
        assert len(value) <= self.options.max_request_size
        assert topic == "t.dlq"
        self.sent.append((value, dict(headers)))
        return True


def test_dead_letter_reason_header_is_the_reason_the_caller_counts() -> None:
    sink = RecordingSink()
    writer = DeadLetterWriter(sink)  # type: ignore[arg-type]
    writer.write(record(3), EngineError("m | boom"), reason="engine_error")
    writer.write(record(4), CodecError("t | bad json", "bad_json"))
    assert sink.sent[0][1][ERROR_REASON] == b"engine_error"
    assert sink.sent[1][1][ERROR_REASON] == b"bad_json"
    assert sink.sent[0][1]["error-message"].startswith(b"t[0]@3 | ")


def test_dead_letters_are_always_publishable() -> None:
    sink = RecordingSink()
    writer = DeadLetterWriter(sink, max_message_bytes=16 * 1024)  # type: ignore[arg-type]
    error = CodecError("t[0]@5 | null value", "null_value")
    writer.write(record(5, None), error)  # a tombstone without a key
    writer.write(record(6, b"x" * 100_000), CodecError("too big", "too_large"))
    (null_value, null_headers), (cut, cut_headers) = sink.sent
    assert null_value == b"" and null_headers[VALUE_NULL] == b"true"
    assert len(cut) < 16 * 1024 and cut == b"x" * len(cut)
    assert cut_headers[VALUE_TRUNCATED] == b"100000"
