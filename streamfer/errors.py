"""One exception root for streamfer, with a few meaningful children.

Messages read ``subject | problem. Note: expectation`` and echo the bad value.
"""

from __future__ import annotations


class StreamferError(Exception):
    """Root of every error streamfer raises on purpose."""


class ConfigError(StreamferError):
    """A configuration file or option is invalid."""


class EngineError(StreamferError):
    """An engine could not be built, loaded or run, or was fed bad tensors."""


class RecordInferenceError(EngineError):
    """Inference failed on one record run alone, while the rest of its batch was decided:
    the record is dead-lettered with ``reason`` ``engine_error``."""

    reason = "engine_error"


class CodecError(StreamferError):
    """A record could not be decoded or failed validation.

    ``reason`` is a short, bounded code (``corrupt_image``, ``too_large``,
    ``bad_json``, ``bad_shape``, ...) used as a metric label and in the DLQ.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProcessorError(CodecError):
    """Processor code failed for a record: it raised, or broke the processor contract.

    The record goes to the dead-letter topic with ``reason`` (``processor_error`` for
    plug-in code, ``internal_error`` for streamfer's own); ``error_class`` names the
    exception the processor raised (the dead letter's ``error-class`` header), so a
    plug-in author sees ``KeyError``, not the wrapper.
    """

    def __init__(
        self, message: str, reason: str = "processor_error", error_class: str | None = None
    ) -> None:
        super().__init__(message, reason)
        self.error_class = error_class or type(self).__name__


class StreamError(StreamferError):
    """Kafka could not be reached or refused an operation."""


class BrokerError(StreamError):
    """The local Kafka broker could not be prepared, started or stopped."""


class StateError(StreamferError):
    """Per-key state could not be stored, restored or read back."""
