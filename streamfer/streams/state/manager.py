"""The state of one stream: a view per assigned partition, restored before it is used.

:class:`StateManager` listens to the source's partition events:

* ``assigned`` marks partitions to restore; the consumer thread restores
  them (``restore_pending``, and ``view`` for a partition still pending)
  before the first record of the partition is prepared. With librdkafka the
  assignment arrives inside the consumer's poll on the consumer thread; with
  kafka-python on its own listener; either way only a mark is made there;
* ``revoked`` closes the partitions' views (after the committer waited for
  their records and committed): what the local store lacks is written and a
  checkpoint is left, so the next owner on this machine starts from it;
* ``rewound`` (an aborted transaction, a rewind to the committed offsets)
  discards the views: their state ran ahead of what will be consumed again,
  so those partitions are restored anew.

``write(batch, view)`` runs after a batch was prepared: the view's updated
keys go to the changelog (:class:`~streams.state.changelog.ChangelogWriter`),
and now and then a TTL sweep of the local store adds tombstones to them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from streamfer.errors import StreamferError
from streamfer.streams.client import ReaderClient, TopicPartition
from streamfer.streams.records import RecordBatch
from streamfer.streams.state.changelog import ChangelogWriter
from streamfer.streams.state.restore import restore
from streamfer.streams.state.store import LocalStore
from streamfer.streams.state.view import StateCodec, StateView

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class StateOptions:
    """Where and how a stream keeps its state (``pipeline.config.StateConfig`` fills it)."""

    dir: Path
    ttl_s: float | None
    cache_keys: int
    restore_timeout_s: float
    sweep_interval_s: float = 1.0
    sweep_keys: int = 2_000
    map_size_bytes: int = 1024 * 1024 * 1024


class StateListener(Protocol):
    """What the manager reports (the stream's metrics)."""

    def state_restored(self, partition: int, seconds: float, keys: int, source: str) -> None: ...

    def state_expired(self, n: int) -> None: ...


class StateManager(Generic[T]):
    """Views of the assigned partitions of one stream (see the module docstring)."""

    def __init__(
        self,
        *,
        stream: str,
        input_topic: str,
        codec: StateCodec[T],
        options: StateOptions,
        writer: ChangelogWriter,
        reader: Callable[[], ReaderClient],
        committed: Callable[[TopicPartition], int | None],
        listener: StateListener,
    ) -> None:
        self.stream = stream
        self.input_topic = input_topic
        self.codec = codec
        self.options = options
        self.writer = writer
        self.changelog_topic = writer.topic
        self._make_reader = reader
        self._committed = committed
        self.listener = listener
        self._reader: ReaderClient | None = None
        self._views: dict[int, StateView[T]] = {}
        self._pending: set[int] = set()
        self._lock = threading.RLock()  # revocation may come on a client's listener thread
        self._next_sweep = 0.0

    def path(self, partition: int) -> Path:
        return self.options.dir / f"p{partition}"

    # -- partition events (KafkaSource's listener) -----------------------------------------
    def assigned(self, tps: Collection[TopicPartition]) -> None:
        with self._lock:
            self._pending.update(p for t, p in tps if t == self.input_topic)

    def revoked(self, tps: Collection[TopicPartition], lost: bool) -> None:
        with self._lock:
            for t, p in tps:
                if t != self.input_topic:
                    continue
                self._pending.discard(p)
                view = self._views.pop(p, None)
                if view is not None:
                    self._close(view, p)

    def rewound(self, tps: Collection[TopicPartition]) -> None:
        with self._lock:
            for t, p in tps:
                if t != self.input_topic:
                    continue
                view = self._views.pop(p, None)
                if view is not None:
                    view.discard()
                    log.info("%s[%d] | state discarded after a rewind; restoring", t, p)
                self._pending.add(p)

    # -- the consumer thread ---------------------------------------------------------------
    def restore_pending(self) -> None:
        with self._lock:
            for partition in sorted(self._pending):
                self._restore(partition)

    def view(self, partition: int) -> StateView[T]:
        """The partition's view, restored first if it is not yet."""
        with self._lock:
            view = self._views.get(partition)
            if view is None or partition in self._pending:
                view = self._restore(partition)
            return view

    def write(self, batch: RecordBatch, view: StateView[T]) -> None:
        """After ``prepare``: the batch's entries (and due tombstones) to the changelog."""
        keys, values = view.flush(batch.offsets[-1] + 1)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.options.sweep_interval_s
            gone = view.sweep(self.options.sweep_keys)
            if gone:
                keys += gone
                values += [None] * len(gone)
                self.listener.state_expired(len(gone))
        if keys and batch.span is not None:
            self.writer.write(batch.span, batch.partition, keys, values)

    def close(self) -> None:
        """Close every view (with checkpoints) and the reader: the stream stops."""
        with self._lock:
            for partition, view in sorted(self._views.items()):
                self._close(view, partition)
            self._views.clear()
            self._pending.clear()
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # -- internals -------------------------------------------------------------------------
    def _reader_client(self) -> ReaderClient:
        if self._reader is None:
            self._reader = self._make_reader()
        return self._reader

    def _restore(self, partition: int) -> StateView[T]:
        old = self._views.pop(partition, None)
        if old is not None:
            old.discard()
        tp = (self.input_topic, partition)
        committed = self._committed(tp)
        # no committed offset: nothing was committed, every entry is ahead of it
        start = 0 if committed is None else committed
        store = LocalStore(self.path(partition), self.options.map_size_bytes).open()
        try:
            done = restore(
                store,
                self._reader_client(),
                (self.changelog_topic, partition),
                start,
                timeout_s=self.options.restore_timeout_s,
            )
        except BaseException:
            store.close()
            raise
        ttl_ms = None if self.options.ttl_s is None else int(self.options.ttl_s * 1000)
        view = StateView(
            f"{self.input_topic}[{partition}]",
            store,
            self.codec,
            ttl_ms=ttl_ms,
            cache_keys=self.options.cache_keys,
            next_offset=start,
        )
        self._views[partition] = view
        self._pending.discard(partition)
        log.info(
            "%s[%d] | state restored from %s: %s keys in %.2f s (%s changelog records read, "
            "%s at or past the committed offset %d ignored)",
            self.input_topic,
            partition,
            done.source,
            f"{done.keys:,}",
            done.seconds,
            f"{done.read:,}",
            f"{done.ignored:,}",
            start,
        )
        self.listener.state_restored(partition, done.seconds, done.keys, done.source)
        return view

    def _close(self, view: StateView[T], partition: int) -> None:
        """Close with a checkpoint at the changelog's end; without one if that is unknown
        (the next restore then reads the whole changelog)."""
        end: int | None = None
        try:
            end = self._reader_client().offsets((self.changelog_topic, partition), 10.0)[1]
        except StreamferError as exc:
            log.warning("%s[%d] | no state checkpoint (%s)", self.input_topic, partition, exc)
        try:
            view.close(end)
        except StreamferError as exc:
            log.warning("%s[%d] | closing the state store: %s", self.input_topic, partition, exc)
