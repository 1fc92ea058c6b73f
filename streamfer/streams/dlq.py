"""Dead letters: bad input goes to ``<topic>.dlq`` with the original bytes and the reason.

A dead letter is always publishable: a record without a value (a tombstone)
is written with an empty value and ``source-value-null: true`` (Kafka refuses
a record with neither key nor value), and a record larger than the dead-letter
topic accepts (its ``max.message.bytes``, learned at start) is cut to fit: first
the value (``source-value-truncated`` gives its original size in bytes), then,
only if the key and headers alone are too large, the original headers
(``source-headers-dropped``: how many) and the key (``source-key-truncated``:
its original size). The size of a dead letter is counted as Kafka counts a
record batch holding it alone (uncompressed), so what is sent fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamfer.errors import CodecError, ProcessorError
from streamfer.streams.client import DeliveryCallback
from streamfer.streams.records import Record
from streamfer.streams.sink import KafkaSink

DLQ_SUFFIX = ".dlq"
MAX_MESSAGE_CHARS = 1000
# A record batch holding one record, beyond its key, value and headers: the batch
# header (61 bytes) and the record's own fields and length prefixes (at most 36).
_FRAMING_BYTES = 100
_PER_HEADER_BYTES = 10  # a header's two length prefixes

# Header names added to every dead letter (the original headers come first).
ERROR_CLASS = "error-class"
ERROR_REASON = "error-reason"
ERROR_MESSAGE = "error-message"
SOURCE_TOPIC = "source-topic"
SOURCE_PARTITION = "source-partition"
SOURCE_OFFSET = "source-offset"
VALUE_NULL = "source-value-null"  # "true": the original record had no value at all
VALUE_TRUNCATED = "source-value-truncated"  # the original value's size in bytes
HEADERS_DROPPED = "source-headers-dropped"  # how many original headers were left out
KEY_TRUNCATED = "source-key-truncated"  # the original key's size in bytes


def short(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def error_class(error: BaseException) -> str:
    """The ``error-class`` header: the class of what a processor raised, else the error's own."""
    return error.error_class if isinstance(error, ProcessorError) else type(error).__name__


def error_reason(error: BaseException) -> str:
    """The bounded reason label of an error: the CodecError reason, else ``internal_error``."""
    return error.reason if isinstance(error, CodecError) else "internal_error"


class DeadLetterWriter:
    """Writes a record that could not be processed, unchanged, plus error and source headers.

    ``topic`` fixes one dead-letter topic for every input; by default it is the
    input topic plus ``suffix``. ``max_message_bytes``: what the dead-letter topic
    accepts (its ``max.message.bytes``, capped by the producer's own limit); larger
    records are cut to fit (see the module doc). Resolve the source record in
    ``on_delivery``.
    """

    def __init__(
        self,
        sink: KafkaSink,
        *,
        topic: str | None = None,
        suffix: str = DLQ_SUFFIX,
        max_message_bytes: int | None = None,
    ):
        self.sink = sink
        self.topic = topic
        self.suffix = suffix
        limit = max_message_bytes or sink.options.max_request_size
        self.max_message_bytes = min(limit, sink.options.max_request_size)

    def topic_for(self, source_topic: str) -> str:
        return self.topic or source_topic + self.suffix

    def write(
        self,
        record: Record,
        error: BaseException,
        on_delivery: DeliveryCallback | None = None,
        *,
        reason: str | None = None,
        only_if: Callable[[], bool] | None = None,
    ) -> bool:
        """Queue the dead letter; False when ``only_if`` said no (see ``KafkaSink.send``).

        ``reason`` is the ``error-reason`` header (default: ``error_reason(error)``), so a
        caller that counts dead letters by reason writes the same code it counts.
        """
        message = str(error)
        if not message.startswith(record.coords):
            message = f"{record.coords} | {message}"
        message = short(message)
        ours: list[tuple[str, bytes | None]] = [
            (ERROR_CLASS, error_class(error).encode()),
            (ERROR_REASON, (reason or error_reason(error)).encode()),
            (ERROR_MESSAGE, self._message_bytes(message)),
            (SOURCE_TOPIC, record.topic.encode()),
            (SOURCE_PARTITION, str(record.partition).encode()),
            (SOURCE_OFFSET, str(record.offset).encode()),
        ]
        value = record.value
        if value is None:
            value = b""
            ours.append((VALUE_NULL, b"true"))
        key, original, value = self._fit(record.key, record.headers, value, ours)
        return self.sink.send(
            self.topic_for(record.topic),
            value,
            key,
            [*original, *ours],  # type: ignore[list-item]
            on_delivery,
            only_if=only_if,
        )

    def _message_bytes(self, message: str) -> bytes:
        """The message as UTF-8, cut (at a character) to a quarter of a small topic's limit."""
        raw = message.encode("utf-8", "replace")
        most = self.max_message_bytes // 4
        if len(raw) <= most:
            return raw
        return raw[: max(0, most - 3)].decode("utf-8", "ignore").encode() + b"..."

    def _fit(
        self,
        key: bytes | None,
        original: Sequence[tuple[str, bytes | None]],
        value: bytes,
        ours: list[tuple[str, bytes | None]],
    ) -> tuple[bytes | None, Sequence[tuple[str, bytes | None]], bytes]:
        """Key, original headers and value cut so the dead letter fits the topic's limit
        (the notes on what was cut are appended to ``ours``)."""
        # room for the notes themselves: name, a size of up to 20 digits, prefixes
        notes = _FRAMING_BYTES + 3 * (len(KEY_TRUNCATED) + 20 + _PER_HEADER_BYTES)
        room = self.max_message_bytes - notes - _headers_size(ours) - len(key or b"")
        if _headers_size(original) > room:
            ours.append((HEADERS_DROPPED, str(len(original)).encode()))
            original = ()
        room -= _headers_size(original)
        if room < 0 and key:
            ours.append((KEY_TRUNCATED, str(len(key)).encode()))
            keep = max(0, len(key) + room)
            key, room = key[:keep], room + len(key) - keep
        if len(value) > max(room, 0):
            ours.append((VALUE_TRUNCATED, str(len(value)).encode()))
            value = value[: max(room, 0)]
        return key, original, value


def _headers_size(headers: Sequence[tuple[str, bytes | None]]) -> int:
    """Bytes the headers take in a record: names (UTF-8), values and length prefixes."""
    return sum(
        len(name.encode("utf-8", "surrogatepass")) + len(value or b"") + _PER_HEADER_BYTES
        for name, value in headers
    )
