"""What a stored state value carries besides its payload: the input offset that wrote it
and the event time of its last update.

The same bytes go to the local store and to the changelog topic::

    version (u8) | input offset (i64) | seen_ms (i64) | payload (the codec's bytes)

The input offset is what restore compares with the committed offset (entries
at or past it belong to records not committed yet); ``seen_ms`` is what the
TTL runs from. A tombstone (no value) deletes a key that expired.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from streamfer.errors import StateError

FORMAT = 1
_HEADER = struct.Struct("<Bqq")
HEADER_BYTES = _HEADER.size


class Entry(NamedTuple):
    offset: int
    seen_ms: int
    payload: bytes


def pack_entry(offset: int, seen_ms: int, payload: bytes) -> bytes:
    return _HEADER.pack(FORMAT, offset, seen_ms) + payload


def unpack_head(value: bytes, where: str) -> tuple[int, int]:
    """``(input offset, seen_ms)`` of a stored value; StateError naming ``where`` if it is
    not one of ours."""
    if len(value) < HEADER_BYTES or value[0] != FORMAT:
        raise StateError(
            f"{where} | state entry of {len(value)} bytes starting {value[:1].hex() or 'empty'} "
            f"is not format {FORMAT}. Note: expected {HEADER_BYTES} header bytes "
            f"(version {FORMAT}, input offset, seen_ms) then the payload"
        )
    _, offset, seen_ms = _HEADER.unpack_from(value)
    return offset, seen_ms


def unpack_entry(value: bytes, where: str) -> Entry:
    offset, seen_ms = unpack_head(value, where)
    return Entry(offset, seen_ms, value[HEADER_BYTES:])
