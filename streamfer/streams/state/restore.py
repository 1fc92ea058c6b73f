"""Restore: bring a partition's local store to the state after exactly the committed records.

Every entry carries the input offset of the record that wrote it. Given the
input partition's committed offset ``C``, the state is, per key, the entry
with the largest input offset below ``C`` (ties: the later one in the
changelog; a tombstone deletes the key whatever its position, since an
expired key reads as absent anyway). Entries at or past ``C`` belong to
records that will be consumed again, and are ignored: replayed records
re-apply their updates exactly once. The largest offset, not the last entry
in the changelog, wins, so a late write of a worker that lost the partition
(a zombie) cannot roll a key back.

Where to start (:func:`plan`):

* the store has a :class:`~streams.state.store.Checkpoint` (left by a clean
  close) whose ``next_offset`` is ``C``: it is current, nothing is read;
* its ``next_offset`` is below ``C`` (another worker went on meanwhile): the
  changelog is read from the checkpoint's ``changelog_end`` on, over the store;
* otherwise (no checkpoint: a crash, or ``next_offset`` past ``C``: records
  the store reflects were not committed): the store is wiped and the whole
  changelog is read.

The changelog is read with ``read_committed`` up to its high watermark as of
the start, so entries of aborted transactions never count, and an open
transaction (a crashed exactly-once worker's) holds the restore until it is
resolved (at most the producer's ``transaction.timeout.ms``).

A changelog the cluster says does not exist (deleted while its pipeline ran)
fails the restore once the cluster has said so for ``MISSING_GRACE_S``, with a
message saying what to do, rather than after the whole restore timeout: the
offsets are asked for in short attempts, and between them whether the topic
exists (``exists``; None where that cannot be asked, which waits as before).

What the changelog must still hold for this to be exact: for each key, its
newest entry below ``C``. Compaction keeps the newest entry per key, which
after a crash may be one at or past ``C``; the topic's
``min.compaction.lag.ms`` keeps every entry younger than the lag, so the
older committed entry survives as long as the entries past ``C`` are younger
than the lag, i.e. as long as a partition is restored within the lag (minus
the commit interval) after its owner stopped. Past that, a key whose newest
entries were uncommitted may come back older or absent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from streamfer.errors import StateError, StreamError
from streamfer.streams.client import ReaderClient, TopicPartition
from streamfer.streams.state.entry import unpack_head
from streamfer.streams.state.store import Checkpoint, LocalStore

log = logging.getLogger(__name__)

_POLL_S = 0.05  # librdkafka waits this long unless a whole chunk is there
_CHUNK = 10_000
_ATTEMPT_S = 2.0  # one ask for a changelog partition's offsets
MISSING_GRACE_S = 10.0  # a topic created a moment ago may be missing from some brokers' view


class Plan(NamedTuple):
    source: str  # "local", "local+changelog" or "changelog"
    start: int | None  # changelog offset to read from; None: read nothing
    wipe: bool


def plan(checkpoint: Checkpoint | None, committed: int, first: int, end: int) -> Plan:
    """Where a restore starts (see the module docstring); ``first``/``end``: the changelog
    partition's first kept offset and high watermark."""
    if checkpoint is not None and first <= checkpoint.changelog_end <= end:
        if checkpoint.next_offset == committed:
            return Plan("local", None, wipe=False)
        if checkpoint.next_offset < committed:
            return Plan("local+changelog", checkpoint.changelog_end, wipe=False)
    return Plan("changelog", first, wipe=True)


class Merge:
    """Applies changelog records to a store by the rule of the module docstring."""

    def __init__(self, store: LocalStore, committed: int, where: str) -> None:
        self.store = store
        self.committed = committed
        self.where = where
        self.read = 0
        self.ignored = 0  # entries at or past the committed offset

    def apply(self, keys: Sequence[bytes | None], values: Sequence[bytes | None]) -> None:
        self.read += len(keys)
        newest: dict[bytes, tuple[int, bytes | None]] = {}  # key -> (offset, entry or None)
        committed, where = self.committed, self.where
        for key, value in zip(keys, values, strict=True):
            if key is None:
                continue  # not ours: every entry has a key
            if value is None:
                newest[key] = (-1, None)
                continue
            offset = unpack_head(value, where)[0]
            if offset >= committed:
                self.ignored += 1
                continue
            seen = newest.get(key)
            if seen is None or seen[1] is None or seen[0] <= offset:
                newest[key] = (offset, value)
        if not newest:
            return
        live = [k for k, (_, v) in newest.items() if v is not None]
        stored = self.store.get_many(live)
        puts = []
        for key, old in zip(live, stored, strict=True):
            offset, value = newest[key]
            if old is None or unpack_head(old, where)[0] <= offset:
                puts.append((key, value))
        deletes = [k for k, (_, v) in newest.items() if v is None]
        self.store.write(puts, deletes)  # type: ignore[arg-type]


