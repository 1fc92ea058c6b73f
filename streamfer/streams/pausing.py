"""The one owner of paused partitions.

Two things pause fetching: the pipeline downstream is full (every assigned
partition, until it drains), and a partition has too many records in flight
(that partition, until half of them resolve). :class:`Pausing` keeps both
reasons, works out which partitions should be paused, and tells the client
only what changed. Partitions assigned while a reason holds are paused as
they arrive; revoked ones are forgotten.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

TopicPartition = tuple[str, int]


class PausableClient(Protocol):
    def pause(self, tps: Collection[TopicPartition]) -> None: ...

    def resume(self, tps: Collection[TopicPartition]) -> None: ...


class Pausing:
    """Owns ``pause``/``resume`` of one consumer (used from the consumer thread only)."""

    def __init__(self, max_in_flight_per_partition: int) -> None:
        if max_in_flight_per_partition < 1:
            raise ValueError(
                f"pausing | max_in_flight_per_partition={max_in_flight_per_partition}. "
                "Note: expected at least 1"
            )
        self.limit = max_in_flight_per_partition
        self.downstream = False  # the pipeline asked for a pause of everything
        self.backpressure: set[TopicPartition] = set()  # over the in-flight limit
        self.applied: set[TopicPartition] = set()  # what the client has paused now

    def set_downstream(self, paused: bool) -> None:
        self.downstream = paused

    def observe_in_flight(self, counts: Mapping[TopicPartition, int]) -> None:
        """Pause a partition at the limit; resume it once it is down to half."""
        over = {tp for tp, n in counts.items() if n >= self.limit}
        under = {tp for tp in self.backpressure if counts.get(tp, 0) <= self.limit // 2}
        self.backpressure = (self.backpressure | over) - under

    def forget(self, tps: Collection[TopicPartition]) -> None:
        """Revoked or lost: the client no longer holds them, paused or not."""
        gone = set(tps)
        self.backpressure -= gone
        self.applied -= gone

    def wanted(self, assigned: Collection[TopicPartition]) -> set[TopicPartition]:
        held = set(assigned)
        return set(held) if self.downstream else self.backpressure & held

    def apply(self, client: PausableClient, assigned: Collection[TopicPartition]) -> None:
        """Tell ``client`` what changed since the last call."""
        want = self.wanted(assigned)
        pause, resume = want - self.applied, self.applied - want
        if pause:
            client.pause(pause)
        if resume:
            client.resume(resume)
        self.applied = want
