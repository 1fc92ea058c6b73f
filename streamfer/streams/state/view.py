"""The state of one (stream, partition) as a processor sees it: a cache over the local store.

A processor reads values by key (``get_many``), adds new ones (``put``),
changes the objects it got in place, and says which keys a batch updated and
at which input offset (``updated``). After ``prepare`` the pipeline calls
``flush``: every updated key is encoded once (``codec.encode``) into an entry
that carries the offset of the last record that updated it, and those entries
go to the changelog topic (the caller sends them). The local store is written
behind: an entry reaches it when its key leaves the cache (the cache holds at
most ``cache_keys`` keys, least recently updated leave first) or when the
view closes, so a key updated in every batch costs one encode per batch and
no disk write.

TTL: a value whose last update (``codec.seen_ms``, event time) is ``ttl_ms``
or more before the reading record's own time (``now_ms``) reads as absent, so
whether a key expired never depends on batching or on when a sweep ran.
``sweep`` deletes such entries from the local store by the partition's
stream time (the newest ``seen_ms`` flushed) and returns the keys to
tombstone in the changelog. A record more than ``ttl_ms`` older than the
partition's newest may find a key already swept that it would have read as
present: the one case where expiry depends on timing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from streamfer.errors import StateError
from streamfer.streams.state.entry import HEADER_BYTES, pack_entry, unpack_head
from streamfer.streams.state.store import Checkpoint, LocalStore

T = TypeVar("T")


class StateCodec(Protocol[T]):
    """How a processor's per-key value becomes bytes and back (exactly: restored state
    must give the same results as state that never left memory)."""

    def encode(self, value: T) -> bytes: ...

    def decode(self, payload: bytes) -> T: ...

    def seen_ms(self, value: T) -> int:
        """Event time (epoch ms) of the value's last update: the TTL runs from it."""
        ...


class _Slot:
    __slots__ = ("pending", "value")

    def __init__(self, value: object, pending: bytes | None = None) -> None:
        self.value = value
        self.pending = pending  # entry bytes the local store does not have yet


class StateView(Generic[T]):
    """Per-key values of one partition (see the module docstring). One thread uses it."""

    def __init__(
        self,
        name: str,
        store: LocalStore,
        codec: StateCodec[T],
        *,
        ttl_ms: int | None,
        cache_keys: int,
        next_offset: int,
    ) -> None:
        self.name = name  # topic[partition], for messages
        self.store = store
        self.codec = codec
        self.ttl_ms = ttl_ms
        self.cache_keys = max(1, cache_keys)
        self.next_offset = next_offset  # the state reflects every input record before it
        self.stream_time_ms = 0  # the newest seen_ms flushed: what sweeps expire by
        self._cache: OrderedDict[str, _Slot] = OrderedDict()
        self._dirty: dict[str, int] = {}
        self._sweep_after: bytes | None = None

    # -- reads and writes (the processor) -------------------------------------------------
    def get_many(self, keys: Sequence[str], now_ms: Sequence[int] | None = None) -> list[T | None]:
        """The value of each key (None: absent or expired at ``now_ms[i]``)."""
        cache = self._cache
        slots = [cache.get(k) for k in keys]
        if None in slots:
            self._load([k for k, s in zip(keys, slots, strict=True) if s is None])
            slots = [s if s is not None else cache.get(k) for k, s in zip(keys, slots, strict=True)]
        values: list[T | None] = [s.value if s is not None else None for s in slots]  # type: ignore[misc]
        ttl = self.ttl_ms
        if ttl is not None and now_ms is not None:
            seen = self.codec.seen_ms
            for i, value in enumerate(values):
                if value is not None and seen(value) + ttl <= now_ms[i]:
                    values[i] = None
        return values

    def _load(self, keys: list[str]) -> None:
        """Missing keys from the local store into the cache (decoded once)."""
        wanted = list(dict.fromkeys(keys))
        found = self.store.get_many([k.encode() for k in wanted])
        decode = self.codec.decode
        for key, raw in zip(wanted, found, strict=True):
            if raw is not None:
                self._cache[key] = _Slot(decode(bytes(raw[HEADER_BYTES:])))

    def put(self, key: str, value: T) -> None:
        """A new value for ``key`` (a first-seen or expired key); say ``updated`` too."""
        self._cache[key] = _Slot(value)

    def updated(self, keys: Sequence[str], offsets: Sequence[int]) -> None:
        """Keys a record changed, each with its record's input offset (the last one wins)."""
        self._dirty.update(zip(keys, offsets, strict=True))

    def __len__(self) -> int:
        """Keys in the cache (the local store holds the rest)."""
        return len(self._cache)

    # -- the pipeline ----------------------------------------------------------------------
    def flush(self, next_offset: int) -> tuple[list[bytes], list[bytes | None]]:
        """The batch that ends before ``next_offset`` is done: its updated keys as changelog
        (keys, entries); keys that left the cache are written to the local store."""
        dirty, self._dirty = self._dirty, {}
        self.next_offset = next_offset
        if not dirty:
            return [], []
        cache, encode, seen = self._cache, self.codec.encode, self.codec.seen_ms
        keys: list[bytes] = []
        values: list[bytes | None] = []
        newest = self.stream_time_ms
        for key, offset in dirty.items():
            slot = cache.get(key)
            if slot is None:
                raise StateError(
                    f"{self.name} | key {key!r} updated at offset {offset} but neither read nor "
                    "put. Note: a processor updates values it got from get_many or put"
                )
            value = slot.value
            seen_ms = seen(value)  # type: ignore[arg-type]
            newest = max(newest, seen_ms)
            slot.pending = entry = pack_entry(offset, seen_ms, encode(value))  # type: ignore[arg-type]
            cache.move_to_end(key)
            keys.append(key.encode())
            values.append(entry)
        self.stream_time_ms = newest
        self._trim()
        return keys, values

    def _trim(self) -> None:
        cache = self._cache
        over = len(cache) - self.cache_keys
        if over <= 0:
            return
        puts = []
        for _ in range(over):
            key, slot = cache.popitem(last=False)
            if slot.pending is not None:
                puts.append((key.encode(), slot.pending))
        self.store.write(puts)

    def sweep(self, limit: int) -> list[bytes]:
        """Delete up to ``limit`` scanned local entries that expired by stream time; the
        keys to tombstone. Scans resume where the last one stopped, round and round."""
        if self.ttl_ms is None or not self.stream_time_ms:
            return []
        chunk = self.store.scan(self._sweep_after, limit)
        self._sweep_after = chunk[-1][0] if len(chunk) == limit else None
        horizon = self.stream_time_ms - self.ttl_ms
        cache = self._cache
        gone = [
            key
            for key, raw in chunk
            if unpack_head(raw, self.name)[1] <= horizon and key.decode() not in cache
        ]
        self.store.write([], gone)
        return gone

    def close(self, changelog_end: int | None) -> None:
        """Write what the local store lacks and close it; with ``changelog_end`` (every
        entry of this view lies before that changelog offset) leave a checkpoint, so the
        next restore can start from the store."""
        puts = [(k.encode(), s.pending) for k, s in self._cache.items() if s.pending is not None]
        self._cache.clear()
        self.store.write(puts)
        if changelog_end is not None:
            self.store.set_checkpoint(Checkpoint(self.next_offset, changelog_end))
        self.store.close()

    def discard(self) -> None:
        """Forget the cache and close without a checkpoint (the state ran ahead of what
        will be replayed: the next restore rebuilds it)."""
        self._cache.clear()
        self._dirty.clear()
        self.store.close()
