"""The dead-letter writer: whatever the record, its dead letter fits the dead-letter topic."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from streamfer.errors import CodecError
from streamfer.streams.client import ProducerOptions
from streamfer.streams.dlq import (
    HEADERS_DROPPED,
    KEY_TRUNCATED,
    SOURCE_OFFSET,
    VALUE_NULL,
    VALUE_TRUNCATED,
    DeadLetterWriter,
)
from streamfer.streams.records import Record

Headers = Sequence[tuple[str, bytes | None]]


def varint_size(n: int) -> int:
    """Bytes of Kafka's zigzag varint of ``n``."""
    z = (n << 1) ^ (n >> 63)
    size = 1
    while z >= 0x80:
        z >>= 7
        size += 1
    return size


def batch_size(key: bytes | None, value: bytes, headers: Headers) -> int:
    """Bytes of a v2 record batch holding this one record, as the broker measures it
    against ``max.message.bytes`` (written here from the format, not from the writer)."""
    body = 1 + varint_size(0) + varint_size(0)  # attributes, timestamp and offset deltas
    body += varint_size(-1) if key is None else varint_size(len(key)) + len(key)
    body += varint_size(len(value)) + len(value) + varint_size(len(headers))
    for name, hvalue in headers:
        raw = name.encode()
        body += varint_size(len(raw)) + len(raw)
        body += varint_size(-1) if hvalue is None else varint_size(len(hvalue)) + len(hvalue)
    return 61 + varint_size(body) + body


class Sink:
    """Keeps what is sent; checks it is what a producer can send."""

    options = ProducerOptions()

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes, list[tuple[str, bytes | None]]]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers = (),
             on_delivery: object = None, partition: object = None,
             only_if: object = None) -> bool:  # fmt: skip
        assert topic == "in.dlq"
        assert isinstance(value, bytes), "Kafka needs a key or a value: never both null"
        assert all(isinstance(n, str) and (v is None or isinstance(v, bytes)) for n, v in headers)
        self.sent.append((key, value, list(headers)))
        return True


NAMES = st.one_of(st.text(max_size=20), st.sampled_from(["content-type", "\u00e9t\u00e9", ""]))
SIZES = st.one_of(st.integers(0, 300), st.integers(1_000, 120_000))
BYTES = SIZES.map(lambda n: b"\xab" * n)


@given(
    key=st.one_of(st.none(), BYTES),
    value=st.one_of(st.none(), BYTES),
    headers=st.lists(st.tuples(NAMES, st.one_of(st.none(), BYTES)), max_size=5),
    limit=st.integers(1_000, 150_000),
    message=st.one_of(st.text(max_size=3000), st.just("\U0001f600" * 1000)),
)
@settings(max_examples=400, deadline=None)
def test_any_dead_letter_fits_the_topic(
    key: bytes | None, value: bytes | None, headers: Headers, limit: int, message: str
) -> None:
    sink = Sink()
    writer = DeadLetterWriter(sink, max_message_bytes=limit)  # type: ignore[arg-type]
    record = Record("in", 2, 99, key, value, tuple(headers), 1_700_000_000_000, 0)
    writer.write(record, CodecError(message, "bad_json"))
    ((sent_key, sent_value, sent_headers),) = sink.sent
    assert batch_size(sent_key, sent_value, sent_headers) <= limit
    notes = dict(sent_headers[-4:])
    assert dict(sent_headers)[SOURCE_OFFSET] == b"99"
    assert (dict(sent_headers).get(VALUE_NULL) == b"true") == (value is None)
    original = value or b""
    if VALUE_TRUNCATED in notes:
        assert notes[VALUE_TRUNCATED] == str(len(original)).encode()
        assert original.startswith(sent_value) and len(sent_value) < len(original)
    else:
        assert sent_value == original
    if KEY_TRUNCATED in notes:
        assert key is not None and notes[KEY_TRUNCATED] == str(len(key)).encode()
        assert key.startswith(sent_key or b"") and sent_value == b""
    else:
        assert sent_key == key
    if HEADERS_DROPPED in notes:
        assert notes[HEADERS_DROPPED] == str(len(headers)).encode()
    else:
        assert sent_headers[: len(headers)] == list(headers)


def test_a_record_that_fits_is_written_whole() -> None:
    sink = Sink()
    writer = DeadLetterWriter(sink, max_message_bytes=64 * 1024)  # type: ignore[arg-type]
    record = Record("in", 0, 5, b"k" * 100, b"v" * 60_000, (("a", b"1"),), 0, 0)
    writer.write(record, CodecError("in[0]@5 | bad", "bad_json"))
    ((key, value, headers),) = sink.sent
    assert (key, value, headers[0]) == (b"k" * 100, b"v" * 60_000, ("a", b"1"))
    names = {name for name, _ in headers}
    assert not names & {VALUE_TRUNCATED, KEY_TRUNCATED, HEADERS_DROPPED}


def test_a_long_message_in_wide_characters_is_cut_to_fit_too() -> None:
    sink = Sink()
    writer = DeadLetterWriter(sink, max_message_bytes=2_000)  # type: ignore[arg-type]
    record = Record("in", 0, 5, b"k", b"v" * 100, (), 0, 0)
    writer.write(record, CodecError("in[0]@5 | " + "\U0001f600" * 1000, "bad_json"))
    ((key, value, headers),) = sink.sent
    assert batch_size(key, value, headers) <= 2_000
    assert dict(headers)["error-message"].decode().startswith("in[0]@5 | \U0001f600")
