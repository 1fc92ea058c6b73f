"""Latency profiles: the one place a stream's latency knobs take their defaults from.

A stream's ``latency.profile`` (``low``, ``balanced`` or ``throughput``) sets five knobs
that trade latency for records per second. None of them is work: each is a wait that
lets more records share one request or one engine batch.

- ``linger_ms``: how long the outlet's producer waits to fill a batch of decisions
  (librdkafka ``linger.ms``, kafka-python ``linger_ms``);
- ``batch_wait_ms``: how long the batcher waits for an engine batch to fill
  (``batching.max_wait_ms``);
- ``fetch_max_wait_ms`` / ``fetch_min_bytes``: how long the broker holds a fetch until it
  has that many bytes (``fetch.wait.max.ms`` / ``fetch.min.bytes``);
- ``commit_interval_ms``: how often resolved offsets commit; under ``delivery:
  exactly_once`` the transaction commit, so how long a ``read_committed`` reader waits
  for a decision.

``low`` is the default of transaction and camera streams, ``balanced`` of every other
kind; ``throughput`` is meant for backfills (``mode: replay``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LatencyProfile = Literal["low", "balanced", "throughput"]
KNOBS = ("linger_ms", "batch_wait_ms", "fetch_max_wait_ms", "fetch_min_bytes",
         "commit_interval_ms")  # fmt: skip


@dataclass(frozen=True)
class LatencyKnobs:
    """The resolved waits of one stream (see the module docstring)."""

    linger_ms: int
    batch_wait_ms: float
    fetch_max_wait_ms: int
    fetch_min_bytes: int
    commit_interval_ms: int


PROFILES: dict[LatencyProfile, LatencyKnobs] = {
    "low": LatencyKnobs(
        linger_ms=0, batch_wait_ms=1.0, fetch_max_wait_ms=5, fetch_min_bytes=1,
        commit_interval_ms=50,
    ),
    "balanced": LatencyKnobs(
        linger_ms=1, batch_wait_ms=5.0, fetch_max_wait_ms=20, fetch_min_bytes=1,
        commit_interval_ms=200,
    ),
    "throughput": LatencyKnobs(
        linger_ms=20, batch_wait_ms=20.0, fetch_max_wait_ms=100, fetch_min_bytes=64 * 1024,
        commit_interval_ms=1000,
    ),
}  # fmt: skip

LOW_LATENCY_KINDS = frozenset({"transaction", "camera"})


def default_profile(kind: str) -> LatencyProfile:
    """The profile of a stream that names none: ``low`` for transactions and camera frames."""
    return "low" if kind in LOW_LATENCY_KINDS else "balanced"
