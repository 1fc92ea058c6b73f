"""A stream's ``state`` section: the per-key store and its changelog topic."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field

from streamfer.pipeline.config.base import Frozen

DEFAULT_FLUSH_INTERVAL_MS = 1000  # entries per record fall with the window (docs/state.md)


class StateConfig(Frozen):
    """Per-key state kept in a local store per partition and a compacted changelog topic
    (``<consumer.group_id>.<stream>.state``), restored on assignment, so a restart or a
    rebalance continues from the state after exactly the committed records
    (``streamfer.streams.state``). Without it (``enabled: false``) a stateful processor keeps its
    state in memory only: after a restart every key starts afresh.

    ``dir``: where the local stores live (``<dir>/<group>.<stream>/w<worker>/p<partition>``;
    default ``<system temp dir>/streamfer-state``; relative to the config file's
    directory). ``ttl_s``: a key not updated for that long (event time) is forgotten and
    deleted (null: never). ``cache_keys``: decoded values held in memory per partition.
    ``min_compaction_lag_s``: the changelog keeps every entry that long; a partition
    restored later than that after its worker stopped may lose the updates of its last
    uncommitted records' keys (see ``streamfer.streams.state.restore``). ``restore_timeout_s``: a
    restore that makes no progress that long fails the stream. ``flush_interval_ms``
    (at-least-once only): how long the changelog's entries are coalesced, one per key
    updated in that time; the stream's commits trail by up to that long, so a crash
    replays up to that much more (``StateCommitter``).
    """

    enabled: bool = False
    """Keep per-key state in a local store backed by a compacted changelog topic; false: in memory
    only."""
    dir: Path | None = None
    """Where the local stores live; unset: <system temp>/streamfer-state. Relative to the config
    file."""
    ttl_s: float | None = Field(default=30 * 86_400.0, gt=0)
    """A key not updated this long (event time) is deleted; null: never."""
    cache_keys: int = Field(default=100_000, ge=1)
    """Decoded values held in memory per partition; the rest is read from the store."""
    min_compaction_lag_s: float = Field(default=3_600.0, gt=0)
    """The changelog keeps every entry at least this long before compaction."""
    restore_timeout_s: float = Field(default=300.0, gt=0)
    """A state restore without progress this long fails the stream."""
    flush_interval_ms: int | None = Field(default=None, ge=0)
    """at_least_once: the changelog is written at most this often (commits trail by up to
    that); unset: 1000. exactly_once writes it at every commit."""

    def flush_interval_s(self, exactly_once: bool) -> float:
        """How long a changelog window lasts (0: a flush before every commit)."""
        if exactly_once:
            return 0.0
        ms = DEFAULT_FLUSH_INTERVAL_MS if self.flush_interval_ms is None else self.flush_interval_ms
        return ms / 1000

    def resolved_dir(self) -> Path:
        return self.dir or Path(tempfile.gettempdir()) / "streamfer-state"
