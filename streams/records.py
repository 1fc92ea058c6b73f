"""The record every streamfer stage passes around: one Kafka message, as consumed."""

from __future__ import annotations

import time
from typing import NamedTuple

# Wall clock minus monotonic clock, measured once: turns a monotonic poll time
# into epoch milliseconds without a second clock read per record.
_WALL_MINUS_MONO_NS = time.time_ns() - time.monotonic_ns()


class Record(NamedTuple):
    """One consumed Kafka message (immutable; a NamedTuple because it is built per record).

    ``timestamp_ms`` is the Kafka record timestamp (epoch ms, event/produce time);
    ``consumed_ns`` is ``time.monotonic_ns()`` when the consumer handed it out.
    ``generation`` is the tracking generation of its partition when
    ``KafkaSource.poll`` returned it (None for a record not from a source): a record
    abandoned by a revocation or an abort never resolves a re-polled copy.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    consumed_ns: int
    generation: int | None = None

    @property
    def coords(self) -> str:
        """``topic[partition]@offset``, the way every message names a record."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def consumed_wall_ms(self) -> int:
        """Epoch milliseconds at which the record was consumed."""
        return (self.consumed_ns + _WALL_MINUS_MONO_NS) // 1_000_000

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        found = None
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                found = value
        return found


def coords(topic: str, partition: int, offset: int) -> str:
    """``topic[partition]@offset`` without a Record at hand."""
    return f"{topic}[{partition}]@{offset}"
