"""One partition's state on local disk: an LMDB environment of key -> entry bytes.

LMDB was chosen by measurement (bench/RESULTS.md, "State store"): on this
workload (a few hundred keys read and written per batch, values of a few
hundred bytes) it reads a key in about 0.8 us and writes one in 1.2 us from
Python, where RocksDB through rocksdict took 1.8 and 1.6 us, and it runs no
background compaction threads to compete with the pipeline for the cores.

Writes are not synced to disk (``sync=False``): a process crash keeps them
(the page cache survives it), a machine crash may lose the last ones, and
neither matters for correctness because the store is only trusted when a
clean close left a :class:`Checkpoint` in it; otherwise restore rebuilds it
from the changelog topic. The checkpoint is removed when the store is opened
for use, so a crash always leaves a store without one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lmdb

from streamfer.errors import StateError

_CHECKPOINT = b"checkpoint"
_MIN_MAP_BYTES = 64 * 1024 * 1024


class Checkpoint(NamedTuple):
    """What a clean close leaves: the store holds the state after every input record
    before ``next_offset`` (and none after), and every changelog entry it reflects lies
    before changelog offset ``changelog_end``."""

    next_offset: int
    changelog_end: int


class LocalStore:
    """Key -> entry bytes of one (stream, partition) in ``path`` (an LMDB directory).

    Used from one thread at a time; nothing touches the disk before ``open()``.
    """

    def __init__(self, path: Path, map_size_bytes: int = 1024 * 1024 * 1024) -> None:
        self.path = path
        self.map_size_bytes = max(map_size_bytes, _MIN_MAP_BYTES)
        self._env: Any = None
        self._data: Any = None
        self._meta: Any = None

    def open(self) -> LocalStore:
        if self._env is None:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                self._env = lmdb.open(
                    str(self.path),
                    map_size=self.map_size_bytes,
                    max_dbs=2,
                    sync=False,  # see the module docstring: the changelog is the durable copy
                    metasync=False,
                    readahead=False,  # random reads of a store larger than memory
                    writemap=True,  # dirty pages are the file's own: no copy per write
                )
            except (lmdb.Error, OSError) as exc:
                raise StateError(
                    f"{self.path} | cannot open the state store: {exc}. "
                    "Note: state.dir must be a writable local directory"
                ) from exc
            self._data = self._env.open_db(b"data")
            self._meta = self._env.open_db(b"meta")
        return self

    def close(self) -> None:
        env, self._env = self._env, None
        if env is not None:
            env.sync(True)
            env.close()

    def __enter__(self) -> LocalStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def env(self) -> Any:
        if self._env is None:
            raise StateError(f"{self.path} | state store used before open()")
        return self._env

    def __len__(self) -> int:
        with self.env.begin(db=self._data) as txn:
            return int(txn.stat(self._data)["entries"])

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        with self.env.begin(db=self._data) as txn:
            get = txn.get
            return [get(k) for k in keys]

    def get(self, key: bytes) -> bytes | None:
        return self.get_many([key])[0]

    def write(self, puts: Sequence[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()) -> None:
        """Put and delete in one transaction; the map grows when it is full."""
        deletes = list(deletes)
        if not puts and not deletes:
            return
        while True:
            try:
                with self.env.begin(write=True, db=self._data) as txn:
                    if puts:  # in key order: B-tree pages are then written once each
                        txn.cursor().putmulti(sorted(puts))
                    for key in deletes:
                        txn.delete(key)
                return
            except lmdb.MapFullError:
                self._grow()

    def _grow(self) -> None:
        size = int(self.env.info()["map_size"]) * 2
        self.env.set_mapsize(size)
        self.map_size_bytes = size

    def scan(self, after: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` entries in key order from the first key past ``after``."""
        out: list[tuple[bytes, bytes]] = []
        with self.env.begin(db=self._data) as txn:
            cursor = txn.cursor()
            found = cursor.set_range(after) if after is not None else cursor.first()
            if found and after is not None and cursor.key() == after:
                found = cursor.next()
            while found and len(out) < limit:
                out.append((bytes(cursor.key()), bytes(cursor.value())))
                found = cursor.next()
        return out

    def checkpoint(self) -> Checkpoint | None:
        with self.env.begin(db=self._meta) as txn:
            raw = txn.get(_CHECKPOINT)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            return Checkpoint(int(doc["next_offset"]), int(doc["changelog_end"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: as if there were none (a full restore follows)

    def set_checkpoint(self, checkpoint: Checkpoint | None) -> None:
        """Write ``checkpoint`` (None: remove it), synced: a later crash must not find
        a checkpoint the data no longer matches."""
        with self.env.begin(write=True, db=self._meta) as txn:
            if checkpoint is None:
                txn.delete(_CHECKPOINT)
            else:
                txn.put(_CHECKPOINT, json.dumps(checkpoint._asdict()).encode())
        self.env.sync(True)

    def wipe(self) -> None:
        """Drop every entry and the checkpoint."""
        with self.env.begin(write=True) as txn:
            txn.drop(self._data, delete=False)
            txn.drop(self._meta, delete=False)

    def destroy(self) -> None:
        """Close and remove the store's directory."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
