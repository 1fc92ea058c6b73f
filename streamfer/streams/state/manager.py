"""The state of one stream: a view per assigned partition, restored before it is used,
and its changelog written once per flush interval (``StateCommitter``).

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

Coalesced changelog writes. ``write(batch, view)`` runs after a batch was
prepared and only *holds* the batch's span in its partition's current
*window* (:class:`~streams.state.changelog.Window`): the polls since the
partition's state was last flushed. ``flush()`` runs before a commit once the
flush interval has passed (:class:`StateCommitter` wraps the source's
committer; under exactly-once before every commit), before a revocation and
at close: per partition, each key the window updated gets one entry (its
value now, and the input offset of the last record of the window that
updated it), the entries are sent, and the window's spans are released at
the last acknowledgement. A key updated in 30 polls of a window costs one
encode, one produce and one delivery callback, not 30.

Why restore stays exact (at-least-once). Let window ``W`` hold the records
``a..b-1`` of a partition (every poll of it between two flushes: every
batch of a stateful stream goes through ``write``). Its entries carry
offsets ``o`` with ``a <= o < b``, and each key's entry holds the key's value
after *all* of ``W``'s records. The spans of ``W`` are held in one
:class:`~streams.tracker.SpanGroup` until the entries are acknowledged, and
the tracker passes a group's spans together. So a commit position ``C`` is
never strictly inside a window: ``C <= a`` or ``C >= b``, i.e. ``C`` is the
end of some window ``W_j`` (or the start). Restore keeps, per key, the entry
with the largest offset below ``C``: every entry of ``W_1..W_j`` is below
``C = b_j`` and every entry of a later window is at or past it, so per key
it keeps the entry of the last window up to ``W_j`` that updated the key,
which is the key's value after exactly the records before ``C``; keys no
window up to ``W_j`` updated are absent, as they should be. Without the
group the position could stop between two polls of ``W`` whose decisions
resolved in different order, and a key updated on both sides of ``C`` would
come back without its committed update (its one entry is at or past ``C``
and ignored). The offset itself only has to lie in ``a..b-1``; the last
update's is taken so that a later window's entry of the key always has the
larger offset. Exactly-once: the entries share the transaction with the
offsets, and the commit waits until nothing is in flight, so ``C`` is the
end of the flushed windows. A crash before an ack leaves the window's spans
held: nothing of it was committed, and all of it is consumed again.

Sweeps: at a flush, now and then, a TTL sweep of the local store adds
tombstones to the entries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from streamfer.errors import StreamferError
from streamfer.streams.client import ReaderClient, TopicPartition
from streamfer.streams.committer import Committer
from streamfer.streams.records import RecordBatch
from streamfer.streams.state.changelog import ChangelogWriter, Window
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


@dataclass(eq=False, slots=True, kw_only=True)
class StateManager(Generic[T]):
    """Views of the assigned partitions of one stream (see the module docstring).

    ``reader`` opens the changelog reader (on the first restore); ``committed`` gives the
    input partition's committed offset (the restore's stop point); ``topic_exists`` says
    whether the cluster has a topic (None: it could not be asked)."""

    stream: str
    input_topic: str
    codec: StateCodec[T]
    options: StateOptions
    writer: ChangelogWriter
    reader: Callable[[], ReaderClient]
    committed: Callable[[TopicPartition], int | None]
    listener: StateListener
    # whether the cluster has a topic (None: could not ask): a deleted changelog fails the
    # restore in seconds instead of after restore_timeout_s
    topic_exists: Callable[[str], bool | None]
    _reader: ReaderClient | None = field(default=None, init=False)
    _views: dict[int, StateView[T]] = field(default_factory=dict, init=False)
    _windows: dict[int, Window] = field(default_factory=dict, init=False)
    _pending: set[int] = field(default_factory=set, init=False)
    # revocation may come on a client's listener thread
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)
    _next_sweep: float = field(default=0.0, init=False)

    @property
    def changelog_topic(self) -> str:
        return self.writer.topic

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
                self._windows.pop(p, None)  # flushed before the committer's wait, or lost
                view = self._views.pop(p, None)
                if view is not None:
                    self._close(view, p)

    def rewound(self, tps: Collection[TopicPartition]) -> None:
        with self._lock:
            for t, p in tps:
                if t != self.input_topic:
                    continue
                self._windows.pop(p, None)  # its spans were abandoned
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
        """After ``prepare``: the batch joins its partition's window (see the module
        docstring); its entries go at the next ``flush``."""
        if batch.span is None:  # not tracked: nothing waits for its entries
            return
        window = self._windows.get(batch.partition)
        if window is None or (window.spans and not window.spans[0].alive):  # left by an abort
            window = self._windows[batch.partition] = Window()
        self.writer.hold(window, batch.span)

    def flush(self, skip: Collection[int] = ()) -> None:
        """Send each window's entries (partitions in ``skip``: left as they are); the
        windows' spans are released when their entries are acknowledged."""
        with self._lock:
            for partition in sorted(self._windows):
                if partition not in skip:
                    self._flush(partition)

    def _flush(self, partition: int) -> None:
        window = self._windows.pop(partition)
        view = self._views.get(partition)
        if view is None or not window.spans:  # discarded meanwhile: spans already abandoned
            return
        keys, values = view.flush(window.spans[-1].end)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.options.sweep_interval_s
            gone = view.sweep(self.options.sweep_keys)
            if gone:
                keys += gone
                values += [None] * len(gone)
                self.listener.state_expired(len(gone))
        self.writer.write(window, partition, keys, values)

    def forget_windows(self) -> None:
        """Drop the windows unsent (their spans were abandoned: an abort)."""
        with self._lock:
            self._windows.clear()

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
            self._reader = self.reader()
        return self._reader

    def _restore(self, partition: int) -> StateView[T]:
        if partition in self._windows:  # restored anew while held: what it wrote goes first
            self._flush(partition)
        old = self._views.pop(partition, None)
        if old is not None:
            old.discard()
        tp = (self.input_topic, partition)
        committed = self.committed(tp)
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
                exists=self.topic_exists,
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


class StateCommitter:
    """The source's committer with the state flushed first (see the module docstring):
    before a commit, before a revocation's wait and before the close's.

    ``flush_interval_s``: a periodic commit (``wait=False``) flushes only when that long
    has passed since the last flush, so a window spans several commit intervals (fewer
    entries: one per key a window updated). Its records are committed when it is
    flushed and acknowledged, so the commits trail by up to that long; restore stays
    exact, as a window is any run of polls (the module docstring). 0: every commit
    flushes, which exactly-once needs (the entries share each transaction). A commit
    with ``wait``, a revocation and the close always flush."""

    def __init__(
        self,
        inner: Committer,
        state: StateManager[Any],
        flush_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.state = state
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._next_flush = clock() + flush_interval_s

    def commit(self, wait: bool = True) -> dict[TopicPartition, int]:
        now = self._clock()
        if wait or now >= self._next_flush:
            self._next_flush = now + self.flush_interval_s
            self.state.flush()
        return self.inner.commit(wait)

    def on_revoke(self, tps: list[TopicPartition], lost: bool) -> Mapping[TopicPartition, int]:
        # lost partitions belong to another worker already: their windows are not sent
        skip = {p for t, p in tps if t == self.state.input_topic} if lost else set()
        self.state.flush(skip)
        return self.inner.on_revoke(tps, lost)

    def before_poll(self) -> bool:
        return self.inner.before_poll()

    def close(self, wait_s: float) -> None:
        self.state.flush()
        self.inner.close(wait_s)

    def abort(self) -> None:
        self.state.forget_windows()
        self.inner.abort()
