"""Per-key state of a stream: a local store per (stream, partition) backed by a compacted
changelog topic, restored on assignment to the state after exactly the committed records.

* :mod:`streamfer.streams.state.store`: the local store (LMDB) and its checkpoint;
* :mod:`streamfer.streams.state.entry`: what every stored value carries (input offset, event time);
* :mod:`streamfer.streams.state.view`: a partition's values as a processor reads and writes them;
* :mod:`streamfer.streams.state.changelog`: the topic and the writer (holds each poll's span
  in its partition's window until the window's entries are acknowledged);
* :mod:`streamfer.streams.state.restore`: the restore rule, its guarantee and its limit;
* :mod:`streamfer.streams.state.manager`: views of the assigned partitions, restore on assignment,
  one changelog entry per updated key per commit interval (and why restore stays exact).
"""

from streamfer.streams.state.changelog import ChangelogWriter, changelog_config, changelog_topic
from streamfer.streams.state.manager import (
    StateCommitter,
    StateListener,
    StateManager,
    StateOptions,
)
from streamfer.streams.state.store import Checkpoint, LocalStore
from streamfer.streams.state.view import StateCodec, StateView

__all__ = [
    "ChangelogWriter",
    "Checkpoint",
    "LocalStore",
    "StateCodec",
    "StateCommitter",
    "StateListener",
    "StateManager",
    "StateOptions",
    "StateView",
    "changelog_config",
    "changelog_topic",
]