class Restored(NamedTuple):
    source: str
    keys: int
    read: int
    ignored: int
    seconds: float


def restore(
    store: LocalStore,
    reader: ReaderClient,
    changelog: TopicPartition,
    committed: int,
    *,
    timeout_s: float,
    progress_every_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    exists: Callable[[str], bool | None] = lambda topic: None,
) -> Restored:
    """Make the (open) ``store`` hold the state after exactly the records before
    ``committed``; the store's checkpoint is removed (it is in use from now on).
    ``exists``: whether the cluster has a topic (None: could not ask)."""
    started = clock()
    where = f"{changelog[0]}[{changelog[1]}]"
    first, end = _offsets(reader, changelog, timeout_s, exists, clock)
    checkpoint = store.checkpoint()
    how = plan(checkpoint, committed, first, end)
    store.set_checkpoint(None)
    if how.wipe:
        store.wipe()
    merge = Merge(store, committed, where)
    if how.start is not None and how.start < end:
        _read(reader, changelog, how.start, end, merge, timeout_s, progress_every_s, clock)
    return Restored(how.source, len(store), merge.read, merge.ignored, clock() - started)


def _offsets(
    reader: ReaderClient,
    tp: TopicPartition,
    timeout_s: float,
    exists: Callable[[str], bool | None],
    clock: Callable[[], float],
) -> tuple[int, int]:
    """``reader.offsets(tp)`` within ``timeout_s``; StateError once the cluster has said for
    MISSING_GRACE_S that the topic does not exist."""
    deadline = clock() + timeout_s
    missing_since: float | None = None
    while True:
        try:
            return reader.offsets(tp, min(_ATTEMPT_S, max(0.1, deadline - clock())))
        except StreamError as exc:
            now = clock()
            if now >= deadline:
                raise
            if exists(tp[0]) is not False:
                missing_since = None
                continue
            missing_since = now if missing_since is None else missing_since
            if now - missing_since >= MISSING_GRACE_S:
                raise StateError(
                    f"{tp[0]}[{tp[1]}] | the state changelog topic {tp[0]!r} does not exist, or "
                    f"this client may not describe it (the cluster said so for "
                    f"{now - missing_since:.0f} s; was it deleted?). "
                    "Note: restarting the pipeline creates it again, empty, and the stream's "
                    "keys then start with no state; to keep the state, restore the topic from "
                    "a copy before restarting"
                ) from exc


def _read(
    reader: ReaderClient,
    tp: TopicPartition,
    start: int,
    end: int,
    merge: Merge,
    timeout_s: float,
    progress_every_s: float,
    clock: Callable[[], float],
) -> None:
    where = f"{tp[0]}[{tp[1]}]"
    reader.assign(tp, start)
    total = end - start
    position = start
    moved = next_log = clock()
    while position < end:
        for batch in reader.poll(_POLL_S, _CHUNK):
            merge.apply(batch.keys, batch.values)
        now_pos = reader.position(tp)
        now = clock()
        if now_pos > position:
            position, moved = now_pos, now
        elif now - moved > timeout_s:
            raise StateError(
                f"{where} | restore stalled at offset {position} of {start}..{end} for "
                f"{timeout_s:g} s. Note: an open transaction of a stopped exactly-once worker "
                "holds read_committed readers until it times out (transaction.timeout.ms); "
                "state.restore_timeout_s must exceed it"
            )
        if now >= next_log and position < end:
            next_log = now + progress_every_s
            done = max(0, position - start)
            log.info(
                "%s | restoring state: %s of %s changelog records (%d%%)",
                where,
                f"{done:,}",
                f"{total:,}",
                100 * done // max(total, 1),
            )
