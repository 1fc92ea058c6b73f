"""Building records for codec tests (imported as a plain module: tests/ is not a package)."""

from __future__ import annotations

from collections.abc import Sequence

from streamfer.streams.records import Record


def make_record(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] = (),
    *,
    topic: str = "in",
    partition: int = 0,
    offset: int = 7,
    key: bytes | None = b"k",
) -> Record:
    return Record(topic, partition, offset, key, value, tuple(headers), 1_700_000_000_000, 0)
