"""KafkaSource and KafkaSink rules that need no broker (nothing here connects)."""

from __future__ import annotations

import pytest

from streamfer.errors import CodecError, EngineError, StreamError
from streams.client import ConsumerOptions, Delivered
from streams.dlq import ERROR_REASON, DeadLetterWriter
from streams.records import Record
from streams.settings import KafkaSettings
from streams.sink import KafkaSink
from streams.source import KafkaSource

SETTINGS = KafkaSettings("127.0.0.1:1")


def record(offset: int) -> Record:
    return Record("t", 0, offset, None, b"", (), 0, 0)


def test_ack_callback_resolves_only_delivered_output() -> None:
    src = KafkaSource(SETTINGS, ["t"], ConsumerOptions("g"))
    src.tracker.add(("t", 0), [0, 1])
    src.ack_callback(record(0))(None, RuntimeError("broker said no"))
    assert src.is_pending(record(0)) and src.delivery_errors == 1
    assert src.tracker.positions() == {}
    src.ack_callback(record(0))(Delivered("out", 0, 5), None)
    assert not src.is_pending(record(0))
    assert src.tracker.positions() == {("t", 0): 1}


def test_clients_used_before_start_or_in_the_wrong_mode_say_so() -> None:
    src = KafkaSource(SETTINGS, ["t"], ConsumerOptions("g"))
    with pytest.raises(StreamError, match="before start"):
        src.poll()
    sink = KafkaSink(SETTINGS)
    with pytest.raises(StreamError, match="before start"):
        sink.send("t", b"v")
    with pytest.raises(StreamError, match="transactional_id"):
        src.use_transactions(sink)
    with pytest.raises(StreamError, match="non-transactional"):
        sink.commit_transaction({}, None)
    src.close()  # never started: nothing to do
    sink.close()


def test_dead_letter_reason_header_is_the_reason_the_caller_counts() -> None:
    sent: list[dict[str, bytes]] = []

    class Sink:
        def send(self, topic: str, value: bytes, key: object, headers: list, on_delivery: object,
                 only_if: object = None) -> bool:  # fmt: skip
            sent.append(dict(headers))
            return True

    writer = DeadLetterWriter(Sink())  # type: ignore[arg-type]
    writer.write(record(3), EngineError("m | boom"), reason="engine_error")
    writer.write(record(4), CodecError("t | bad json", "bad_json"))
    assert sent[0][ERROR_REASON] == b"engine_error"
    assert sent[1][ERROR_REASON] == b"bad_json"
