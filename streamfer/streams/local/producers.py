"""Open-loop producers for load, demos and benchmarks, callable in-process.

``produce(sink, topic, feed, ...)`` sends what a feed yields at a target rate
(fixed spacing or Poisson arrivals) until a count, a duration or a stop event,
independent of how fast the broker acknowledges (open loop: a slow broker does
not slow the offered load). The ``produce_*`` helpers wire a feed to a sink.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from streamfer.errors import ConfigError, StreamError
from streamfer.streams.client import Compression, ProducerOptions
from streamfer.streams.local.feeds import Message
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink

Pacing = Literal["fixed", "poisson"]


@dataclass
class ProduceStats:
    """Counters of one producing run (``acked``/``failed`` move in delivery callbacks,
    which may run on two threads at once: they count under a lock)."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    started_ns: int = field(default_factory=time.monotonic_ns)
    ended_ns: int | None = None
    last_error: str | None = None

    @property
    def elapsed_s(self) -> float:
        end = self.ended_ns if self.ended_ns is not None else time.monotonic_ns()
        return (end - self.started_ns) / 1e9

    @property
    def rate(self) -> float:
        """Messages sent per second so far."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_delivery(self, error: object | None, _message: object) -> None:
        with self._lock:
            if error is None:
                self.acked += 1
            else:
                self.failed += 1
                self.last_error = str(error)


def _gaps(rate: float, pacing: Pacing, seed: int) -> Iterator[float]:
    if rate <= 0:
        while True:
            yield 0.0
    if pacing == "fixed":
        while True:
            yield 1.0 / rate
    rng = random.Random(seed)
    while True:
        yield rng.expovariate(rate)


def produce(
    sink: KafkaSink,
    topic: str,
    feed: Iterator[Message],
    *,
    rate: float = 0.0,
    pacing: Pacing = "fixed",
    count: int | None = None,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[ProduceStats], None] | None = None,
    progress_interval_s: float = 0.5,
    flush_timeout_s: float = 30.0,
    seed: int = 0,
) -> ProduceStats:
    """Send until ``count`` messages, ``duration_s`` seconds, ``stop`` or the feed ends.

    ``rate`` <= 0 sends as fast as the client accepts. Open loop: message k is due
    at a fixed schedule (``k / rate`` after the start with fixed pacing, Poisson gaps
    otherwise) and is sent at once when the sender is behind. With fixed pacing and
    a duration exactly ``round(rate * duration_s)`` messages are sent (fewer only if
    ``count``, ``stop`` or the feed says so). Returns once every sent message is
    acknowledged or failed (StreamError if that takes over ``flush_timeout_s``).
    """
    if pacing not in ("fixed", "poisson"):
        raise ConfigError(f"pacing | got {pacing!r}. Note: expected fixed or poisson")
    stop = stop or threading.Event()
    # Pull the first message before the clock starts: a feed's set-up (a generator
    # building its state, a video opening) must not eat into the run's duration.
    first = next(feed, None)
    if first is not None:
        feed = itertools.chain([first], feed)
    stats = ProduceStats()
    start_s = time.monotonic()
    end_s = start_s + duration_s if duration_s is not None else float("inf")
    limit = count if count is not None else -1
    fixed = pacing == "fixed" and rate > 0
    if fixed and duration_s is not None:  # the schedule itself says how many: no float drift
        scheduled = round(rate * duration_s)
        limit = scheduled if limit < 0 else min(limit, scheduled)
    next_report = start_s + progress_interval_s
    due = start_s
    on_delivery = stats.on_delivery
    items = zip(_gaps(rate, pacing, seed), feed, strict=False) if limit else iter(())
    for gap, (key, value, headers) in items:
        if stop.is_set() or (not fixed and due >= end_s):
            break
        now = time.monotonic()
        if due > now and stop.wait(due - now):  # ahead of schedule: wait
            break
        now = max(now, due)
        if rate <= 0 and now >= end_s:
            break
        sink.send(topic, value, key, headers, on_delivery)
        stats.sent += 1
        if stats.sent == limit:
            break
        due = start_s + stats.sent / rate if fixed else due + gap
        if progress is not None and now >= next_report:
            progress(stats)
            next_report = now + progress_interval_s
    try:
        sink.flush(flush_timeout_s)
    finally:
        stats.ended_ns = time.monotonic_ns()
        if progress is not None:
            progress(stats)
    if stats.acked + stats.failed < stats.sent:
        raise StreamError(
            f"{topic} | {stats.sent - stats.acked - stats.failed} of {stats.sent} messages "
            f"unacknowledged after {flush_timeout_s:.0f} s. Note: is the broker reachable?"
        )
    return stats


def producer_sink(
    bootstrap: str,
    *,
    compression: Compression = "lz4",
    linger_ms: int = 5,
    timeout_s: float = 10.0,
    large_messages: bool = False,
) -> KafkaSink:
    """A throughput-tuned sink; ``timeout_s`` bounds start() and each blocked send."""
    options = ProducerOptions(
        linger_ms=linger_ms,
        compression=compression,
        max_block_ms=int(timeout_s * 1000),
        batch_size=1024 * 1024 if large_messages else 256 * 1024,
    )
    return KafkaSink(KafkaSettings(bootstrap, client_id="streamfer-producer"), options)
