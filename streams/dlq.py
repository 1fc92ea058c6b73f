"""Dead letters: bad input goes to ``<topic>.dlq`` with the original bytes and the reason.

A dead letter is always publishable: a record without a value (a tombstone)
is written with an empty value and ``source-value-null: true`` (Kafka refuses
a record with neither key nor value), and a value larger than the dead-letter
topic accepts is cut to fit, with ``source-value-truncated`` giving the
original size in bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from streamfer.errors import CodecError
from streams.client import DeliveryCallback
from streams.records import Record
from streams.sink import KafkaSink

DLQ_SUFFIX = ".dlq"
MAX_MESSAGE_CHARS = 1000
# Room kept for the key, headers and record framing when a value is cut to fit.
_OVERHEAD_BYTES = 8 * 1024

# Header names added to every dead letter (the original headers come first).
ERROR_CLASS = "error-class"
ERROR_REASON = "error-reason"
ERROR_MESSAGE = "error-message"
SOURCE_TOPIC = "source-topic"
SOURCE_PARTITION = "source-partition"
SOURCE_OFFSET = "source-offset"
VALUE_NULL = "source-value-null"  # "true": the original record had no value at all
VALUE_TRUNCATED = "source-value-truncated"  # the original value's size in bytes


def short(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def error_reason(error: BaseException) -> str:
    """The bounded reason label of an error: the CodecError reason, else ``internal_error``."""
    return error.reason if isinstance(error, CodecError) else "internal_error"


class DeadLetterWriter:
    """Writes a record that could not be processed, unchanged, plus error and source headers.

    ``topic`` fixes one dead-letter topic for every input; by default it is the
    input topic plus ``suffix``. ``max_message_bytes``: what the dead-letter topic
    accepts (its ``max.message.bytes``, capped by the producer's own limit); larger
    values are truncated to fit. Resolve the source record in ``on_delivery``.
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
        self.max_value_bytes = max(0, min(limit, sink.options.max_request_size) - _OVERHEAD_BYTES)

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
        headers: list[tuple[str, bytes | None]] = [
            *record.headers,
            (ERROR_CLASS, type(error).__name__.encode()),
            (ERROR_REASON, (reason or error_reason(error)).encode()),
            (ERROR_MESSAGE, message.encode("utf-8", "replace")),
            (SOURCE_TOPIC, record.topic.encode()),
            (SOURCE_PARTITION, str(record.partition).encode()),
            (SOURCE_OFFSET, str(record.offset).encode()),
        ]
        value = record.value
        if value is None:
            value = b""
            headers.append((VALUE_NULL, b"true"))
        elif len(value) > self.max_value_bytes:
            headers.append((VALUE_TRUNCATED, str(len(value)).encode()))
            value = value[: self.max_value_bytes]
        return self.sink.send(
            self.topic_for(record.topic),
            value,
            record.key,
            headers,  # type: ignore[arg-type]
            on_delivery,
            only_if=only_if,
        )
