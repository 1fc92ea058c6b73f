"""Per-key state of a stream: a local store per (stream, partition) backed by a compacted
changelog topic, restored on assignment to the state after exactly the committed records.

* :mod:`streams.state.store`: the local store (LMDB) and its checkpoint;
* :mod:`streams.state.entry`: what every stored value carries (input offset, event time);
* :mod:`streams.state.view`: a partition's values as a processor reads and writes them;
* :mod:`streams.state.changelog`: the topic and the batch writer (holds the batch's
  span until its entries are acknowledged);
* :mod:`streams.state.restore`: the restore rule, its guarantee and its limit;
* :mod:`streams.state.manager`: views of the assigned partitions, restore on assignment.
"""

from streams.state.changelog import ChangelogWriter, changelog_config, changelog_topic
from streams.state.manager import StateListener, StateManager, StateOptions
from streams.state.store import Checkpoint, LocalStore
from streams.state.view import StateCodec, StateView

__all__ = [
    "ChangelogWriter",
    "Checkpoint",
    "LocalStore",
    "StateCodec",
    "StateListener",
    "StateManager",
    "StateOptions",
    "StateView",
    "changelog_config",
    "changelog_topic",
]
