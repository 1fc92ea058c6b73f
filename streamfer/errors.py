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


class CodecError(StreamferError):
    """A record could not be decoded or failed validation.

    ``reason`` is a short, bounded code (``corrupt_image``, ``too_large``,
    ``bad_json``, ``bad_shape``, ...) used as a metric label and in the DLQ.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StreamError(StreamferError):
    """Kafka could not be reached or refused an operation."""


class BrokerError(StreamError):
    """The local Kafka broker could not be prepared, started or stopped."""


class StateError(StreamferError):
    """Per-key state could not be stored, restored or read back."""
