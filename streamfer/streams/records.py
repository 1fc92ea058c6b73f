"""What a poll hands out: a :class:`RecordBatch` per partition, and per-record views.

The host path works batch-at-a-time: one poll of one partition stays together
as a :class:`RecordBatch` (offsets, keys, values, headers and timestamps as
parallel lists) through decoding, featurizing, the engine and publishing.
:class:`Record` is the per-record view of one row, built only where per-record
work is unavoidable (camera decode, a dead letter, an error message).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from streamfer.streams.tracker import Span

# Wall clock minus monotonic clock, measured once: turns a monotonic poll time
# into epoch milliseconds without a second clock read per record.
_WALL_MINUS_MONO_NS = time.time_ns() - time.monotonic_ns()

Headers = tuple[tuple[str, bytes | None], ...]  # a header value may be null


def wall_ms(monotonic_ns: int) -> int:
    """Epoch milliseconds of a ``time.monotonic_ns()`` reading."""
    return (monotonic_ns + _WALL_MINUS_MONO_NS) // 1_000_000


class Record(NamedTuple):
    """One consumed Kafka message (immutable).

    ``value`` is None for a tombstone. ``timestamp_ms`` is the Kafka record
    timestamp (epoch ms); ``consumed_ns`` is ``time.monotonic_ns()`` when the
    poll returned. ``span``/``row``: the tracker's handle of the poll this
    record came with and its row in it (None for a record not from a source):
    resolving goes through them, and a record abandoned by a revocation or an
    abort never resolves a re-polled copy of the same offset.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    consumed_ns: int
    span: Span | None = None
    row: int = 0

    @property
    def coords(self) -> str:
        """``topic[partition]@offset``, the way every message names a record."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def consumed_wall_ms(self) -> int:
        """Epoch milliseconds at which the record was consumed."""
        return wall_ms(self.consumed_ns)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        return find_header(self.headers, name)


def find_header(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> bytes | None:
    """The last value of header ``name`` (case-insensitive) in ``headers``, or None.

    A header present with a null value reads as absent.
    """
    found = None
    if headers:
        lname = name.lower()
        for key, value in headers:
            if key.lower() == lname:
                found = value
    return found


def coords(topic: str, partition: int, offset: int) -> str:
    """``topic[partition]@offset`` without a Record at hand."""
    return f"{topic}[{partition}]@{offset}"


@dataclass(slots=True, eq=False)
class RecordBatch:
    """The records one poll returned for one partition, in offset order.

    Parallel lists, one entry per record; ``headers[i]`` is None or empty when
    record ``i`` has none. ``consumed_ns`` is one monotonic reading for the
    whole poll. ``span`` is set by ``KafkaSource.poll`` (the tracker's handle).
    """

    topic: str
    partition: int
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[Sequence[tuple[str, bytes | None]] | None]
    timestamps_ms: list[int]
    consumed_ns: int
    span: Span | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[Record]:
        return (self.record(i) for i in range(len(self.offsets)))

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def consumed_wall_ms(self) -> int:
        return wall_ms(self.consumed_ns)

    def coords(self, i: int) -> str:
        return f"{self.topic}[{self.partition}]@{self.offsets[i]}"

    def record(self, i: int) -> Record:
        """The per-record view of row ``i``."""
        headers = self.headers[i]
        return Record(
            self.topic,
            self.partition,
            self.offsets[i],
            self.keys[i],
            self.values[i],
            tuple(headers) if headers else (),
            self.timestamps_ms[i],
            self.consumed_ns,
            self.span,
            i,
        )

    def header(self, i: int, name: str) -> bytes | None:
        return find_header(self.headers[i], name)

    def broker_ms(self) -> np.ndarray:
        """Per record: Kafka timestamp -> consumed, in ms (float64, never negative)."""
        ts = np.asarray(self.timestamps_ms, dtype=np.int64)
        return np.maximum(self.consumed_wall_ms - ts, 0).astype(np.float64)

    @classmethod
    def of(cls, records: Sequence[Record]) -> RecordBatch:
        """A batch from records of one partition (tests, tools, replays)."""
        if not records:
            raise ValueError("RecordBatch.of | no records. Note: expected at least one")
        first = records[0]
        return cls(
            first.topic,
            first.partition,
            [r.offset for r in records],
            [r.key for r in records],
            [r.value for r in records],
            [r.headers for r in records],
            [r.timestamp_ms for r in records],
            first.consumed_ns,
        )
