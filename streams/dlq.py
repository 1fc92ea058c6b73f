"""Dead letters: bad input goes to ``<topic>.dlq`` with the original bytes and the reason."""

from __future__ import annotations

from collections.abc import Callable

from streamfer.errors import CodecError
from streams.client import DeliveryCallback
from streams.records import Record
from streams.sink import KafkaSink

DLQ_SUFFIX = ".dlq"
MAX_MESSAGE_CHARS = 1000

# Header names added to every dead letter (the original headers come first).
ERROR_CLASS = "error-class"
ERROR_REASON = "error-reason"
ERROR_MESSAGE = "error-message"
SOURCE_TOPIC = "source-topic"
SOURCE_PARTITION = "source-partition"
SOURCE_OFFSET = "source-offset"
# Set (to "true") when the original record had no value at all: the dead letter then
# carries an empty value, since Kafka refuses a record with neither key nor value.
VALUE_NULL = "source-value-null"


def error_reason(error: BaseException) -> str:
    """The bounded reason label of an error: the CodecError reason, else ``unexpected``."""
    return error.reason if isinstance(error, CodecError) else "unexpected"


class DeadLetterWriter:
    """Writes a record that could not be processed, unchanged, plus error and source headers.

    ``topic`` fixes one dead-letter topic for every input; by default it is the
    input topic plus ``suffix``. Resolve the source record in ``on_delivery``.
    """

    def __init__(self, sink: KafkaSink, *, topic: str | None = None, suffix: str = DLQ_SUFFIX):
        self.sink = sink
        self.topic = topic
        self.suffix = suffix

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
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        headers = [
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
        return self.sink.send(
            self.topic_for(record.topic),
            value,
            record.key,
            headers,
            on_delivery,
            only_if=only_if,
        )
