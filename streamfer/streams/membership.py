"""Membership: the partitions a group member holds, and who hears when that changes.

The consumer client's rebalance hooks run inside its poll (on the consumer thread,
or on kafka-python's helper thread during a revocation): ``gained`` on an
assignment, ``leaving`` then ``revoked`` around a revocation (the committer waits
for and commits the revoked partitions' records in between), and ``rewound`` after
an exactly-once abort. ``assigned`` is replaced, never changed in place, so any
thread may read it. One more party can ``listen`` (a stream's state).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

TopicPartition = tuple[str, int]


class PartitionListener(Protocol):
    """Told of partition events, on whichever thread the client reports them."""

    def assigned(self, tps: Collection[TopicPartition]) -> None: ...

    def revoked(self, tps: Collection[TopicPartition], lost: bool) -> None:
        """After the committer waited for the partitions' records and committed them."""
        ...

    def rewound(self, tps: Collection[TopicPartition]) -> None:
        """The partitions will be consumed again from their committed offsets."""
        ...


class Membership:
    """The current assignment, whether the group has answered yet, and the listener."""

    def __init__(self) -> None:
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.joined = False  # the group gave this member an assignment (maybe empty)
        self._listener: PartitionListener | None = None

    def listen(self, listener: PartitionListener) -> None:
        """Report partition events to ``listener`` too."""
        self._listener = listener

    def gained(self, tps: list[TopicPartition]) -> None:
        """The client's assignment hook: ``tps`` are this member's now."""
        self.assigned = self.assigned | frozenset(tps)
        self.joined = True
        if self._listener is not None:
            self._listener.assigned(tps)

    def leaving(self, tps: list[TopicPartition]) -> None:
        """A revocation began: ``tps`` no longer count as assigned."""
        self.assigned = self.assigned - frozenset(tps)

    def revoked(self, tps: list[TopicPartition], lost: bool) -> None:
        """The committer is done with the revoked ``tps``."""
        if self._listener is not None:
            self._listener.revoked(tps, lost)

    def rewound(self, tps: Collection[TopicPartition]) -> None:
        """The committer rewound ``tps`` to their committed offsets."""
        if self._listener is not None and tps:
            self._listener.rewound(tps)
